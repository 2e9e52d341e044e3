// FanoutServer: a TCP listener whose own thread streams live items to every
// connected client, each through a bounded output queue. It is the common
// part of the ZeroMQ publisher (zmq_publisher.h) and the PCAP-over-IP
// server (pcap_server.h), which say how an item becomes bytes per client.
//
// Why it cannot slow storage: offer() only pushes a shared pointer into a
// bounded ItemQueue (a full queue drops the batch for this sink, counted);
// the server thread formats into each client's queue, and a client whose
// queue is full loses that message (counted per client) while the others
// go on. Sockets are nonblocking; the thread never waits on one client.
//
// Threads: offer() and stats() from any thread; everything else runs on
// the server's thread. start() returns once listening; stop() delivers what
// was offered before it (for at most a second), then closes and joins.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
#include "live/live_item.h"
#include "live/out_queue.h"
#include "wire/tcp.h"

namespace trawl::live {

struct SubscriberStats {
  uint64_t id = 0;
  std::string peer;
  uint64_t sent_packets = 0;
  uint64_t dropped_packets = 0;  // packet messages lost to a full queue
  uint64_t dropped_events = 0;
  uint64_t queued_bytes = 0;
};

struct SinkStats {
  std::string sink;               // "zmq", "pcap-over-ip:PORT"
  uint64_t dropped_batches = 0;   // the sink's input queue was full
  uint64_t sent_packets = 0;      // all clients, including gone ones
  uint64_t dropped_packets = 0;   // all clients, including gone ones
  uint64_t skipped_packets = 0;   // not deliverable in this sink's format
  std::vector<SubscriberStats> subscribers;  // connected now
};

class FanoutServer {
 public:
  // Each client may hold up to client_queue_bytes: the count is bounded too.
  static constexpr size_t kMaxClients = 64;

  FanoutServer(std::string sink_name, size_t client_queue_bytes, size_t input_items, size_t input_bytes);
  virtual ~FanoutServer();
  FanoutServer(const FanoutServer&) = delete;
  FanoutServer& operator=(const FanoutServer&) = delete;

  // How much lower than the collector's its thread runs (nice increment,
  // 0..19): under CPU contention storage wins and subscribers see counted
  // drops. Call before start().
  void set_nice(int increment) { nice_ = increment; }
  Status start(const wire::HostPort& where);
  void stop();
  uint16_t port() const { return port_; }
  const std::string& sink_name() const { return sink_; }

  // Never blocks.
  void offer(const LiveItemPtr& item);
  // Connected clients now (a batch offered to none is not worth copying).
  size_t client_count() const { return client_count_.load(std::memory_order_relaxed); }
  SinkStats stats() const;

 protected:
  struct Client {
    virtual ~Client() = default;
    int fd = -1;
    uint64_t id = 0;
    std::string peer;
    OutQueue out;
    bool dead = false;
    bool write_blocked = false;  // the last send() would have blocked (reset per item)
    std::atomic<uint64_t> sent_packets{0};
    std::atomic<uint64_t> dropped_packets{0};
    std::atomic<uint64_t> dropped_events{0};
    std::atomic<uint64_t> queued{0};
  };

  // A new client: the subclass may queue opening bytes (greeting, file header).
  virtual std::unique_ptr<Client> make_client() = 0;
  // Bytes the client sent. An Error closes the client (logged with the reason).
  virtual Status on_input(Client& c, std::span<const uint8_t> bytes) = 0;
  // Formats one item into the clients' queues (use fits()).
  virtual void on_item(const LiveItem& item, const std::vector<Client*>& clients) = 0;

  // Whether n more bytes fit in c's queue; compacts the queue when useful.
  bool fits(Client& c, size_t n);
  void count_skipped(uint64_t n) { skipped_.fetch_add(n, std::memory_order_relaxed); }

 private:
  void loop();
  void accept_clients();
  void read_client(Client& c);
  void write_client(Client& c);
  void retire(Client& c, const std::string& why);
  void flush_at_stop();

  std::string sink_;
  size_t client_queue_bytes_;
  int nice_ = 0;
  ItemQueue input_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  uint64_t next_id_ = 1;

  mutable std::mutex clients_mu_;  // guards clients_ (the loop's writes, stats() reads)
  std::vector<std::unique_ptr<Client>> clients_;
  std::atomic<size_t> client_count_{0};
  std::atomic<uint64_t> dropped_batches_{0};
  std::atomic<uint64_t> gone_sent_{0};
  std::atomic<uint64_t> gone_dropped_{0};
  std::atomic<uint64_t> skipped_{0};
};

}  // namespace trawl::live
