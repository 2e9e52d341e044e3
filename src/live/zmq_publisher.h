// ZmqPublisher: the collector's ZeroMQ PUB endpoint, served over ZMTP 3.0
// by trawl itself (zmtp.h; why: docs/live.md). Every packet goes out as
//   v1 (osmo-pcap): [data.v1.<agent>, 24-byte pcap file header, pcap record]
//   v2 (trawl):     [data.v2.<agent>, metadata (formats.h), packet bytes]
// to each subscriber whose subscriptions match that topic (prefix match,
// as libzmq does), and events as [event.v1.<name>.<agent>(, text)] and
// [event.v2.<name>.<agent>, JSON]. v2 also carries gap and drop events
// taken from the batches' GAP and STATS records.
//
// Threads and queues: see FanoutServer.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "live/fanout_server.h"
#include "live/zmtp.h"

namespace trawl::live {

class ZmqPublisher final : public FanoutServer {
 public:
  ZmqPublisher(size_t client_queue_bytes, size_t input_items, size_t input_bytes);

 private:
  struct ZmqClient : Client, zmtp::SubscriberParser::Handler {
    zmtp::SubscriberParser parser;
    std::vector<std::string> subs;  // a multiset: libzmq counts repeated subscriptions
    void subscribe(std::string_view p) override { subs.emplace_back(p); }
    void cancel(std::string_view p) override {
      for (auto it = subs.begin(); it != subs.end(); ++it) {
        if (*it == p) {
          subs.erase(it);
          return;
        }
      }
    }
    bool wants(std::string_view topic) const {
      for (const auto& s : subs) {
        if (topic.substr(0, s.size()) == s) return true;
      }
      return false;
    }
  };

  std::unique_ptr<Client> make_client() override;
  Status on_input(Client& c, std::span<const uint8_t> bytes) override;
  void on_item(const LiveItem& item, const std::vector<Client*>& clients) override;

  void on_batch(const LiveItem& item, const std::vector<Client*>& clients);
  // One message of text parts to every client subscribed to parts[0].
  void send_event(const std::vector<std::string_view>& parts, const std::vector<Client*>& clients);

  struct Want {
    ZmqClient* c;
    bool v1, v2;
    // Counted here and added to the client's atomics once per batch: a
    // locked add per packet was most of the publishing thread's time.
    uint64_t sent = 0, dropped = 0;
  };
  std::vector<uint8_t> handshake_;
  std::vector<Want> targets_;  // reused per batch
  std::string topic1_, topic2_;
  std::vector<uint8_t> scratch_;
  // Last drop counters seen per (agent, interface name): v2 "drop" events
  // are sent when they grow.
  std::map<std::string, InterfaceStats> last_stats_;
};

}  // namespace trawl::live
