#include "live/zmq_publisher.h"

#include <fmt/format.h>

#include <cstring>

#include "live/formats.h"
#include "live/json.h"

namespace trawl::live {

ZmqPublisher::ZmqPublisher(size_t client_queue_bytes, size_t input_items, size_t input_bytes)
    : FanoutServer("zmq", client_queue_bytes, input_items, input_bytes), handshake_(zmtp::publisher_handshake()) {}

std::unique_ptr<FanoutServer::Client> ZmqPublisher::make_client() {
  auto c = std::make_unique<ZmqClient>();
  c->out.append(handshake_);
  return c;
}

Status ZmqPublisher::on_input(Client& c, std::span<const uint8_t> bytes) {
  auto& z = static_cast<ZmqClient&>(c);
  return z.parser.feed(bytes, z);
}

void ZmqPublisher::on_item(const LiveItem& item, const std::vector<Client*>& clients) {
  if (item.kind == LiveItem::Kind::kBatch) return on_batch(item, clients);
  std::string t1 = event_topic(1, item.event, item.agent);
  if (item.text.empty()) send_event({t1}, clients);
  else send_event({t1, item.text}, clients);
  std::string json = item.text.empty() ? fmt::format("{{\"agent\":{}}}", json_string(item.agent))
                     : item.event == "closingtracefile"
                         ? fmt::format("{{\"agent\":{},\"path\":{}}}", json_string(item.agent), json_string(item.text))
                         : fmt::format("{{\"agent\":{},\"peer\":{}}}", json_string(item.agent), json_string(item.text));
  send_event({event_topic(2, item.event, item.agent), json}, clients);
}

void ZmqPublisher::send_event(const std::vector<std::string_view>& parts, const std::vector<Client*>& clients) {
  size_t size = 0;
  for (auto p : parts) size += zmtp::frame_size(p.size());
  for (Client* c : clients) {
    auto& z = static_cast<ZmqClient&>(*c);
    if (!z.parser.ready() || !z.wants(parts[0])) continue;
    if (!fits(z, size)) {
      z.dropped_events.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    uint8_t* p = z.out.reserve(size);
    for (size_t i = 0; i < parts.size(); ++i) p = zmtp::put_frame(p, as_bytes(parts[i]), i + 1 < parts.size());
    z.out.commit(size);
  }
}

void ZmqPublisher::on_batch(const LiveItem& item, const std::vector<Client*>& clients) {
  const auto& b = item.batch;
  topic1_ = data_topic(1, item.agent);
  topic2_ = data_topic(2, item.agent);
  // Subscriptions only change between items, so decide once per batch.
  targets_.clear();
  for (Client* c : clients) {
    auto* z = static_cast<ZmqClient*>(c);
    if (!z->parser.ready()) continue;
    Want w{z, z->wants(topic1_), z->wants(topic2_), 0, 0};
    if (!w.v1 && !w.v2) continue;
    // A subscriber whose queue cannot take even an empty packet's message
    // (after one write attempt) loses the whole batch: counted at once
    // instead of trying every packet (a stalled subscriber costs O(1)).
    if (!fits(*z, zmtp::frame_size(topic1_.size()) + 64)) {
      z->dropped_packets.fetch_add(b.packets() * ((w.v1 ? 1 : 0) + (w.v2 ? 1 : 0)), std::memory_order_relaxed);
      continue;
    }
    targets_.push_back(w);
  }
  auto& targets = targets_;
  const auto& ifaces = b.interfaces();
  std::array<uint8_t, kPcapFileHeaderBytes> headers[wire::kMaxInterfaces];
  for (size_t i = 0; i < ifaces.size() && i < wire::kMaxInterfaces; ++i) {
    headers[i] = pcap_file_header(kPcapMagicUsec, ifaces[i].snaplen, ifaces[i].link_type);
  }
  b.for_each(
      [&](const PacketView& p) {
        if (targets.empty()) return;
        const auto& iface = ifaces[p.iface];
        size_t caplen = p.data.size();
        size_t v1_size = zmtp::frame_size(topic1_.size()) + zmtp::frame_size(kPcapFileHeaderBytes) +
                         zmtp::frame_size(kPcapRecordHeaderBytes + caplen);
        size_t meta = v2_meta_size(iface);
        size_t v2_size = zmtp::frame_size(topic2_.size()) + zmtp::frame_size(meta) + zmtp::frame_size(caplen);
        for (Want& w : targets) {
          auto& out = w.c->out;
          if (w.v1) {
            if (fits(*w.c, v1_size)) {
              uint8_t* o = out.reserve(v1_size);
              o = zmtp::put_frame(o, as_bytes(topic1_), true);
              o = zmtp::put_frame(o, headers[p.iface], true);
              o = zmtp::put_frame_header(o, kPcapRecordHeaderBytes + caplen, false);
              o = put_pcap_record_header(o, p.ts_ns, static_cast<uint32_t>(caplen), p.orig_len, false);
              std::memcpy(o, p.data.data(), caplen);
              out.commit(v1_size);
              ++w.sent;
            } else {
              ++w.dropped;
            }
          }
          if (w.v2) {
            if (fits(*w.c, v2_size)) {
              uint8_t* o = out.reserve(v2_size);
              o = zmtp::put_frame(o, as_bytes(topic2_), true);
              o = zmtp::put_frame_header(o, meta, true);
              o = put_v2_meta(o, iface, p.iface, b.seq(), p);
              zmtp::put_frame(o, p.data, false);
              out.commit(v2_size);
              ++w.sent;
            } else {
              ++w.dropped;
            }
          }
        }
      },
      [&](const InterfaceStats& s) {
        std::string name = s.iface < ifaces.size() ? ifaces[s.iface].name : std::string("?");
        auto& last = last_stats_[item.agent + '\0' + name];
        bool grew = s.kernel_drops > last.kernel_drops || s.if_drops > last.if_drops || s.agent_drops > last.agent_drops;
        // Counters restart with the capture handle: then any drops are news.
        if (s.received < last.received) grew = s.kernel_drops || s.if_drops || s.agent_drops;
        last = s;
        if (!grew) return;
        std::string json = fmt::format(
            "{{\"agent\":{},\"iface\":{},\"ts_ns\":{},\"received\":{},\"kernel_drops\":{},\"if_drops\":{},"
            "\"agent_drops\":{},\"seq\":{}}}",
            json_string(item.agent), json_string(name), s.ts_ns, s.received, s.kernel_drops, s.if_drops,
            s.agent_drops, b.seq());
        send_event({event_topic(2, "drop", item.agent), json}, clients);
      },
      [&](const Gap& g) {
        std::string name = g.iface < ifaces.size() ? ifaces[g.iface].name : std::string();
        std::string json = fmt::format(
            "{{\"agent\":{},\"iface\":{},\"from_ns\":{},\"to_ns\":{},\"packets\":{},\"bytes\":{},\"reason\":{},"
            "\"seq\":{}}}",
            json_string(item.agent), name.empty() ? "null" : json_string(name), g.from_ns, g.to_ns, g.packets,
            g.bytes, json_string(to_string(g.reason)), b.seq());
        send_event({event_topic(2, "gap", item.agent), json}, clients);
      });
  for (const Want& w : targets) {
    if (w.sent) w.c->sent_packets.fetch_add(w.sent, std::memory_order_relaxed);
    if (w.dropped) w.c->dropped_packets.fetch_add(w.dropped, std::memory_order_relaxed);
  }
}

}  // namespace trawl::live
