#include "live/zmtp_subscriber.h"

#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/bytes.h"
#include "live/zmtp.h"

namespace trawl::live::zmtp {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr uint8_t kMore = 0x01;
constexpr uint8_t kLong = 0x02;
constexpr uint8_t kCommand = 0x04;
constexpr auto kRetry = std::chrono::milliseconds(100);
constexpr int kConnectTimeoutMs = 1000;
constexpr size_t kReadChunk = 256 << 10;
constexpr size_t kSignatureBytes = 10;

int ms_until(SteadyClock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - SteadyClock::now()).count();
  return ms < 0 ? 0 : static_cast<int>(std::min<int64_t>(ms, 1 << 30));
}

}  // namespace

Result<std::unique_ptr<Subscriber>> Subscriber::create(std::string_view endpoint, std::vector<std::string> prefixes) {
  std::string_view hp = endpoint;
  if (auto scheme = hp.find("://"); scheme != std::string_view::npos) {
    if (hp.substr(0, scheme) != "tcp") {
      return Error(fmt::format("{}: only tcp:// endpoints are supported", endpoint));
    }
    hp.remove_prefix(scheme + 3);
  }
  auto where = wire::parse_host_port(hp);
  if (!where.ok()) return std::move(where).error().with_context(std::string(endpoint));
  if (where->port == 0) return Error(fmt::format("{}: needs a port", endpoint));
  return std::unique_ptr<Subscriber>(new Subscriber(*where, std::string(endpoint), std::move(prefixes)));
}

Subscriber::Subscriber(wire::HostPort where, std::string endpoint, std::vector<std::string> prefixes)
    : where_(std::move(where)), endpoint_(std::move(endpoint)), prefixes_(std::move(prefixes)) {}

Subscriber::~Subscriber() {
  if (fd_ >= 0) ::close(fd_);
}

void Subscriber::fail(std::string why) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  greeted_ = ready_ = false;
  in_len_ = consumed_ = 0;
  pending_.clear();
  out_.clear();
  last_error_ = fmt::format("{}: {}", endpoint_, why);
  ++failures_;
  next_attempt_ = SteadyClock::now() + kRetry;
}

void Subscriber::try_connect() {
  // Bounded on its own (kConnectTimeoutMs), not by receive()'s timeout: a
  // short receive() must still be able to connect.
  auto fd = wire::tcp_connect(where_, kConnectTimeoutMs);
  if (!fd.ok()) {
    // tcp_connect's message already names the address.
    fail(fd.error().message());
    last_error_ = fd.error().message();
    return;
  }
  fd_ = *fd;
  // libzmq (4.3.4) drops a connection on which a part of the handshake
  // arrives before it has sent its own (seen with strace), so ours goes out
  // in its lock-step: the signature; once the peer's signature is in, the
  // major version (on which libzmq sends the rest of its greeting); once the
  // peer's whole greeting is in, the rest of ours; once its READY is in, our
  // READY and the subscriptions. See parse() and on_command().
  greeting_ = handshake("SUB");
  greeting_[8] = 1;  // as libzmq sends it (a ZMTP 1.0 peer would read a routing-id length)
  greeting_step_ = 0;
  out_.assign(greeting_.begin(), greeting_.begin() + kSignatureBytes);
  flush_output();
}

void Subscriber::send_rest_of_greeting() {
  auto ready = greeting_.begin() + kGreetingBytes;
  if (greeting_step_ == 1) {
    out_.push_back(greeting_[kSignatureBytes]);  // major version
  } else if (greeting_step_ == 2) {
    out_.insert(out_.end(), greeting_.begin() + kSignatureBytes + 1, ready);
  } else {
    out_.insert(out_.end(), ready, greeting_.end());
    for (const auto& p : prefixes_) {
      std::vector<uint8_t> body(1, 1);  // ZMTP 3.0 subscription: "\x01" + prefix
      body.insert(body.end(), p.begin(), p.end());
      append_frame(out_, body, false);
    }
  }
  flush_output();
}

void Subscriber::flush_output() {
  size_t done = 0;
  while (fd_ >= 0 && done < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + done, out_.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    fail(fmt::format("send: {}", std::strerror(errno)));
    return;
  }
  if (fd_ >= 0) out_.erase(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(done));
}

bool Subscriber::on_command(std::span<const uint8_t> body) {
  ByteReader r(body);
  uint8_t name_len = r.u8();
  std::string_view name = r.str(name_len);
  if (!r.ok()) {
    fail("truncated ZMTP command");
    return false;
  }
  if (name == "READY") {
    std::string_view type;
    while (!r.empty()) {
      uint8_t nl = r.u8();
      std::string_view prop = r.str(nl);
      uint32_t vl = r.u32be();
      std::string_view value = r.str(vl);
      if (!r.ok()) {
        fail("malformed READY properties");
        return false;
      }
      if (prop.size() == 11 && strncasecmp(prop.data(), "Socket-Type", 11) == 0) type = value;
    }
    if (type != "PUB" && type != "XPUB") {
      fail(fmt::format("peer is a {} socket, not a publisher", type.empty() ? "untyped" : std::string(type)));
      return false;
    }
    ready_ = true;
    last_error_.clear();
    greeting_step_ = 3;
    send_rest_of_greeting();
    return fd_ >= 0;
  }
  if (name == "ERROR") {
    uint8_t len = r.u8();
    std::string_view reason = r.str(len);
    fail(fmt::format("publisher sent ERROR: {}", r.ok() ? reason : "?"));
    return false;
  }
  return true;  // PING and others: we never ask for heartbeats
}

