// Diameter (RFC 6733) decoder: a pure message parser, validation against the
// CCF dictionary (diameter_dictionary.h), and a stateful tracker that frames
// messages out of TCP streams / SCTP DATA chunks, matches answers to
// requests and reports one JSON record per transaction (docs/diameter.md).
//
// parse_diameter() and validate_diameter() never throw, never read out of
// bounds and do not allocate: AVPs are views into the caller's bytes.
// Problems are named anomalies (DiameterAnomaly), never errors.
//
// DiameterTracker is single-threaded (one per analysis pipeline); it keeps a
// reference to the dictionary, which must outlive it. Its memory is bounded
// per connection by Options (reassembly bytes, outstanding requests).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "decode/diameter_dictionary.h"

namespace trawl::decode {

// Named anomalies; names (docs/diameter.md) are "diameter.<what>".
enum class DiameterAnomaly : uint8_t {
  kHeaderTruncated,        // fewer than 20 bytes
  kBadVersion,             // version != 1
  kBadMessageLength,       // length < 20, not a multiple of 4, or past the input
  kBadCommandFlags,        // reserved bits set, or R and E both set
  kAvpTruncated,           // an AVP header or body runs past its container
  kAvpBadLength,           // AVP length smaller than its own header
  kAvpLengthForType,       // e.g. an Unsigned32 that is not 4 bytes
  kAvpDepthExceeded,       // grouped AVPs nested deeper than kMaxGroupDepth
  kUnknownCommand,         // (code, application, R) not in the dictionary
  kUnknownMandatoryAvp,    // AVP not in the dictionary with the M bit set
  kMissingRequiredAvp,     // fixed/required rule below its minimum
  kAvpTooMany,             // rule above its maximum
  kFixedAvpPosition,       // a fixed (< >) AVP not at its place at the start
  kAvpNotAllowed,          // AVP not in a grammar that has no "* [ AVP ]"
  kStreamGarbage,          // TCP bytes that are not a Diameter header: skipped to resync
  kMessageTooLong,         // length above Options::max_message_bytes
  kStreamGap,              // TCP bytes lost (on_gap)
  kStreamTruncated,        // connection closed inside a message
  kSctpPartial,            // SCTP chunk holding an incomplete message
  kDuplicateRequest,       // request id reused while outstanding (no T flag)
  kAnswerCommandMismatch,  // answer's command code differs from its request's
  kTooManyPending,         // outstanding-request cap reached
  kCount
};
std::string_view diameter_anomaly_name(DiameterAnomaly a);

// A set of anomalies (one bit each); no allocation.
struct DiameterAnomalies {
  uint32_t bits = 0;
  void add(DiameterAnomaly a) { bits |= 1u << static_cast<unsigned>(a); }
  bool has(DiameterAnomaly a) const { return bits & (1u << static_cast<unsigned>(a)); }
  bool empty() const { return bits == 0; }
  void merge(DiameterAnomalies o) { bits |= o.bits; }
};
static_assert(static_cast<unsigned>(DiameterAnomaly::kCount) <= 32);

constexpr size_t kDiameterHeaderBytes = 20;
constexpr int kMaxGroupDepth = 16;

constexpr uint8_t kCmdFlagR = 0x80;
constexpr uint8_t kCmdFlagP = 0x40;
constexpr uint8_t kCmdFlagE = 0x20;
constexpr uint8_t kCmdFlagT = 0x10;

struct DiameterHeader {
  uint8_t version = 0;
  uint32_t length = 0;  // 24 bits
  uint8_t flags = 0;
  uint32_t command_code = 0;  // 24 bits
  uint32_t application_id = 0;
  uint32_t hop_by_hop = 0;
  uint32_t end_to_end = 0;
  bool request() const { return flags & kCmdFlagR; }
  bool error() const { return flags & kCmdFlagE; }
  bool retransmitted() const { return flags & kCmdFlagT; }
};

struct DiameterAvp {
  uint32_t code = 0;
  uint8_t flags = 0;
  uint32_t vendor = 0;            // 0 when the V bit is clear
  std::span<const uint8_t> data;  // without padding
};

// Walks the AVPs of a message body or a grouped AVP's data.
class DiameterAvpReader {
 public:
  explicit DiameterAvpReader(std::span<const uint8_t> data) : data_(data) {}
  // Fills avp and returns true, or returns false at the end of the data or
  // at the first malformed AVP (then error() names it).
  bool next(DiameterAvp& avp);
  std::optional<DiameterAnomaly> error() const { return error_; }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  std::optional<DiameterAnomaly> error_;
};

struct DiameterMessage {
  DiameterHeader header;
  bool header_ok = false;         // all 20 header bytes were present
  std::span<const uint8_t> avps;  // AVP area: header length or input end, whichever is first
  DiameterAnomalies anomalies;
};

// Parses one message at the start of data (the header and the framing of
// the top-level AVPs; grouped AVPs need the dictionary, see below).
DiameterMessage parse_diameter(std::span<const uint8_t> data);

// What a transaction record needs from one message: views into its bytes.
struct DiameterSummary {
  const CommandDef* command = nullptr;
  std::string_view session_id, origin_host, origin_realm, destination_host, destination_realm;
  std::optional<uint32_t> result_code;
  std::optional<uint32_t> experimental_result_code;
  uint32_t experimental_result_vendor = 0;
};

// Checks msg against the dictionary: command grammar (or RFC 6733's
// answer-message grammar for answers with the E bit), grouped AVPs
// recursively, unknown mandatory AVPs, value lengths for fixed-size types.
// Adds anomalies to msg.anomalies; when details is given, also appends one
// line per grammar problem ("missing_required_avp: Vendor-Id in
// Supported-Features"), at most kMaxAnomalyDetails (allocates only then).
constexpr size_t kMaxAnomalyDetails = 8;
DiameterSummary validate_diameter(DiameterMessage& msg, const DiameterDictionary& dict,
                                  std::vector<std::string>* details = nullptr);

// The seam to the transport layer (TCP reassembly / SCTP) of `trawl analyze`.
struct DiameterSegment {
  uint64_t conn_id = 0;  // one TCP connection / SCTP association, both directions
  bool from_a = false;   // direction within the connection
  std::string_view src;  // "ip:port", IPv6 in brackets
  std::string_view dst;
  bool sctp = false;
  uint64_t ts_ns = 0;
  // TCP: in-order stream bytes of one direction, any chunking.
  // SCTP: one DATA chunk's user data (normally one whole message).
  std::span<const uint8_t> data;
};

class DiameterTracker {
 public:
  using Sink = std::function<void(nlohmann::json&&)>;
  struct Options {
    size_t max_message_bytes = 1 << 20;           // longer: kMessageTooLong + resync
    size_t max_pending_per_connection = 1 << 16;  // outstanding requests
  };

