// The per-segment sidecar index ("<segment>.idx", docs/storage.md "Index
// format"): for each block of a segment (one zstd frame, or ~block_bytes of a
// plain segment, always ending at a batch boundary) its place in the file,
// its time range, packet count, a CRC32C of its stored bytes, the interfaces
// it introduces and the flows seen in it.
//
// The file is a header and a sequence of self-checking records (type,
// length, payload, CRC32C). While a segment is open, the writer appends one
// BLOCK record per completed block to "<segment>.idx.part" (a journal, read
// by queries for freshness; flow tables inline); at seal it writes the
// sealed layout (heads, END, then the flow tables, so that a query touches
// few pages) as "<segment>.idx" and drops the journal. A reader accepts a
// journal that ends inside a record (it stops there); a sealed index must
// have END.
//
// BlockIndexer accumulates one block's entry as packets arrive (the writer's
// hot path: a flow extraction and a hash-set insert per packet, no
// allocation). rebuild_index() recomputes an index from a segment's bytes.
// Decoding never throws; all reads are bounds-checked. Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/flow.h"

namespace trawl::store {

struct IndexInterface {
  uint16_t link_type = 0;
  uint32_t snaplen = 0;
  std::string name;
  bool operator==(const IndexInterface&) const = default;
};

// A block's flows folded into a fixed-size summary that a query checks
// before it reads the flow list: which kinds / L4 protocols occur, and Bloom
// filters (k = 3) of the addresses and of the ports. Built from the flows;
// never says "absent" for something a flow has.
struct FlowSummary {
  static constexpr size_t kBloomBytes = 1024;
  static constexpr uint32_t kHasUnknown = 1;   // a flow that was not parsed
  static constexpr uint32_t kHasInexact = 2;   // a fragment (ports unknown)
  static constexpr uint32_t kHasArpNoAddr = 4; // ARP without addresses
  uint32_t kinds = 0;    // bit FlowKey::kind
  uint32_t flags = 0;
  std::array<uint8_t, 32> protos{};  // bitmap of L4 protocol numbers
  std::array<uint8_t, kBloomBytes> addrs{};
  std::array<uint8_t, kBloomBytes> ports{};
  void add(const FlowKey& f);
  bool may_have_addr(uint8_t family, const std::array<uint8_t, 16>& a) const;
  bool may_have_port(uint16_t p) const;
  bool has_proto(uint8_t p) const { return protos[p / 8] & (1u << (p % 8)); }
  bool operator==(const FlowSummary&) const = default;
};

struct IndexBlock {
  static constexpr uint32_t kAllFlows = 1;  // flow list incomplete: may match anything
  static constexpr uint32_t kDamaged = 2;   // (rebuilt index) block could not be decoded

