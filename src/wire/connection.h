// Connection: a connected, nonblocking byte stream — plain TCP (tcp.h) or
// mutually authenticated TLS 1.3 (tls.h). The frame codec and the agent /
// collector loops talk to this interface only, so they can be tested over a
// plain socketpair and run over TLS in production.
//
// Ownership: a Connection owns its fd and closes it in the destructor.
// Threads: one thread at a time per connection (move it between threads
// freely); different connections are independent.
// Blocking: never. read()/write() return 0 when the socket would block; the
// caller polls fd() for POLLIN, or for POLLOUT when want_write() is true.
// TLS can need the opposite direction (a read that must first flush a write,
// or a write that waits for a read), which want_write() reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/result.h"

namespace trawl::wire {

// Exact message of the Error read()/write() return when the peer closed the
// stream (TCP FIN, TLS close_notify, or EOF without close_notify: the frame
// layer detects truncation by itself). Check with is_peer_closed() before
// adding context.
inline constexpr std::string_view kPeerClosed = "peer closed the connection";

inline bool is_peer_closed(const Error& e) { return e.message() == kPeerClosed; }

class Connection {
 public:
  virtual ~Connection() = default;  // closes the fd (no close_notify; call shutdown() first)

  virtual int fd() const = 0;

  // >0: bytes read. 0: would block — poll POLLIN (or POLLOUT when
  // want_write()). Error: the peer closed (kPeerClosed) or the connection
  // failed (TLS alert text, errno text). After an Error the connection is dead.
  virtual Result<size_t> read(std::span<uint8_t> buf) = 0;

  // >0: bytes accepted (possibly fewer than buf.size()). 0: would block, as
  // for read(). TLS: after a write returned 0 or a short count, the next
  // write must start with the bytes that were not accepted (same bytes, at
  // least as many; the buffer may move) — OpenSSL has already encrypted them.
  virtual Result<size_t> write(std::span<const uint8_t> buf) = 0;

  // The last read()/write() returned 0 because the socket must become writable.
  virtual bool want_write() const = 0;

  // TLS: bytes already received and buffered inside the library. poll() does
  // not see them, so read until this is false before polling again.
  virtual bool has_buffered_read() const = 0;

  // "10.1.0.2:40112", "[::1]:5000".
  virtual const std::string& peer_address() const = 0;

  // TLS server side: the agent name from the verified client certificate
  // (first DNS SAN, else CN). TLS client side: the collector certificate's
  // name (informational). Plain: "".
  virtual const std::string& identity() const = 0;

  // Best effort, never blocks: TLS close_notify, then shutdown(SHUT_WR).
  virtual void shutdown() = 0;
};

}  // namespace trawl::wire
