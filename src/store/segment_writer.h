// SegmentWriter: one agent's series of pcapng segments in <data>/<agent>/.
//
// The collector's per-agent owner feeds it whole batches:
//   begin_batch -> packet/stats/gap ... -> end_batch, then sync() (group
//   commit) before acking, and tick() about once a second.
// A batch is all-or-nothing on disk: its blocks are followed by a BATCH MARK
// record, and recovery cuts a segment back to its last BATCH MARK.
//
// Segments are written as "<name>.part" and renamed to
// "<agent>-<UTC start>.pcapng[.zst]" when sealed (SEAL record, fdatasync,
// rename, directory fsync); sealed files are never written again.
//
// Compression (zstd_level != 0): the pcapng byte stream is compressed into
// independent zstd frames of about block_bytes of input each, ended only at
// batch boundaries, so the file is a valid .pcapng.zst and every frame
// decodes alone. sync() flushes the open frame (ZSTD_e_flush: everything so
// far becomes decodable, the frame stays open) before fdatasync.
//
// Index: every completed block (frame, or ~block_bytes of a plain segment)
// gets an entry (offsets, time range, packet count, CRC32C, flows) that
// sync() appends to "<segment>.idx.part"; at seal the journal is rewritten
// in the sealed layout as "<segment>.idx" just before the segment is renamed. A segment is
// sealed when it reaches rotate_bytes (at the next batch boundary, so one
// batch may overshoot) or when a wall-clock-aligned boundary passes (checked
// in begin_batch and tick). Segments are opened lazily by the first batch.
//
// Errors: on any I/O failure the writer rolls back to the last durable point
// (the last successful sync() or seal): the open file is truncated there,
// batches appended since are forgotten and last_seq() goes back. The error
// comes back as a Status with context ("writing segment edge1-...part: No
// space left on device"), write_errors is counted, and the writer stays
// usable: the caller stops acking and has the agent re-send everything after
// last_seq(). If even the truncation fails, the file is left for the same
// recovery as after a crash, which runs before the next batch.
//
// Destroying the writer without close() is treated like a crash: buffered
// bytes are dropped and the .part is recovered by the next open().
//
// Not thread-safe: one thread at a time. Calls block on disk I/O (write,
// fdatasync, rename); packet()/stats()/gap() only append to memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/packet.h"
#include "core/result.h"
#include "store/segment_index.h"

struct ZSTD_CCtx_s;
typedef struct ZSTD_CCtx_s ZSTD_CCtx;

namespace trawl::store {

struct SegmentOptions {
  std::filesystem::path dir;           // <data>/<agent>; created if missing
  std::string agent;                   // agent name (from its certificate)
  std::string agent_host;              // host name the agent reported
  uint64_t rotate_bytes = 1ull << 30;  // seal when the file reaches this size
  uint64_t rotate_every_ns = 300ull * 1'000'000'000;  // wall-clock aligned; 0 = never
  size_t write_buffer_bytes = 1 << 20;
  // false: sync() writes the buffer and sets the rollback point without
  // fdatasync (not crash-safe; for "ack after write" setups). Sealing still
  // fsyncs.
  bool fsync = true;
  // 0: plain pcapng segments (".pcapng"); otherwise the zstd level
  // (".pcapng.zst"): 1..22, or negative for zstd's fast levels.
  int zstd_level = 0;
  // Uncompressed bytes per zstd frame / index block (ended at the first
  // batch boundary past it).
  size_t block_bytes = 1u << 20;
  // Compressed segments: frames that end before the seal end on a multiple
  // of this file offset (padding inside the frame), so that Wireshark 4.0,
  // which reads .zst files in chunks of this size and mishandles frames
  // that end inside a chunk they did not start in, reads the whole file.
  // 0: no padding.
  size_t align_bytes = 131075;
  // Write the sidecar index (journal while open, .idx when sealed).
  bool index = true;
  // Called (on the writer's thread) after a segment has been sealed and
  // renamed to its final name. Must not call back into the writer.
  std::function<void(const std::filesystem::path& sealed)> on_sealed;
};

// Cumulative since open(). packets/bytes count stored packets and their
// captured bytes; they go back with a rollback, because those packets will
// be re-sent and stored again.
struct SegmentCounters {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t segments_sealed = 0;
  uint64_t write_errors = 0;
};

class SegmentWriter {
 public:
  // Opens (creates) the agent's directory and recovers what a crash left:
  // every "*.part" is cut back to its last complete batch and sealed (or
  // removed if it holds no complete batch). spool_id()/last_seq() come from
  // the newest segment (its trailing SEAL record, else a forward scan).
  static Result<std::unique_ptr<SegmentWriter>> open(SegmentOptions opts, const Clock& clock);

  SegmentWriter(const SegmentWriter&) = delete;
  SegmentWriter& operator=(const SegmentWriter&) = delete;
  ~SegmentWriter();

  // Of the last appended batch (durable after sync()); 0 when there is none.
  uint64_t spool_id() const { return cur_.spool_id; }
  uint64_t last_seq() const { return cur_.last_seq; }

