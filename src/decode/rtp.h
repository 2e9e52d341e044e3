// RTP (RFC 3550) stream analysis, numbers as Wireshark's "RTP Streams"
// (tshark -q -z rtp,streams) computes them.
//
// parse_rtp() is the pure parse function. RtpDecoder is the tracker: one
// stream per (source ip:port, destination ip:port, SSRC). UDP flows become
// RTP when SIP/SDP announced their address:port (setup "sdp"), or, with the
// heuristic on, when a datagram to an even port looks like RTP version 2
// (setup "heuristic"; Wireshark's rtp_udp heuristic). Jitter is RFC 3550
// section 6.4.1 / A.8 in milliseconds with the payload type's clock rate
// (static table, or a=rtpmap for dynamic types); deltas, lost, sequence
// errors follow Wireshark's rtppacket_analyse (see docs/analyze.md for the
// exact rules and where they differ from RFC 3550 A.1).
// Not thread-safe.
#pragma once

#include <bitset>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "decode/anomalies.h"
#include "decode/decoder.h"
#include "decode/sip.h"

namespace trawl::decode {

struct RtpHeader {
  bool padding = false;
  bool extension = false;
  uint8_t csrc_count = 0;
  bool marker = false;
  uint8_t pt = 0;
  uint16_t seq = 0;
  uint32_t timestamp = 0;
  uint32_t ssrc = 0;
  size_t header_len = 0;
  size_t payload_len = 0;
};

// Returns nullptr on success, else the anomaly name ("rtp.bad_version",
// "rtp.truncated", "rtp.bad_padding").
const char* parse_rtp(std::span<const uint8_t> d, RtpHeader& h);

// Clock rate of a static payload type (RFC 3551), 0 if unknown.
uint32_t rtp_static_clock_rate(uint8_t pt);
// Wireshark's short name ("g711A", "g729"), or "" if none.
std::string_view rtp_static_name(uint8_t pt);

class RtpDecoder : public Decoder {
 public:
  struct Options {
    bool heuristic = true;  // also find streams not announced by SDP
    // Streams silent this long (capture time) are emitted and forgotten;
    // 0 = keep every stream until finish() (files: tshark's behaviour).
    uint64_t idle_timeout_ns = 0;
  };
  RtpDecoder(Sink sink, Options opt) : sink_(std::move(sink)), opt_(opt) {}

  std::string_view name() const override { return "rtp"; }
  bool wants_udp(const L4Packet& p) const override;
  void on_udp(const L4Packet& p) override;
  bool wants_stream(uint16_t sport, uint16_t dport, bool sctp, uint32_t ppid) const override;
  void on_stream_data(const StreamSegment& s) override;
  void on_stream_gap(uint64_t conn_id, bool from_a) override;
  void on_stream_close(uint64_t conn_id) override;
  void finish() override;
  std::vector<std::pair<std::string, uint64_t>> anomalies() const override { return anomalies_.list(); }

  size_t open_streams() const { return streams_.size(); }

 private:
  struct Endpoint {
    IpAddr addr;
    uint16_t port = 0;
    bool operator==(const Endpoint&) const = default;
  };
  struct EndpointHash {
    size_t operator()(const Endpoint& e) const;
  };
  struct Announced {
    std::vector<SdpPayload> payloads;
    uint64_t frame = 0;
  };
  struct StreamKey {
    Endpoint src, dst;
    uint32_t ssrc = 0;
    bool operator==(const StreamKey&) const = default;
  };
  struct StreamKeyHash {
    size_t operator()(const StreamKey& k) const;
  };
  struct ConvKey {
    Endpoint a, b;  // b.port == 0 and b.addr empty for an SDP endpoint
    bool operator==(const ConvKey&) const = default;
  };
  struct ConvKeyHash {
    size_t operator()(const ConvKey& k) const;
  };
  struct Conv {
    uint64_t ext_seq = 0x10000;
    uint64_t ext_ts = 0x100000000ull;
  };
  struct Stream {
    std::string setup;
    const Announced* sdp = nullptr;
    bool first = true;
    uint32_t flags = 0;
    uint16_t start_seq = 0, stop_seq = 0;  // first and last sequence number
    uint32_t seq_cycles = 0;                // wraps of the sequence number
    bool under = false;
    uint16_t seq_num = 0;
    double start_time = 0, time = 0;
    uint32_t first_timestamp = 0;
    double last_nominal = 0;
    uint64_t max_ext_seq = 0;  // for duplicate detection
    uint8_t pt = 0, reg_pt = 0, first_pt = 0;
    double delta = 0, max_delta = 0, min_delta = -1, mean_delta = 0;
    double jitter = 0, min_jitter = -1, max_jitter = 0, mean_jitter = 0;
    uint64_t total_nr = 0;
    uint64_t sequence_errors = 0;
    uint64_t duplicates = 0;
    uint64_t marker_packets = 0;
    uint64_t bytes = 0;
    uint32_t clock_rate = 0;
    uint64_t first_ts_ns = 0, last_ts_ns = 0;
    uint64_t first_frame = 0;
    std::bitset<1024> seen;  // extended seq numbers (mod 1024) in (stop_seq-1024, stop_seq]
  };

  void sip_message(std::string_view msg, uint64_t frame);
  void sdp_body(std::string_view body, uint64_t frame);
  void rtp_packet(const L4Packet& p, const RtpHeader& h, const Announced* sdp, const ConvKey& conv);
  void analyse(Stream& s, const L4Packet& p, const RtpHeader& h, uint64_t ext_seq, uint64_t ext_ts);
  void emit(const StreamKey& k, const Stream& s);
  void expire_idle(uint64_t now_ns);

  Sink sink_;
  Options opt_;
  Anomalies anomalies_;
  std::unordered_map<Endpoint, Announced, EndpointHash> announced_;
  std::unordered_map<ConvKey, Conv, ConvKeyHash> convs_;
  std::unordered_map<StreamKey, Stream, StreamKeyHash> streams_;
  uint64_t last_sweep_ns_ = 0;
  std::map<std::pair<uint64_t, bool>, std::string> sip_buf_;  // SIP over TCP, per direction
  std::vector<SdpMedia> sdp_scratch_;
};

}  // namespace trawl::decode
