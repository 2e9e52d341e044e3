#include "live/live_bus.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace trawl::live {

Result<wire::HostPort> parse_zmq_endpoint(std::string_view s) {
  if (s.starts_with("tcp://")) s.remove_prefix(6);
  else if (s.find("://") != std::string_view::npos) return Error(fmt::format("'{}': only tcp:// endpoints", s));
  std::string text(s);
  if (text.starts_with("*:")) text.erase(0, 1);
  return wire::parse_host_port(text);
}

Result<std::unique_ptr<LiveBus>> LiveBus::start(const LiveOptions& opts) {
  std::unique_ptr<LiveBus> bus(new LiveBus());
  if (!opts.zmq_listen.empty()) {
    auto hp = parse_zmq_endpoint(opts.zmq_listen);
    if (!hp) return std::move(hp).error().with_context("--zmq");
    bus->zmq_ = std::make_unique<ZmqPublisher>(opts.subscriber_queue_bytes, opts.output_queue_batches,
                                               opts.output_queue_bytes);
    bus->zmq_->set_nice(opts.nice);
    if (auto s = bus->zmq_->start(*hp); !s) return std::move(s).error().with_context("--zmq " + opts.zmq_listen);
    spdlog::info("collector: ZeroMQ publisher on port {} (osmo-pcap v1 + trawl v2 topics)", bus->zmq_->port());
  }
  for (const auto& l : opts.pcap_listeners) {
    auto srv = std::make_unique<PcapServer>(l, opts.subscriber_queue_bytes, opts.output_queue_batches,
                                            opts.output_queue_bytes);
    srv->set_nice(opts.nice);
    if (auto s = srv->start(); !s) return std::move(s).error().with_context("--pcap-listen " + l.listen);
    spdlog::info("collector: PCAP-over-IP on port {} ({}{}{})", srv->port(), l.pcapng ? "pcapng" : "pcap",
                 l.agent.empty() ? "" : ", agent " + l.agent, l.filter.empty() ? "" : ", filter '" + l.filter + "'");
    bus->pcap_.push_back(std::move(srv));
  }
  return bus;
}

LiveBus::~LiveBus() { stop(); }

void LiveBus::stop() {
  if (zmq_) zmq_->stop();
  for (auto& p : pcap_) p->stop();
}

std::vector<uint16_t> LiveBus::pcap_ports() const {
  std::vector<uint16_t> v;
  for (const auto& p : pcap_) v.push_back(p->port());
  return v;
}

void LiveBus::offer(const LiveItemPtr& item) {
  if (zmq_) zmq_->offer(item);
  for (auto& p : pcap_) p->offer(item);
}

bool LiveBus::has_subscribers() const {
  if (zmq_ && zmq_->client_count() > 0) return true;
  for (const auto& p : pcap_) {
    if (p->client_count() > 0) return true;
  }
  return false;
}

void LiveBus::publish_batch(std::string_view agent, std::span<const uint8_t> batch_body) {
  if (!has_subscribers()) return;
  auto view = wire::BatchView::parse(batch_body);
  if (!view) {
    // The caller stored it, so it parsed before: only a bug gets here.
    spdlog::error("live: batch of agent {} does not parse: {}", agent, view.error().message());
    return;
  }
  publish_batch(agent, batch_body, *view);
}

void LiveBus::publish_batch(std::string_view agent, std::span<const uint8_t> batch_body, const wire::BatchView& view) {
  if (!has_subscribers()) return;
  auto item = pool_->try_get();
  if (!item) return shed(view);
  item->kind = LiveItem::Kind::kBatch;
  item->agent.assign(agent);
  item->body.assign(batch_body.begin(), batch_body.end());
  item->batch = view.over(item->body);
  batches_.fetch_add(1, std::memory_order_relaxed);
  packets_.fetch_add(item->batch.packets(), std::memory_order_relaxed);
  offer(item);
}