  uint64_t file_offset = 0;
  uint64_t file_size = 0;   // stored (compressed) bytes
  uint64_t raw_offset = 0;  // offset in the uncompressed pcapng stream
  uint64_t raw_size = 0;
  uint64_t first_ts = 0;    // ns; 0 / 0 when the block has no packet
  uint64_t last_ts = 0;
  uint32_t packets = 0;
  uint32_t data_crc = 0;    // CRC32C of the stored bytes [file_offset, +file_size)
  uint32_t flags = 0;
  std::vector<IndexInterface> new_interfaces;  // IDBs in this block, in order
  FlowSummary summary;
  // The flows: built by the writer in `flows`; read from a file they stay
  // encoded in `flow_bytes` (46 bytes each, inside the index's mapping)
  // and are decoded on demand by for_each_flow().
  std::vector<FlowKey> flows;
  std::span<const uint8_t> flow_bytes;
  uint32_t flow_count = 0;
  uint32_t flow_crc = 0;
  // Calls f(flow) for every flow; false if the encoded flow table fails its
  // checksum (the caller must then assume anything).
  template <class F>
  bool for_each_flow(F&& f) const;
  std::vector<FlowKey> decoded_flows() const;
  bool operator==(const IndexBlock& o) const;
};

struct SegmentIndex {
  bool compressed = false;
  uint32_t block_bytes = 0;      // the writer's target block size
  std::vector<IndexBlock> blocks;
  std::shared_ptr<const void> backing;  // keeps flow_bytes' mapping alive
  bool complete = false;         // END record present (sealed segment)
  uint64_t segment_size = 0;     // from END
  uint64_t packets = 0;          // sum over blocks
  uint64_t covered_end() const {
    return blocks.empty() ? 0 : blocks.back().file_offset + blocks.back().file_size;
  }
};

constexpr uint16_t kIndexVersion = 1;
constexpr size_t kIndexHeaderBytes = 32;

void encode_index_header(std::vector<uint8_t>& out, bool compressed, uint32_t block_bytes);
// flow_table_offset 0: the flow table follows the record's head (journal);
// else the file offset where the caller puts it (sealed layout).
void encode_index_block(std::vector<uint8_t>& out, const IndexBlock& b, uint64_t flow_table_offset = 0);
void encode_index_end(std::vector<uint8_t>& out, uint64_t segment_size, uint64_t blocks,
                      uint64_t packets);

// journal = true: a truncated last record ends the index (the writer may be
// appending it); false: the index must be whole and end with END.
Result<SegmentIndex> decode_index(std::span<const uint8_t> bytes, bool journal);
Result<SegmentIndex> read_index_file(const std::filesystem::path& path, bool journal);
// The sealed layout: header, BLOCK heads (flow tables out of line), END,
// then the flow tables.
std::vector<uint8_t> encode_sealed_index(const SegmentIndex& idx, uint64_t segment_size);
// Writes encode_sealed_index() to "<path>.tmp" (no fsync), renames to path.
Status write_index_file(const std::filesystem::path& path, const SegmentIndex& idx,
                        uint64_t segment_size);

// One block's entry, built packet by packet.
class BlockIndexer {
 public:
  explicit BlockIndexer(size_t max_flows = 4096) : flows_(max_flows) {}
  void start(uint64_t file_offset, uint64_t raw_offset);
  void interface(const IndexInterface& iface) { block_.new_interfaces.push_back(iface); }
  void packet(uint16_t link_type, uint64_t ts_ns, std::span<const uint8_t> frame) {
    if (block_.packets == 0 || ts_ns < block_.first_ts) block_.first_ts = ts_ns;
    if (block_.packets == 0 || ts_ns > block_.last_ts) block_.last_ts = ts_ns;
    ++block_.packets;
    // Keys are built in place and added a few packets late: reading a key
    // with wide loads (a copy, FlowSet::add's compare) right after the
    // narrow stores that built it cannot be forwarded from the store buffer
    // and waits for it to drain behind the packet copies (a tenth of the
    // store path at 4 M packets/s).
    extract_flow(link_type, frame, pending_[pending_n_++]);
    if (pending_n_ == kPendingFlows) add_pending_flows();
  }
  void mark_all_flows() { block_.flags |= IndexBlock::kAllFlows; }
  uint32_t packets() const { return block_.packets; }
  uint64_t file_offset() const { return block_.file_offset; }
  uint64_t raw_offset() const { return block_.raw_offset; }
  // Completes the entry; the indexer must be start()ed again.
  IndexBlock finish(uint64_t file_end, uint64_t raw_end, uint32_t data_crc);
  // Rolls back packet count / time range (flows stay: a superset is safe).
  struct Mark {
    uint32_t packets = 0;
    uint64_t first_ts = 0, last_ts = 0;
    size_t interfaces = 0;
  };
  Mark mark() const {
    return {block_.packets, block_.first_ts, block_.last_ts, block_.new_interfaces.size()};
  }
  void restore(const Mark& m) {
    block_.packets = m.packets;
    block_.first_ts = m.first_ts;
    block_.last_ts = m.last_ts;
    block_.new_interfaces.resize(std::min(block_.new_interfaces.size(), m.interfaces));
  }

 private:
  void add_pending_flows() {
    for (size_t i = 0; i < pending_n_; ++i) flows_.add(pending_[i]);
    pending_n_ = 0;
  }

  static constexpr size_t kPendingFlows = 16;
  IndexBlock block_;
  FlowSet flows_;
  std::array<FlowKey, kPendingFlows> pending_{};
  size_t pending_n_ = 0;
};

FlowKey decode_flow(std::span<const uint8_t, 46> b);
uint32_t flow_table_crc(std::span<const uint8_t> bytes);

template <class F>
bool IndexBlock::for_each_flow(F&& f) const {
  if (!flows.empty()) {
    for (const auto& k : flows) f(k);
    return true;
  }
  if (flow_bytes.size() != uint64_t{flow_count} * 46 || flow_table_crc(flow_bytes) != flow_crc) return false;
  for (size_t i = 0; i < flow_count; ++i) f(decode_flow(flow_bytes.subspan(i * 46).first<46>()));
  return true;
}

// Decodes the stored bytes of one block to its pcapng bytes (zstd frame ->
// bytes; plain segments: a copy). Checks data_crc first ("damaged" errors
// name the offset). max_raw caps the output.
Result<std::vector<uint8_t>> decode_block_bytes(std::span<const uint8_t> segment, bool compressed,
                                                const IndexBlock& b);

// Rebuilds an index from a segment's bytes. Complete blocks only: for a
// compressed segment every complete zstd frame is a block; for a plain one
// blocks are cut at batch marks every ~block_bytes. Undecodable frames
// become kDamaged blocks (the scan resumes at the next frame magic). The
// bytes past covered_end() are an unfinished tail (open segment) or damage.
SegmentIndex rebuild_index(std::span<const uint8_t> segment, bool compressed,
                           uint32_t block_bytes = 2u << 20);

// Decodes the bytes from `offset` to the end of the segment as far as they
// go (open segment: complete frames after the journal, then the flushed
// part of the unfinished frame). Never fails; returns what decoded.
std::vector<uint8_t> decode_tail(std::span<const uint8_t> segment, bool compressed,
                                 uint64_t offset);

}  // namespace trawl::store
