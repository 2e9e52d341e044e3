// OsmoListener: accepts osmo-pcap clients (osmo-pcap-client, unchanged) on
// --osmo-listen, so a trawl collector can take over an osmo-pcap server's
// deployment. A client is identified by its source IP address, which the
// configuration maps to an agent name (--osmo-client IP=NAME); unknown
// addresses are refused. Its messages (live/osmo_protocol.h) become
// batches with collector-assigned sequence numbers that go through the same
// Collector::accept_batch step as native agents' (dedupe, live, storage,
// metrics), in the same kind of segments. There is no acknowledgement in
// that protocol: what a client sent before a collector crash may be lost
// (docs/osmo-migration.md).
//
// An impossible message closes that connection only, with a log line naming
// the peer and the reason, and a count per reason.
//
// Threads: one accept thread, one thread per connection. start() returns
// once listening; stop() closes the listener and waits for the connections.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "core/result.h"

namespace trawl::collector {

class Collector;

class OsmoListener {
 public:
  explicit OsmoListener(Collector& c) : c_(c) {}
  ~OsmoListener() { stop(); }
  Status start();
  void stop();
  uint16_t port() const { return port_; }

 private:
  void accept_loop();
  void serve(int fd, std::string peer);

  Collector& c_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t sessions_ = 0;
};

}  // namespace trawl::collector
