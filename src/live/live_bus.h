// LiveBus: where the collector's session threads hand every accepted batch
// and every agent event, for the live outputs (ZeroMQ publisher,
// PCAP-over-IP listeners). docs/live.md describes formats and semantics.
//
// publish_batch() copies the BATCH body once into a pooled buffer (or,
// publish_batch_adopt(), takes the caller's buffer in exchange for a pooled
// one) and offers the shared, immutable item to each output's bounded
// queue; it never blocks on an output or a subscriber (a full queue drops
// and counts) and never allocates in the steady state: the pool holds a
// fixed number of buffers, and a batch that finds none free is shed
// (counted) because the outputs are that far behind.
//
// Thread-safe: publish_*() and write_metrics() from any thread. start()
// returns once every output listens; stop() joins their threads.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "live/live_item.h"
#include "live/pcap_server.h"
#include "live/zmq_publisher.h"
#include "metrics/exposition.h"

namespace trawl::live {

struct LiveOptions {
  std::string zmq_listen;                        // "tcp://ADDR:PORT" or "ADDR:PORT"; "" = off
  std::vector<PcapListenerOptions> pcap_listeners;
  size_t subscriber_queue_bytes = 32u << 20;     // per subscriber
  size_t output_queue_batches = 1024;            // per output, between sessions and its thread
  size_t output_queue_bytes = 256u << 20;
  int nice = 10;                                 // publishing threads' nice increment (--live-nice)
  bool enabled() const { return !zmq_listen.empty() || !pcap_listeners.empty(); }
};

// "tcp://*:5555", "tcp://127.0.0.1:0", "0.0.0.0:5555" -> host/port.
Result<wire::HostPort> parse_zmq_endpoint(std::string_view s);

class LiveBus {
 public:
  static Result<std::unique_ptr<LiveBus>> start(const LiveOptions& opts);
  ~LiveBus();

  // Copies the batch (parsing it again: for tests and callers without a view).
  void publish_batch(std::string_view agent, std::span<const uint8_t> batch_body);
  // Copies the batch; view is what batch_body parsed to (not parsed again).
  void publish_batch(std::string_view agent, std::span<const uint8_t> batch_body, const wire::BatchView& view);
  // Without a copy: the live item takes `storage` (the buffer that holds
  // batch_body) and the caller gets a recycled buffer in exchange. The
  // returned item keeps the bytes alive: hold it as long as batch_body and
  // view are used. nullptr, storage untouched, when nobody subscribes.
  LiveItemPtr publish_batch_adopt(std::string_view agent, std::vector<uint8_t>& storage,
                                  std::span<const uint8_t> batch_body, const wire::BatchView& view);
  // Whether any output has a subscriber now; batches published while none
  // has are dropped at once (events still go through).
  bool has_subscribers() const;
  // event: connect, disconnect, closingtracefile; text: v1 payload ("" = none).
  void publish_event(std::string_view agent, std::string_view event, std::string_view text);

  void write_metrics(metrics::Exposition& e) const;
  uint16_t zmq_port() const { return zmq_ ? zmq_->port() : 0; }
  std::vector<uint16_t> pcap_ports() const;
  void stop();

 private:
  LiveBus() = default;
  void offer(const LiveItemPtr& item);
  void shed(const wire::BatchView& view);

  std::shared_ptr<ItemPool> pool_ = std::make_shared<ItemPool>();
  std::unique_ptr<ZmqPublisher> zmq_;
  std::vector<std::unique_ptr<PcapServer>> pcap_;
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> packets_{0};
  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> shed_batches_{0};  // no free live buffer: the outputs were behind
  std::atomic<uint64_t> shed_packets_{0};
};

}  // namespace trawl::live
