// The publishing side of ZMTP 3.0 (rfc.zeromq.org/spec/23, NULL security),
// as far as a PUB socket needs it: our greeting + READY(Socket-Type=PUB),
// message frames out, and the SUB peer's greeting, READY, subscriptions
// ("\x01topic" / "\x00topic" messages, or ZMTP 3.1 SUBSCRIBE / CANCEL
// commands) in. Why trawl speaks ZMTP itself instead of using libzmq's PUB
// socket: docs/live.md (per-subscriber bounded queues with exact drop
// counts). Consumers use ordinary libzmq SUB sockets.
//
// Plain values; not thread-safe; no I/O.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace trawl::live::zmtp {

constexpr size_t kGreetingBytes = 64;
// Anything a subscriber sends is small (subscriptions, commands); a frame
// above this closes the connection.
constexpr uint64_t kMaxInboundFrame = 64 << 10;

// Greeting (version 3.0, mechanism NULL, as-server 0) followed by
// READY with Socket-Type=PUB.
std::vector<uint8_t> publisher_handshake();
// The same for any socket type ("SUB" for zmtp::Subscriber).
std::vector<uint8_t> handshake(std::string_view socket_type);

// Bytes of a frame header for a body of this size (1 + 1 or 1 + 8).
constexpr size_t frame_header_size(size_t body) { return body > 255 ? 9 : 2; }
constexpr size_t frame_size(size_t body) { return frame_header_size(body) + body; }
// Appends a frame header (flags: MORE if more, LONG if body > 255).
void append_frame_header(std::vector<uint8_t>& out, size_t body, bool more);
void append_frame(std::vector<uint8_t>& out, std::span<const uint8_t> body, bool more);
// Writes a frame header at p (frame_header_size(body) bytes); returns the end.
inline uint8_t* put_frame_header(uint8_t* p, size_t body, bool more) {
  if (body > 255) {
    *p++ = static_cast<uint8_t>((more ? 0x01 : 0) | 0x02);
    for (int i = 7; i >= 0; --i) *p++ = static_cast<uint8_t>(uint64_t{body} >> (8 * i));
  } else {
    *p++ = more ? 0x01 : 0;
    *p++ = static_cast<uint8_t>(body);
  }
  return p;
}
// A whole frame at p; returns the end.
inline uint8_t* put_frame(uint8_t* p, std::span<const uint8_t> body, bool more) {
  p = put_frame_header(p, body.size(), more);
  if (!body.empty()) std::memcpy(p, body.data(), body.size());
  return p + body.size();
}

// Parses what a subscriber sends. feed() consumes bytes as they arrive and
// reports subscription changes; an Error means the peer broke the protocol
// (or is not a SUB/XSUB socket) and must be dropped.
class SubscriberParser {
 public:
  struct Handler {
    virtual ~Handler() = default;
    virtual void subscribe(std::string_view prefix) = 0;
    virtual void cancel(std::string_view prefix) = 0;
  };
  Status feed(std::span<const uint8_t> data, Handler& h);
  bool ready() const { return ready_; }
  std::string_view socket_type() const { return socket_type_; }

 private:
  Status on_frame(uint8_t flags, std::span<const uint8_t> body, Handler& h);
  Status on_command(std::span<const uint8_t> body, Handler& h);

  std::vector<uint8_t> buf_;
  bool greeted_ = false;
  bool ready_ = false;
  bool in_multipart_ = false;  // continuation frames of a message are ignored
  std::string socket_type_;
};

}  // namespace trawl::live::zmtp
