// DNS (RFC 1035) query/response transactions over UDP and TCP port 53.
//
// parse_dns() is the pure parse function (header, first question, answer
// records; compressed names followed with a loop bound). DnsDecoder matches
// responses to queries by (client, server, transport, id) and emits one
// record per transaction with its latency; queries unanswered after
// timeout_ns of capture time (or at the end) are emitted with status
// "unanswered", responses without a query with status "response_only".
// Over TCP, messages are 2-byte length-prefixed on the reassembled stream.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "decode/anomalies.h"
#include "decode/decoder.h"

namespace trawl::decode {

struct DnsAnswer {
  std::string name;
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  std::string data;  // A/AAAA address, CNAME/NS/PTR name, else empty
};
struct DnsMessage {
  uint16_t id = 0;
  bool response = false;
  uint8_t opcode = 0;
  uint8_t rcode = 0;
  bool truncated = false;
  uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
  std::string qname;  // first question ("" if none); "<Root>" for the root
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  std::vector<DnsAnswer> answers;
};

// Returns nullptr on success, else an anomaly name ("dns.truncated_header",
// "dns.truncated_label", "dns.bad_label", "dns.compression_loop", ...).
// On failure `out` holds whatever was parsed before the fault.
const char* parse_dns(std::span<const uint8_t> d, DnsMessage& out);

std::string_view dns_type_name(uint16_t t);
std::string_view dns_rcode_name(uint8_t rc);

class DnsDecoder : public Decoder {
 public:
  struct Options {
    uint64_t timeout_ns = 10ull * 1000000000ull;
  };
  DnsDecoder(Sink sink, Options opt) : sink_(std::move(sink)), opt_(opt) {}

  std::string_view name() const override { return "dns"; }
  bool wants_udp(const L4Packet& p) const override { return p.sport == 53 || p.dport == 53; }
  void on_udp(const L4Packet& p) override;
  bool wants_stream(uint16_t sport, uint16_t dport, bool sctp, uint32_t) const override {
    return !sctp && (sport == 53 || dport == 53);
  }
  void on_stream_data(const StreamSegment& s) override;
  void on_stream_gap(uint64_t conn_id, bool from_a) override;
  void on_stream_close(uint64_t conn_id) override;
  void finish() override;
  std::vector<std::pair<std::string, uint64_t>> anomalies() const override { return anomalies_.list(); }

 private:
  struct Pending {
    uint64_t ts_ns = 0;
    uint64_t frame = 0;
    uint32_t retransmissions = 0;
    DnsMessage query;
  };
  // (client, server, transport, id)
  using Key = std::tuple<std::string, std::string, std::string, uint16_t>;
  void message(std::span<const uint8_t> d, const std::string& src, const std::string& dst, const char* transport,
               uint64_t ts_ns, uint64_t frame);
  void emit(const Key& k, const Pending* q, const DnsMessage* resp, uint64_t resp_ts, uint64_t resp_frame);
  void expire(uint64_t now_ns);

  Sink sink_;
  Options opt_;
  Anomalies anomalies_;
  std::map<Key, Pending> pending_;
  std::map<std::pair<uint64_t, bool>, std::vector<uint8_t>> tcp_buf_;
  uint64_t last_expire_ns_ = 0;
};

}  // namespace trawl::decode
