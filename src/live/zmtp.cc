#include "live/zmtp.h"

#include <strings.h>

#include <cstring>

#include <fmt/format.h>

#include "core/bytes.h"

namespace trawl::live::zmtp {
namespace {

constexpr uint8_t kMore = 0x01;
constexpr uint8_t kLong = 0x02;
constexpr uint8_t kCommand = 0x04;

void append_ready(std::vector<uint8_t>& out, std::string_view socket_type) {
  std::vector<uint8_t> body;
  ByteWriter w(body);
  w.u8(5);
  w.str("READY");
  w.u8(11);
  w.str("Socket-Type");
  w.u32be(static_cast<uint32_t>(socket_type.size()));
  w.str(socket_type);
  out.push_back(kCommand);  // short command frame
  out.push_back(static_cast<uint8_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
}

}  // namespace

std::vector<uint8_t> publisher_handshake() { return handshake("PUB"); }

std::vector<uint8_t> handshake(std::string_view socket_type) {
  std::vector<uint8_t> out(kGreetingBytes, 0);
  out[0] = 0xff;  // signature: 0xff, 8 bytes padding, 0x7f
  out[9] = 0x7f;
  out[10] = 3;  // version 3.0: peers then use "\x01topic" subscription messages
  out[11] = 0;
  std::memcpy(&out[12], "NULL", 4);  // mechanism, zero padded to 20 bytes
  // out[32] as-server = 0, then 31 bytes filler
  append_ready(out, socket_type);
  return out;
}

void append_frame_header(std::vector<uint8_t>& out, size_t body, bool more) {
  uint8_t flags = more ? kMore : 0;
  if (body > 255) {
    out.push_back(flags | kLong);
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(uint64_t{body} >> (8 * i)));
  } else {
    out.push_back(flags);
    out.push_back(static_cast<uint8_t>(body));
  }
}

void append_frame(std::vector<uint8_t>& out, std::span<const uint8_t> body, bool more) {
  append_frame_header(out, body.size(), more);
  out.insert(out.end(), body.begin(), body.end());
}

Status SubscriberParser::feed(std::span<const uint8_t> data, Handler& h) {
  buf_.insert(buf_.end(), data.begin(), data.end());
  size_t pos = 0;
  auto finish = [&]() {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(pos));
  };
  if (!greeted_) {
    // The signature can be checked before the whole greeting is in.
    if (!buf_.empty() && buf_[0] != 0xff) return Error("not a ZMTP peer (bad greeting signature)");
    if (buf_.size() >= 10 && buf_[9] != 0x7f) return Error("not a ZMTP 3 peer (ZMTP 1.0 or 2.0 greeting)");
    if (buf_.size() >= 11 && buf_[10] < 3) return Error(fmt::format("peer speaks ZMTP {}, need 3", buf_[10]));
    if (buf_.size() < kGreetingBytes) return ok_status();
    if (std::memcmp(&buf_[12], "NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20) != 0) {
      return Error("peer asks for a security mechanism other than NULL");
    }
    greeted_ = true;
    pos = kGreetingBytes;
  }
  for (;;) {
    ByteReader r(std::span<const uint8_t>(buf_).subspan(pos));
    uint8_t flags = r.u8();
    uint64_t size = (flags & kLong) ? r.u64be() : r.u8();
    if (!r.ok()) break;
    if (flags & ~(kMore | kLong | kCommand)) return Error(fmt::format("bad ZMTP frame flags 0x{:02x}", flags));
    if (size > kMaxInboundFrame) return Error(fmt::format("ZMTP frame of {} bytes from a subscriber", size));
    auto body = r.bytes(size);
    if (!r.ok()) break;
    pos += r.position();
    if (Status s = on_frame(flags, body, h); !s) return s;
  }
  finish();
  return ok_status();
}

Status SubscriberParser::on_frame(uint8_t flags, std::span<const uint8_t> body, Handler& h) {
  if (flags & kCommand) return on_command(body, h);
  if (!ready_) return Error("message before READY");
  bool first = !in_multipart_;
  in_multipart_ = (flags & kMore) != 0;
  if (!first || body.empty()) return ok_status();  // XSUB may send other messages: ignored
  std::string_view topic(reinterpret_cast<const char*>(body.data()) + 1, body.size() - 1);
  if (body[0] == 1) h.subscribe(topic);
  else if (body[0] == 0) h.cancel(topic);
  return ok_status();
}

Status SubscriberParser::on_command(std::span<const uint8_t> body, Handler& h) {
  ByteReader r(body);
  uint8_t name_len = r.u8();
  std::string_view name = r.str(name_len);
  if (!r.ok()) return Error("truncated ZMTP command");
  if (name == "READY") {
    while (!r.empty()) {
      uint8_t nl = r.u8();
      std::string_view prop = r.str(nl);
      uint32_t vl = r.u32be();
      std::string_view value = r.str(vl);
      if (!r.ok()) return Error("malformed READY properties");
      if (prop.size() == 11 && strncasecmp(prop.data(), "Socket-Type", 11) == 0) socket_type_ = value;
    }
    if (socket_type_ != "SUB" && socket_type_ != "XSUB") {
      return Error(fmt::format("peer is a {} socket, only SUB/XSUB can subscribe",
                               socket_type_.empty() ? "untyped" : socket_type_));
    }
    ready_ = true;
    return ok_status();
  }
  if (!ready_) return Error(fmt::format("{} command before READY", name));
  auto rest = body.subspan(r.position());
  std::string_view topic(reinterpret_cast<const char*>(rest.data()), rest.size());
  if (name == "SUBSCRIBE") h.subscribe(topic);
  else if (name == "CANCEL") h.cancel(topic);
  else if (name == "ERROR") return Error("peer sent ERROR");
  // PING/PONG and unknown commands: nothing to do (we never ask for heartbeats)
  return ok_status();
}

}  // namespace trawl::live::zmtp
