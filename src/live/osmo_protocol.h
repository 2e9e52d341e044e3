// The osmo-pcap client -> server protocol, as trawl's collector receives
// it (docs/osmo-migration.md): a TCP stream of messages, each a 4-byte
// header {u8 type, u8 spare, u16 payload length (network order)} and the
// payload. Type 0 (link header): a 24-byte classic pcap file header in the
// sender's byte order; type 1 (data): one classic pcap record (16-byte
// header in the sender's byte order, then caplen bytes). The byte order and
// the timestamp resolution come from the link header's magic.
//
// OsmoDecoder splits the stream (bounds-checked, never trusts a length it
// has not checked) and parses each message; anything impossible is an
// OsmoError naming the reason, and the connection must then be closed.
// Plain values; not thread-safe; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/receive_buffer.h"

namespace trawl::live::osmo {

constexpr size_t kMessageHeaderBytes = 4;
constexpr uint8_t kTypeLinkHeader = 0;
constexpr uint8_t kTypeData = 1;

enum class Malformed : uint8_t {
  kUnknownType,       // message type other than 0 and 1
  kBadLinkHeader,     // link header not 24 bytes, or unknown magic
  kDataBeforeLink,    // data before any link header
  kShortRecord,       // data payload shorter than a record header
  kCaplenOverPayload, // record's caplen larger than the bytes that follow
  kCaplenOverMax,     // record's caplen larger than the snaplen / configured maximum
  kCount
};
std::string_view to_string(Malformed m);

struct LinkHeader {
  bool swapped = false;   // sender's byte order is not little-endian
  bool nsec = false;      // magic 0xa1b23c4d: the fraction field is nanoseconds
  uint32_t snaplen = 0;
  uint32_t link_type = 0;
};

struct Packet {
  uint64_t ts_ns = 0;
  uint32_t orig_len = 0;
  std::span<const uint8_t> data;  // points into the decoder's buffer
};

struct OsmoError {
  Malformed reason;
  std::string detail;
};

// One event from the stream.
struct Message {
  enum class Kind : uint8_t { kLink, kPacket } kind;
  LinkHeader link;  // kLink: the new header
  Packet packet;    // kPacket
};

class OsmoDecoder {
 public:
  explicit OsmoDecoder(uint32_t max_caplen) : max_caplen_(max_caplen) {}
  // Read into writable(), commit() what arrived, then next() until nullopt.
  // Views stay valid until the next writable().
  std::span<uint8_t> writable(size_t min_bytes = 64 << 10) { return buf_.writable(min_bytes); }
  void commit(size_t n) { buf_.commit(n); }
  // The next message (valid until the next call), nullptr when more bytes
  // are needed or on an error (set in err). Filled in place: returning an
  // optional<Message> by value cost a store-forwarding stall per packet.
  const Message* next(std::optional<OsmoError>& err);
  const std::optional<LinkHeader>& link() const { return link_; }

 private:
  bool parse(uint8_t type, std::span<const uint8_t> payload, std::optional<OsmoError>& err);

  uint32_t max_caplen_;
  std::optional<LinkHeader> link_;
  ReceiveBuffer buf_{128 << 10};
  Message msg_{};
};

// Encoders, for the test client and tests: a message header, a link header
// and a data record in little-endian (or big-endian when swapped) order.
void append_message_header(std::vector<uint8_t>& out, uint8_t type, uint16_t payload_len);
void append_link_header(std::vector<uint8_t>& out, uint32_t snaplen, uint32_t link_type, bool nsec = false,
                        bool swapped = false);
void append_data(std::vector<uint8_t>& out, uint64_t ts_ns, uint32_t orig_len, std::span<const uint8_t> data,
                 bool nsec = false, bool swapped = false);

}  // namespace trawl::live::osmo