bool Subscriber::parse(Parts& parts) {
  for (;;) {
    const uint8_t* p = in_.data() + consumed_;
    size_t avail = in_len_ - consumed_;
    if (!greeted_) {
      if (avail >= 1 && p[0] != 0xff) return fail("not a ZMTP peer (bad greeting signature)"), false;
      if (avail >= kSignatureBytes && p[9] != 0x7f) return fail("not a ZMTP 3 peer"), false;
      if (greeting_step_ == 0 && avail >= kSignatureBytes) {
        greeting_step_ = 1;
        send_rest_of_greeting();
        if (fd_ < 0) return false;
      }
      if (avail >= kSignatureBytes + 1 && p[10] < 3) return fail(fmt::format("peer speaks ZMTP {}, need 3", p[10])), false;
      if (avail < kGreetingBytes) return false;
      if (greeting_step_ == 1) {
        greeting_step_ = 2;
        send_rest_of_greeting();
        if (fd_ < 0) return false;
      }
      if (std::memcmp(p + 12, "NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20) != 0) {
        return fail("publisher asks for a security mechanism other than NULL"), false;
      }
      greeted_ = true;
      consumed_ += kGreetingBytes;
      continue;
    }
    if (avail < 2) return false;
    uint8_t flags = p[0];
    if (flags & ~(kMore | kLong | kCommand)) return fail(fmt::format("bad ZMTP frame flags 0x{:02x}", flags)), false;
    size_t header = (flags & kLong) ? 9 : 2;
    if (avail < header) return false;
    uint64_t size = 0;
    if (flags & kLong) {
      for (int i = 1; i <= 8; ++i) size = (size << 8) | p[i];
    } else {
      size = p[1];
    }
    if (size > kMaxFrame) return fail(fmt::format("ZMTP frame of {} bytes", size)), false;
    if (avail - header < size) return false;
    size_t body = consumed_ + header;
    consumed_ = body + size;
    if (flags & kCommand) {
      if (!on_command(std::span<const uint8_t>(in_.data() + body, size))) return false;
      continue;
    }
    if (!ready_) return fail("message before READY"), false;
    pending_.emplace_back(body, size);
    if (flags & kMore) continue;
    parts.clear();
    for (auto [off, n] : pending_) parts.emplace_back(in_.data() + off, n);
    pending_.clear();
    return true;
  }
}

bool Subscriber::receive(Parts& parts, int timeout_ms) {
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  for (;;) {
    if (fd_ >= 0 && parse(parts)) return true;
    if (fd_ < 0) {
      if (SteadyClock::now() < next_attempt_) {
        int wait = std::min(ms_until(deadline), ms_until(next_attempt_));
        if (SteadyClock::now() >= deadline) return false;
        if (::poll(nullptr, 0, wait) < 0 && errno == EINTR) return false;
        continue;
      }
      try_connect();
      if (fd_ < 0 && SteadyClock::now() >= deadline) return false;
      continue;
    }
    // Room to read: reuse the consumed front of the buffer when it is most
    // of it (messages already returned point there only until this call).
    if (in_.size() - in_len_ < kReadChunk / 4) {
      size_t keep_from = pending_.empty() ? consumed_ : pending_.front().first;
      keep_from = std::min(keep_from, consumed_);
      if (keep_from > 0 && keep_from >= in_.size() / 2) {
        std::memmove(in_.data(), in_.data() + keep_from, in_len_ - keep_from);
        in_len_ -= keep_from;
        consumed_ -= keep_from;
        for (auto& f : pending_) f.first -= keep_from;
      } else {
        in_.resize(std::max(in_.size() * 2, in_len_ + kReadChunk));
      }
    }
    pollfd pfd{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
    int n = ::poll(&pfd, 1, ms_until(deadline));
    if (n < 0) {
      if (errno == EINTR) return false;
      fail(fmt::format("poll: {}", std::strerror(errno)));
      continue;
    }
    if (n == 0) return false;
    if (pfd.revents & POLLOUT) flush_output();
    if (fd_ < 0) continue;
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t got = ::recv(fd_, in_.data() + in_len_, in_.size() - in_len_, 0);
      if (got > 0) {
        in_len_ += static_cast<size_t>(got);
      } else if (got == 0) {
        fail("publisher closed the connection");
      } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        fail(std::strerror(errno));
      }
    }
  }
}

}  // namespace trawl::live::zmtp
