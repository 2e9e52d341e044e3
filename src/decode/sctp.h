// SCTP (RFC 9260) chunk handling: parse_sctp_chunks() is the pure parse
// function (common header already stripped by decap); SctpAssembler turns
// DATA chunks into StreamSegments per association, joining fragmented user
// messages (B/E bits) per stream and direction, bounded in memory.
//
// I-DATA (RFC 8260) chunks are counted ("sctp.idata_unsupported"), not
// decoded. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "decode/anomalies.h"
#include "decode/decap.h"
#include "decode/stream.h"

namespace trawl::decode {

struct SctpDataChunk {
  uint8_t flags = 0;  // U 0x04, B 0x02, E 0x01
  uint32_t tsn = 0;
  uint16_t stream_id = 0;
  uint16_t ssn = 0;
  uint32_t ppid = 0;
  std::span<const uint8_t> data;
};

// Calls on_data for every DATA chunk of an SCTP packet's chunk area.
// Returns false (and counts an anomaly) if the chunk area is malformed;
// chunks before the bad one have been reported.
bool parse_sctp_chunks(std::span<const uint8_t> chunks, Anomalies& anomalies,
                       const std::function<void(const SctpDataChunk&)>& on_data);

class SctpAssembler {
 public:
  // wants(sport, dport, ppid): whether any decoder takes this chunk.
  using Wants = std::function<bool(uint16_t, uint16_t, uint32_t)>;
  SctpAssembler(StreamHandler& out, Wants wants) : out_(out), wants_(std::move(wants)) {}

  void add(const L4Packet& p);
  void finish();
  const Anomalies& anomalies() const { return anomalies_; }
  void set_id_source(uint64_t* next_id) { next_id_ = next_id; }

 private:
  struct Assoc {
    uint64_t id = 0;
    std::string a, b;
    std::map<std::pair<int, uint16_t>, std::vector<uint8_t>> partial;  // (dir, stream) -> bytes
  };
  using Key = std::tuple<IpAddr, uint16_t, IpAddr, uint16_t>;
  StreamHandler& out_;
  Wants wants_;
  Anomalies anomalies_;
  std::map<Key, Assoc> assocs_;
  uint64_t own_next_id_ = 1;
  uint64_t* next_id_ = &own_next_id_;
};

}  // namespace trawl::decode
