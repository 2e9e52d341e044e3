// TCP sockets: parsing, listen/accept/connect with deadlines, plain Connection.
#include "wire/tcp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

namespace trawl::wire {
namespace {

using SteadyClock = std::chrono::steady_clock;

std::string format_sockaddr(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, sizeof buf);
      return fmt::format("{}:{}", buf, ntohs(in6->sin6_port));
    }
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, ntohs(in6->sin6_port));
  }
  return "?";
}

void set_nodelay(int fd) {
  int one = 1;
  // Frames are written whole; Nagle would only add latency to ACKs.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Result<int> listen_on(const sockaddr* sa, socklen_t len, int backlog, bool dual_stack) {
  int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::from_errno("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (dual_stack) {
    int zero = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  }
  if (::bind(fd, sa, len) != 0) {
    Error e = Error::from_errno(fmt::format("bind {}", format_sockaddr(sa)));
    ::close(fd);
    return e;
  }
  if (::listen(fd, backlog) != 0) {
    Error e = Error::from_errno("listen");
    ::close(fd);
    return e;
  }
  return fd;
}

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

Result<AddrInfoPtr> resolve(const HostPort& hp, int flags) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags | AI_NUMERICSERV;
  std::string port = std::to_string(hp.port);
  addrinfo* res = nullptr;
  int rc = getaddrinfo(hp.host.empty() ? nullptr : hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    if (rc == EAI_SYSTEM) return Error::from_errno(fmt::format("resolving {}", hp.host));
    return Error(fmt::format("resolving {}: {}", hp.host, gai_strerror(rc)));
  }
  return AddrInfoPtr(res);
}

// One nonblocking connect attempt bounded by deadline. Returns the fd or an
// Error naming the address.
Result<int> connect_one(const addrinfo* ai, SteadyClock::time_point deadline) {
  const std::string where = format_sockaddr(ai->ai_addr);
  int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::from_errno(where + ": socket");
  auto fail = [&](Error e) -> Result<int> {
    ::close(fd);
    return e;
  };
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return fail(Error::from_errno(where));
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0) return fail(Error::from_errno(where, ETIMEDOUT));
      pollfd p{fd, POLLOUT, 0};
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(Error::from_errno(where + ": poll"));
      if (n == 0) return fail(Error::from_errno(where, ETIMEDOUT));
      break;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return fail(Error::from_errno(where));
    if (err != 0) return fail(Error::from_errno(where, err));
  }
  set_nodelay(fd);
  return fd;
}

class PlainConnection final : public Connection {
 public:
  PlainConnection(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  ~PlainConnection() override {
    if (fd_ >= 0) ::close(fd_);
  }
  PlainConnection(const PlainConnection&) = delete;
  PlainConnection& operator=(const PlainConnection&) = delete;

  int fd() const override { return fd_; }

  Result<size_t> read(std::span<uint8_t> buf) override {
    want_write_ = false;
    for (;;) {
      ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n > 0) return static_cast<size_t>(n);
      if (n == 0) return Error(std::string(kPeerClosed));
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return size_t{0};
      return Error::from_errno("read");
    }
  }

  Result<size_t> write(std::span<const uint8_t> buf) override {
    want_write_ = false;
    for (;;) {
      ssize_t n = ::send(fd_, buf.data(), buf.size(), MSG_NOSIGNAL);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        want_write_ = true;
        return size_t{0};
      }
      if (errno == EPIPE) return Error(std::string(kPeerClosed));
      return Error::from_errno("write");
    }
  }

  bool want_write() const override { return want_write_; }
  bool has_buffered_read() const override { return false; }
  const std::string& peer_address() const override { return peer_; }
  const std::string& identity() const override { return identity_; }
  void shutdown() override { ::shutdown(fd_, SHUT_WR); }

 private:
  int fd_;
  std::string peer_;
  std::string identity_;
  bool want_write_ = false;
};

}  // namespace