  // Starts a batch: may seal the open segment first (size or time), opens a
  // segment (SHB) if none is open, and writes an IDB for every interface
  // (name + link type + snaplen) this segment does not have yet. On error the
  // batch is not started.
  Status begin_batch(uint64_t spool_id, uint64_t seq, std::span<const InterfaceInfo> ifaces);
  // p.iface / s.iface / g.iface index the ifaces given to begin_batch
  // (g.iface 0xffff: all interfaces). Appends to memory only.
  void packet(const PacketView& p);
  void stats(const InterfaceStats& s);
  // GAP record (with an opt_comment), and the same text as a packet comment
  // on the next stored packet of this segment, where tshark/Wireshark show it.
  void gap(const Gap& g);
  // BATCH MARK; writes the buffer out if it is over half full.
  Status end_batch();
  // Drops the batch in progress (nothing of it reaches the file).
  void abort_batch();

  // Writes the buffer and fdatasyncs: everything up to the last end_batch is
  // then durable and is never rolled back. Not within a batch. Callers that
  // ack without fsync (SegmentOptions::fsync = false) must still call it
  // before acking, so that acked batches are never rolled back.
  Status sync();
  // Seals the open segment if its time boundary has passed, or if it reached
  // rotate_bytes. Call about once a second, also when idle. Not within a batch.
  Status tick();
  // Seals the open segment (an unfinished batch is dropped).
  Status close();

  const SegmentCounters& counters() const { return counters_; }
  std::optional<std::filesystem::path> open_segment_path() const;

 private:
  // What a rollback restores. cur_ holds the live values of the first six
  // fields; the rest live in raw_bytes_ + buf_, file_bytes_, idbs_,
  // counters_, pending_comment_ and the block being indexed.
  struct State {
    uint64_t spool_id = 0;
    uint64_t last_seq = 0;
    uint64_t batches = 0;       // complete batches in the open segment
    uint64_t seg_packets = 0;   // packets in the open segment
    uint64_t first_ts = UINT64_MAX;
    uint64_t last_ts = 0;
    uint64_t size = 0;          // logical (uncompressed) size of the open segment
    uint64_t file = 0;          // bytes in the file (durable_: the truncation point)
    uint64_t blocks_done = 0;   // blocks completed in the open segment
    uint64_t blk_file = 0;      // file offset where the open block starts
    uint64_t blk_raw = 0;       // its uncompressed offset
    size_t blk_first_idb = 0;   // idbs_ index of the first IDB in the open block
    uint32_t blk_crc = 0;
    BlockIndexer::Mark blk_mark;
    size_t idbs = 0;            // IDBs written to the open segment
    uint64_t packets = 0;       // counters_.packets
    uint64_t bytes = 0;         // counters_.bytes
    std::vector<uint8_t> pending_comment;
  };

  SegmentWriter(SegmentOptions opts, const Clock& clock);

  Status recover_directory();
  Status recover_part(const std::filesystem::path& part);
  Status settle();          // finishes an earlier rollback or rename that failed
  Status open_segment();
  Status finish_segment();  // seal, or discard if it holds no complete batch
  Status seal_segment();
  void discard_segment();
  enum class FlushMode { kContinue, kFlush, kEnd };
  Status flush(FlushMode mode = FlushMode::kContinue);
  Status write_out(std::span<const uint8_t> bytes);
  void finish_block();          // index entry for the block just ended
  Status close_open_frame();    // after a rollback truncation (compressed)
  void write_journal();         // pending index entries -> .idx.part
  void publish_index();         // END record, rename .idx.part -> .idx
  void drop_journal();
  std::filesystem::path journal_path() const;
  Error fail(Error e);      // rolls back to durable_, returns e
  void capture(State& s) const;
  void restore(const State& s);
  bool rotation_due() const;
  std::string segment_label() const;

  SegmentOptions opts_;
  const Clock& clock_;

  // Open segment.
  int fd_ = -1;
  std::filesystem::path part_path_;
  std::filesystem::path final_path_;
  uint64_t start_ns_ = 0;
  uint64_t boundary_ns_ = UINT64_MAX;
  uint64_t file_bytes_ = 0;       // written to fd_
  bool dir_synced_ = false;       // the .part's directory entry is durable
  std::vector<InterfaceInfo> idbs_;
  std::vector<uint8_t> buf_;      // encoded, not yet written
  std::vector<uint8_t> pending_comment_;  // opt_comment options for the next EPB
  uint64_t raw_bytes_ = 0;        // uncompressed bytes consumed (written or compressed)
  bool compressed_ = false;
  ZSTD_CCtx* cctx_ = nullptr;
  std::vector<uint8_t> zbuf_;     // compressor output
  uint32_t blk_crc_ = 0;          // CRC32C of the open block's stored bytes so far
  uint64_t blocks_done_ = 0;
  size_t blk_first_idb_ = 0;
  BlockIndexer indexer_;
  std::vector<IndexBlock> pending_idx_;  // completed, not yet in the journal
  int idx_fd_ = -1;
  uint64_t idx_bytes_ = 0;
  bool idx_failed_ = false;       // journal unusable for this segment
  uint64_t idx_blocks_ = 0;       // entries in the journal
  bool frame_has_input_ = false;  // the open zstd frame has been fed bytes

  // Batch in progress.
  bool in_batch_ = false;
  uint64_t batch_spool_id_ = 0;
  uint64_t batch_seq_ = 0;
  std::vector<uint32_t> batch_map_;  // batch iface index -> IDB index
  State batch_start_;

  State cur_;
  State durable_;
  uint64_t last_start_ns_ = 0;    // newest segment name so far (names only grow)
  bool truncate_pending_ = false; // rollback could not truncate the file yet
  bool needs_recovery_ = false;   // a sealed .part could not be renamed yet
  SegmentCounters counters_;
};

}  // namespace trawl::store
