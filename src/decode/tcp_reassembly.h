// TCP stream reassembly: per connection and direction, in-order byte
// delivery to a StreamHandler, with bounded out-of-order buffering.
//
// Retransmitted bytes are delivered once; segments ahead of the next
// expected sequence number wait (up to max_buffered_bytes per direction);
// when the buffer is full, or at finish(), the hole is reported with
// on_stream_gap() and delivery resumes at the earliest buffered segment.
// A connection closes (on_stream_close) after FIN in both directions, RST,
// or finish(). At most max_connections are tracked; beyond that the least
// recently active connection is closed (counted "tcp.connections_evicted").
// Not thread-safe; no allocation per in-order segment.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "decode/anomalies.h"
#include "decode/decap.h"
#include "decode/stream.h"

namespace trawl::decode {

class TcpReassembler {
 public:
  struct Options {
    size_t max_buffered_bytes = 1u << 20;
    size_t max_connections = 100000;
  };
  TcpReassembler(StreamHandler& out, Options opt) : out_(out), opt_(opt) {}
  explicit TcpReassembler(StreamHandler& out) : TcpReassembler(out, Options{}) {}

  // Feeds one TCP segment (p.proto == kProtoTcp).
  void add(const L4Packet& p);
  // Flushes buffered data (reporting gaps) and closes every connection.
  void finish();
  const Anomalies& anomalies() const { return anomalies_; }
  // Next conn_id this reassembler will hand out (shared id space with SCTP).
  void set_id_source(uint64_t* next_id) { next_id_ = next_id; }

 private:
  struct Dir {
    bool started = false;
    bool fin = false;
    uint32_t next_seq = 0;
    size_t buffered = 0;
    std::map<uint32_t, std::vector<uint8_t>> ooo;  // keyed by sequence number (relative)
    uint32_t base = 0;                             // ISN-ish origin for relative keys
  };
  struct Conn {
    uint64_t id = 0;
    std::string a, b;  // "ip:port" of side A and side B
    Dir dir[2];        // 0: A->B, 1: B->A
    uint64_t last_ts = 0;
  };
  struct Key {
    IpAddr a, b;
    uint16_t pa, pb;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };

  void deliver(Conn& c, int d, uint64_t ts, std::span<const uint8_t> data);
  void drain(Conn& c, int d, uint64_t ts);
  void flush_gap(Conn& c, int d, uint64_t ts);
  void close(std::unordered_map<Key, Conn, KeyHash>::iterator it);

  StreamHandler& out_;
  Options opt_;
  Anomalies anomalies_;
  std::unordered_map<Key, Conn, KeyHash> conns_;
  uint64_t own_next_id_ = 1;
  uint64_t* next_id_ = &own_next_id_;
};

}  // namespace trawl::decode
