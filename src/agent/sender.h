// Sender: the agent's connection loop. Connects (failing over between
// collector addresses, capped exponential backoff with jitter), says HELLO,
// learns the collector's durable seq from WELCOME, then streams every
// unacknowledged spool entry oldest first and frees entries as ACKs arrive.
// Runs on its own thread; shares the spool with the capture thread through
// SharedSpool's mutex (held per batch, never per packet).
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/spool.h"
#include "core/clock.h"
#include "wire/tls.h"

namespace trawl::agent {

// Everything the capture thread and the sender share. Every member is
// guarded by `mu` (taken once per batch, never per packet).
struct SharedSpool {
  std::mutex mu;
  std::unique_ptr<Spool> spool;
  int wake_fd = -1;  // eventfd: the capture thread signals a new entry

  // Recently spooled frames still in memory, oldest first: the sender sends
  // these without reading them back from disk. Bounded; older ones are
  // simply read from the spool when their turn comes.
  std::deque<std::pair<uint64_t, std::vector<uint8_t>>> recent;
  size_t recent_bytes = 0;
  static constexpr size_t kMaxRecentBytes = 32u << 20;
  // Frame buffers for reuse, so the steady state allocates nothing.
  std::vector<std::vector<uint8_t>> free_buffers;
  static constexpr size_t kMaxFreeBuffers = 32;

  std::vector<uint8_t> take_buffer();
  void give_buffer(std::vector<uint8_t>&& b);
  void push_recent(uint64_t seq, std::vector<uint8_t>&& frame);
  void notify();
};

class Sender {
 public:
  Sender(const AgentOptions& opts, std::shared_ptr<wire::TlsContext> tls, SharedSpool& spool,
         AgentCounters& counters, const Clock& clock);
  // Returns when stop is set.
  void run(std::atomic<bool>& stop);

 private:
  // One connection's lifetime; returns why it ended.
  Status session(const std::string& address, std::atomic<bool>& stop);

  const AgentOptions& opts_;
  std::shared_ptr<wire::TlsContext> tls_;
  SharedSpool& spool_;
  AgentCounters& counters_;
  const Clock& clock_;
  std::string hostname_;
};

}  // namespace trawl::agent