  DiameterTracker(const DiameterDictionary& dict, Sink sink);
  DiameterTracker(const DiameterDictionary& dict, Sink sink, Options options);

  void on_data(const DiameterSegment& seg);
  void on_gap(uint64_t conn_id,
              bool from_a);         // TCP bytes lost: resync at the next plausible header
  void on_close(uint64_t conn_id);  // report the connection's unanswered requests
  void finish();                    // end of input: report everything still open

  // (name, count) of every anomaly seen at least once, by name. Message
  // anomalies count once per message in which they occur.
  std::vector<std::pair<std::string, uint64_t>> anomalies() const;
  uint64_t messages() const { return messages_; }

 private:
  struct Pending {
    uint64_t ts_ns = 0;
    uint64_t order = 0;
    uint32_t command_code = 0;
    uint32_t application_id = 0;
    uint32_t hop_by_hop = 0, end_to_end = 0;
    const CommandDef* command = nullptr;
    // Session-Id, Origin-Host, Origin-Realm, Destination-Host,
    // Destination-Realm back to back in one allocation; field(i) views them.
    std::string text;
    std::array<uint32_t, 6> ends{};
    std::string_view field(size_t i) const {
      return std::string_view(text).substr(i ? ends[i - 1] : 0, ends[i] - (i ? ends[i - 1] : 0));
    }
    DiameterAnomalies anomalies;
    std::vector<std::string> details;
  };
  struct Direction {
    std::vector<uint8_t> buf;  // bytes of an incomplete message
    bool resync = false;
  };
  struct Connection {
    std::string addr[2];  // [0] = side B, [1] = side A
    bool sctp = false;
    Direction dir[2];                                  // indexed by from_a
    std::unordered_map<uint64_t, Pending> pending[2];  // requests sent by side [from_a]
  };

  size_t drain(Connection& c, bool from_a, std::span<const uint8_t> data, uint64_t ts_ns);
  void on_message(Connection& c, bool from_a, std::span<const uint8_t> bytes, uint64_t ts_ns);
  void emit(const Connection& c, bool req_from_a, const Pending* req, const DiameterMessage* ans,
            const DiameterSummary* ans_sum, uint64_t ans_ts_ns, DiameterAnomalies extra,
            const std::vector<std::string>* ans_details = nullptr);
  void count(DiameterAnomalies a);
  void count(DiameterAnomaly a);
  void close_connection(Connection& c);

  const DiameterDictionary& dict_;
  Sink sink_;
  Options options_;
  std::unordered_map<uint64_t, Connection> conns_;
  std::array<uint64_t, static_cast<size_t>(DiameterAnomaly::kCount)> counts_{};
  uint64_t order_ = 0;
  uint64_t messages_ = 0;
};

}  // namespace trawl::decode