LiveItemPtr LiveBus::publish_batch_adopt(std::string_view agent, std::vector<uint8_t>& storage,
                                         std::span<const uint8_t> batch_body, const wire::BatchView& view) {
  if (!has_subscribers()) return nullptr;
  const uint8_t* lo = storage.data();
  if (batch_body.data() < lo || batch_body.data() + batch_body.size() > lo + storage.size()) {
    publish_batch(agent, batch_body, view);  // not in storage: a caller's bug; copy instead
    return nullptr;
  }
  auto item = pool_->try_get();
  if (!item) {
    shed(view);
    return nullptr;
  }
  item->kind = LiveItem::Kind::kBatch;
  item->agent.assign(agent);
  // The heap block moves with the vector, so batch_body and view stay valid.
  item->body.swap(storage);
  storage.clear();
  item->batch = view;
  batches_.fetch_add(1, std::memory_order_relaxed);
  packets_.fetch_add(item->batch.packets(), std::memory_order_relaxed);
  offer(item);
  return item;
}

void LiveBus::shed(const wire::BatchView& view) {
  shed_batches_.fetch_add(1, std::memory_order_relaxed);
  shed_packets_.fetch_add(view.packets(), std::memory_order_relaxed);
}

void LiveBus::publish_event(std::string_view agent, std::string_view event, std::string_view text) {
  auto item = pool_->get();
  item->kind = LiveItem::Kind::kEvent;
  item->agent.assign(agent);
  item->event.assign(event);
  item->text.assign(text);
  events_.fetch_add(1, std::memory_order_relaxed);
  offer(std::move(item));
}

void LiveBus::write_metrics(metrics::Exposition& e) const {
  std::vector<SinkStats> sinks;
  if (zmq_) sinks.push_back(zmq_->stats());
  for (const auto& p : pcap_) {
    sinks.push_back(p->stats());
    sinks.back().sink += ":" + std::to_string(p->port());
  }
  e.counter("trawl_live_published_batches_total", "Batches handed to the live outputs", batches_.load());
  e.counter("trawl_live_published_packets_total", "Packets handed to the live outputs", packets_.load());
  e.counter("trawl_live_published_events_total", "Events handed to the live outputs", events_.load());
  e.counter("trawl_live_shed_batches_total",
            "Batches not handed to the live outputs: every live buffer was still held by a lagging output",
            shed_batches_.load());
  e.counter("trawl_live_shed_packets_total", "Packets of the shed batches", shed_packets_.load());
  for (const auto& s : sinks) {
    e.gauge("trawl_live_subscribers", "Connected live subscribers, by output", static_cast<double>(s.subscribers.size()),
            {{"output", s.sink}});
  }
  for (const auto& s : sinks) {
    e.counter("trawl_live_output_dropped_batches_total", "Batches an output's input queue had no room for",
              s.dropped_batches, {{"output", s.sink}});
  }
  for (const auto& s : sinks) {
    e.counter("trawl_live_sent_packets_total", "Packet messages queued to subscribers (all, including gone ones)",
              s.sent_packets, {{"output", s.sink}});
  }
  for (const auto& s : sinks) {
    e.counter("trawl_live_dropped_packets_total",
              "Packet messages lost to full subscriber queues (all, including gone ones)", s.dropped_packets,
              {{"output", s.sink}});
  }
  for (const auto& s : sinks) {
    e.counter("trawl_live_skipped_packets_total", "Packets an output cannot carry (classic pcap, other link type)",
              s.skipped_packets, {{"output", s.sink}});
  }
  auto each_sub = [&](const char* name, const char* help, bool gauge, auto field) {
    for (const auto& s : sinks) {
      for (const auto& sub : s.subscribers) {
        metrics::Labels l{{"output", s.sink}, {"subscriber", std::to_string(sub.id)}, {"peer", sub.peer}};
        if (gauge) e.gauge(name, help, static_cast<double>(field(sub)), l);
        else e.counter(name, help, static_cast<double>(field(sub)), l);
      }
    }
  };
  each_sub("trawl_live_subscriber_sent_packets_total", "Packet messages queued to this subscriber", false,
           [](const SubscriberStats& s) { return s.sent_packets; });
  each_sub("trawl_live_subscriber_dropped_packets_total", "Packet messages this subscriber lost (its queue was full)",
           false, [](const SubscriberStats& s) { return s.dropped_packets; });
  each_sub("trawl_live_subscriber_dropped_events_total", "Event messages this subscriber lost", false,
           [](const SubscriberStats& s) { return s.dropped_events; });
  each_sub("trawl_live_subscriber_queued_bytes", "Bytes waiting in this subscriber's queue", true,
           [](const SubscriberStats& s) { return s.queued_bytes; });
}

}  // namespace trawl::live
