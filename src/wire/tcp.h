// TCP plumbing for the transport: address parsing, nonblocking listen /
// accept / connect, peer formatting, and the plain (unencrypted) Connection.
//
// All sockets are created CLOEXEC and nonblocking. Functions returning an fd
// hand its ownership to the caller. Thread-safe (no shared state).
// Blocking: tcp_connect() blocks in name resolution (getaddrinfo, not bounded
// by timeout_ms) and then up to timeout_ms in connect; nothing else blocks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"
#include "wire/connection.h"

namespace trawl::wire {

struct HostPort {
  std::string host;  // name, IPv4 or IPv6 literal (no brackets); "" = any / loopback
  uint16_t port = 0;
};

// "host:port", "1.2.3.4:5", "[::1]:5", ":5" (host "" = any address when
// listening, loopback when connecting). Port 0..65535, decimal.
Result<HostPort> parse_host_port(std::string_view s);

// "host:port" / "[v6]:port", the inverse of parse_host_port.
std::string format_host_port(const HostPort& hp);

// Listening socket with SO_REUSEADDR. Host "" binds the IPv6 wildcard in
// dual-stack mode (IPv4 too), or 0.0.0.0 where IPv6 is unavailable. A name
// that resolves to several addresses binds only the first that works: listen
// on an address literal (or "") to be explicit.
Result<int> tcp_listen(const HostPort& where, int backlog = 128);

// Port a socket is bound to (for port-0 listeners).
Result<uint16_t> bound_port(int fd);

struct Accepted {
  int fd = -1;                // nonblocking, CLOEXEC, TCP_NODELAY; caller owns it
  std::string peer_address;  // describe_peer(fd)
};
// One pending connection from a listening socket, or nullopt when none is
// waiting (EAGAIN, or a connection that was aborted before we took it).
Result<std::optional<Accepted>> tcp_accept(int listen_fd);

// Resolves, then tries each address in turn until one connects; timeout_ms
// bounds all connect attempts together. Returns a nonblocking fd with
// TCP_NODELAY.
Result<int> tcp_connect(const HostPort& where, int timeout_ms);

// "10.1.0.2:40112", "[2001:db8::1]:5000" (IPv4-mapped IPv6 shown as IPv4);
// "?" when the socket has no peer.
std::string describe_peer(int fd);
// Same for the local end.
std::string describe_local(int fd);

// Unencrypted Connection over a connected socket; takes ownership of fd.
// Writes use MSG_NOSIGNAL, so no SIGPIPE.
std::unique_ptr<Connection> plain_connection(int fd, std::string peer_address);

}  // namespace trawl::wire
