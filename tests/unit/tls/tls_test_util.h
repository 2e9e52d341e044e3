// Helpers for transport tests: temporary PKI directories, loopback socket
// pairs made with the real tcp_* functions, and handshakes run on two threads.
#pragma once

#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "pki/pki.h"
#include "wire/tcp.h"
#include "wire/tls.h"

namespace trawl::wire::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "trawl-tls-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A loopback listener on an ephemeral port.
class Listener {
 public:
  Listener() {
    auto fd = tcp_listen({"127.0.0.1", 0});
    EXPECT_TRUE(fd.ok()) << fd.error().message();
    fd_ = fd.ok() ? *fd : -1;
    auto port = bound_port(fd_);
    EXPECT_TRUE(port.ok());
    port_ = port.ok() ? *port : 0;
  }
  ~Listener() {
    if (fd_ >= 0) ::close(fd_);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int fd() const { return fd_; }
  uint16_t port() const { return port_; }
  HostPort where() const { return {"127.0.0.1", port_}; }

  // Waits up to 2 s for one connection.
  Accepted accept() {
    pollfd p{fd_, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 2000), 1);
    auto a = tcp_accept(fd_);
    EXPECT_TRUE(a.ok() && a->has_value());
    if (!a.ok() || !a->has_value()) return {};
    return std::move(**a);
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// Connected TCP pair over loopback: {client fd, accepted server side}.
inline std::pair<int, Accepted> tcp_pair(Listener& l) {
  auto c = tcp_connect(l.where(), 2000);
  EXPECT_TRUE(c.ok()) << c.error().message();
  Accepted s = l.accept();
  return {c.ok() ? *c : -1, std::move(s)};
}

struct HandshakeResult {
  std::optional<Result<std::unique_ptr<Connection>>> server;
  std::optional<Result<std::unique_ptr<Connection>>> client;
};

// Runs tls_accept on a thread and tls_connect here, over a fresh loopback pair.
inline HandshakeResult handshake(Listener& l, std::shared_ptr<TlsContext> server_ctx,
                                 std::shared_ptr<TlsContext> client_ctx, int timeout_ms = 3000) {
  auto [cfd, s] = tcp_pair(l);
  HandshakeResult out;
  std::thread t([&, sfd = s.fd, peer = s.peer_address] {
    out.server.emplace(tls_accept(server_ctx, sfd, peer, timeout_ms));
  });
  out.client.emplace(tls_connect(client_ctx, cfd, describe_peer(cfd), timeout_ms));
  t.join();
  return out;
}

// Reads until an error or timeout; returns the error text ("" if none came).
inline std::string read_until_error(Connection& c, int timeout_ms = 2000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  uint8_t buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = c.read(buf);
    if (!r.ok()) return r.error().message();
    if (*r > 0) continue;
    pollfd p{c.fd(), static_cast<short>(c.want_write() ? POLLOUT : POLLIN), 0};
    ::poll(&p, 1, 50);
  }
  return "";
}

}  // namespace trawl::wire::testing