Result<HostPort> parse_host_port(std::string_view s) {
  HostPort hp;
  std::string_view port;
  if (s.empty()) return Error("empty address (want host:port)");
  if (s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return Error(fmt::format("'{}': missing ']'", s));
    hp.host = std::string(s.substr(1, close - 1));
    if (hp.host.empty()) return Error(fmt::format("'{}': empty address in brackets", s));
    if (close + 1 >= s.size() || s[close + 1] != ':')
      return Error(fmt::format("'{}': missing port (want [addr]:port)", s));
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return Error(fmt::format("'{}': missing port (want host:port)", s));
    hp.host = std::string(s.substr(0, colon));
    if (hp.host.find(':') != std::string::npos)
      return Error(fmt::format("'{}': IPv6 addresses need brackets ([addr]:port)", s));
    port = s.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
    return Error(fmt::format("'{}': bad port '{}'", s, port));
  hp.port = static_cast<uint16_t>(value);
  return hp;
}

std::string format_host_port(const HostPort& hp) {
  if (hp.host.find(':') != std::string::npos) return fmt::format("[{}]:{}", hp.host, hp.port);
  return fmt::format("{}:{}", hp.host, hp.port);
}

Result<int> tcp_listen(const HostPort& where, int backlog) {
  const std::string what = fmt::format("listening on {}", format_host_port(where));
  if (where.host.empty()) {
    sockaddr_in6 any6{};
    any6.sin6_family = AF_INET6;
    any6.sin6_addr = in6addr_any;
    any6.sin6_port = htons(where.port);
    auto fd = listen_on(reinterpret_cast<sockaddr*>(&any6), sizeof any6, backlog, true);
    if (fd.ok()) return fd;
    int err = fd.error().sys_errno();
    if (err != EAFNOSUPPORT && err != EADDRNOTAVAIL) return std::move(fd).error().with_context(what);
    sockaddr_in any4{};
    any4.sin_family = AF_INET;
    any4.sin_addr.s_addr = htonl(INADDR_ANY);
    any4.sin_port = htons(where.port);
    auto fd4 = listen_on(reinterpret_cast<sockaddr*>(&any4), sizeof any4, backlog, false);
    if (!fd4.ok()) return std::move(fd4).error().with_context(what);
    return fd4;
  }
  auto ai = resolve(where, AI_PASSIVE);
  if (!ai.ok()) return std::move(ai).error().with_context(what);
  std::optional<Error> first;
  for (const addrinfo* a = ai->get(); a != nullptr; a = a->ai_next) {
    auto fd = listen_on(a->ai_addr, a->ai_addrlen, backlog, false);
    if (fd.ok()) return fd;
    if (!first) first = std::move(fd).error();
  }
  return first ? std::move(*first).with_context(what) : Error(what + ": no address");
}

Result<uint16_t> bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return Error::from_errno("getsockname");
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return Error("getsockname: not an IP socket");
}

Result<std::optional<Accepted>> tcp_accept(int listen_fd) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      set_nodelay(fd);
      return std::optional<Accepted>(Accepted{fd, format_sockaddr(reinterpret_cast<sockaddr*>(&ss))});
    }
    if (errno == EINTR) continue;
    // ECONNABORTED & co: that client is gone; others may still be queued and
    // poll() will report the listener readable again.
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EPROTO)
      return std::optional<Accepted>();
    return Error::from_errno("accept");
  }
}

Result<int> tcp_connect(const HostPort& where, int timeout_ms) {
  const std::string what = fmt::format("connecting to {}", format_host_port(where));
  if (where.port == 0) return Error(what + ": port 0");
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
  auto ai = resolve(where, 0);
  if (!ai.ok()) return std::move(ai).error().with_context(what);
  std::string failures;
  for (const addrinfo* a = ai->get(); a != nullptr; a = a->ai_next) {
    auto fd = connect_one(a, deadline);
    if (fd.ok()) return fd;
    if (!failures.empty()) failures += "; ";
    failures += fd.error().message();
    if (SteadyClock::now() >= deadline) break;
  }
  if (failures.empty()) return Error(what + ": no address");
  return Error(fmt::format("{}: {}", what, failures));
}

std::string describe_peer(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return format_sockaddr(reinterpret_cast<sockaddr*>(&ss));
}

std::string describe_local(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return format_sockaddr(reinterpret_cast<sockaddr*>(&ss));
}

std::unique_ptr<Connection> plain_connection(int fd, std::string peer_address) {
  return std::make_unique<PlainConnection>(fd, std::move(peer_address));
}

}  // namespace trawl::wire
