// The subscribing side of ZMTP 3.0 (rfc.zeromq.org/spec/23, NULL security):
// a SUB socket with one endpoint, for `trawl tail` and `trawl analyze
// --live`. It talks to any ZeroMQ PUB/XPUB (the collector's own publisher,
// osmo-pcap's libzmq one).
//
// Why not libzmq: the trawl binary would load libzmq and its ten shared
// libraries (sodium, pgm, norm, krb5, ...) on every start, ~0.6 ms that every
// short command (`trawl query` for one conversation takes a few ms) pays;
// and a SUB socket is a small part of ZMTP.
//
// Like libzmq's SUB, it connects lazily and reconnects (every 100 ms) when
// the publisher is absent or goes away; a message cut by a disconnect is
// dropped whole. Messages are filtered by the publisher (ZMTP subscriptions).
//
// Not thread-safe; blocks only inside receive(), for at most its timeout
// (plus name resolution on a reconnect).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "wire/tcp.h"

namespace trawl::live::zmtp {

class Subscriber {
 public:
  using Parts = std::vector<std::span<const uint8_t>>;

  // endpoint: "tcp://HOST:PORT" or "HOST:PORT". An endpoint that cannot be
  // parsed is an Error here; an unreachable one is retried in receive().
  static Result<std::unique_ptr<Subscriber>> create(std::string_view endpoint, std::vector<std::string> prefixes);
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  // Waits at most timeout_ms for one whole message. True: parts holds its
  // frames, pointing into this object (valid until the next call). False:
  // nothing arrived in time (or a signal interrupted the wait).
  bool receive(Parts& parts, int timeout_ms);

  bool connected() const { return ready_; }
  // Why the last connection attempt or connection ended ("" while none
  // failed), and how often that happened: for a "retrying" line.
  const std::string& last_error() const { return last_error_; }
  uint64_t failures() const { return failures_; }

  // Largest frame accepted; a bigger one is a broken peer (disconnect).
  static constexpr uint64_t kMaxFrame = 64u << 20;

 private:
  Subscriber(wire::HostPort where, std::string endpoint, std::vector<std::string> prefixes);
  void try_connect();
  void fail(std::string why);
  // Parses what is buffered; true when a whole message is in parts.
  bool parse(Parts& parts);
  bool on_command(std::span<const uint8_t> body);
  void flush_output();
  void send_rest_of_greeting();

  wire::HostPort where_;
  std::string endpoint_;
  std::vector<std::string> prefixes_;
  int fd_ = -1;
  bool greeted_ = false;
  bool ready_ = false;
  std::chrono::steady_clock::time_point next_attempt_{};
  std::vector<uint8_t> in_;
  size_t in_len_ = 0;      // bytes of in_ filled
  size_t consumed_ = 0;    // bytes of in_ parsed (whole frames)
  std::vector<std::pair<size_t, size_t>> pending_;  // frames of the message being read: offset, size
  std::vector<uint8_t> out_;
  std::vector<uint8_t> greeting_;  // ours: greeting + READY
  int greeting_step_ = 0;          // sent: 0 signature, 1 + major version, 2 + greeting, 3 + READY
  std::string last_error_;
  uint64_t failures_ = 0;
};

}  // namespace trawl::live::zmtp
