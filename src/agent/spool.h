// Spool: the agent's bounded on-disk queue of sealed batches.
//
// The agent appends every sealed batch here before sending it and removes it
// only when the collector acknowledges it (cumulative: "every seq <= N is
// durable"). Entries are handed out oldest first; after a reconnect rewind()
// makes every unacknowledged entry unsent again. The spool survives kill -9
// of the agent: every append() that returned is on disk (in the page cache),
// and open() recovers it. See docs/spool.md for the byte layout, the recovery
// rules and the loss bound.
//
// On disk: a directory of append-only files named by the seq of their first
// record (00000000000000000123.spool), each a 40-byte file header holding a
// random per-file nonce, followed by records (48-byte header, CRC32C over
// nonce, header and payload, then the frame),
// plus a 128-byte "state" file holding spool_id, last_seq and the ack point in
// two alternating checksummed slots. Disk space is freed a whole file at a
// time, so both the ack path and drop-oldest eviction work on whole files.
//
// Reuse: a file freed because every record in it is acked is not deleted but
// kept (up to spare_files of them) as a spare, renamed 00000000000000000123.spare,
// and the next new spool file is that spare renamed back and overwritten in
// place, so in steady state rotation frees and allocates nothing (no page
// cache or block churn). A reused file is longer than what was written to it:
// the bytes after the last record are stale (older records, lower seqs) and
// recovery cuts them. Every file written from offset 0 gets a fresh nonce, so
// stale bytes, even a record planted in an old payload by captured traffic,
// fail the CRC unless they guess it (2^-32), after a process or a machine
// crash alike. Only the file being appended to has a stale tail: it is cut
// when the spool rotates away from the file and on a clean close.
// Drop-oldest eviction really deletes.
//
// Bounds: bytes() (every spool file's length up to its last record, headers
// included) never exceeds max_bytes after an append. When an entry does not
// fit, the policy decides: kDropNewest refuses it; kDropOldest deletes the
// oldest files that hold no in-flight entry until it fits (refusing it if
// even that is not enough). Every dropped entry's metadata comes back in
// AppendOutcome::dropped. disk_bytes() (bytes() plus the spares and the stale
// tail) never exceeds max_bytes either: spares are deleted, then the stale
// tail is cut, before a write would take it over.
//
// Ownership and threading: one thread owns a Spool (or the caller guards it);
// nothing is thread-safe. A spool directory is locked (flock) by the one Spool
// that has it open. All I/O is synchronous and blocks the calling thread:
// append() is one 64-byte pwrite of the state and one pwritev (plus a rename
// when a file starts from a spare; an fdatasync on rotation with
// fdatasync_on_rotate, or on every append with fsync_each_append),
// next_unsent() one pread, ack() one 64-byte pwrite plus a rename or unlink
// per freed file. Disk errors come back as Status/Result with the
// path in the message; they never crash the process.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/crc32c.h"
#include "core/result.h"

namespace trawl::agent {

enum class DropPolicy { kDropNewest, kDropOldest };

struct SpoolOptions {
  std::filesystem::path dir;          // created if missing
  uint64_t max_bytes = 256ull << 20;  // hard cap on the spool files' bytes (headers included)
  uint64_t file_bytes = 16ull << 20;  // target file size; clamped to max_bytes / 4
  DropPolicy policy = DropPolicy::kDropNewest;
  // fdatasync the record (and the state) on every append and ack, so a
  // machine crash loses nothing that was appended. Off by default (the
  // agent's --spool-fsync): kill -9 needs only write(2).
  bool fsync_each_append = false;
  // fdatasync a file when it is full and the next one starts, so a machine
  // crash can damage at most the newest file. Off: the agent appends on its
  // capture thread, where an fdatasync of a whole file stalls capture; it
  // has no flag for it. Without it a machine crash can damage any file the
  // kernel had not yet written back (docs/spool.md, "What can be lost").
  bool fdatasync_on_rotate = false;
  // Fully acked files kept for reuse instead of being deleted (0: delete
  // them, the behaviour before reuse). Each counts against max_bytes on disk.
  uint32_t spare_files = 2;
};

// What the agent knows about a batch without decoding it; comes back for
// every dropped entry so the loss can be recorded as a gap.
struct EntryMeta {
  uint64_t seq = 0;
  uint32_t packets = 0;
  uint64_t packet_bytes = 0;
  uint64_t first_ts_ns = 0;
  uint64_t last_ts_ns = 0;
  bool operator==(const EntryMeta&) const = default;
};

struct AppendOutcome {
  bool stored = false;
  // The refused new entry, or the evicted oldest ones (oldest first), plus
  // entries evicted by an earlier append() that then failed with an error.
  std::vector<EntryMeta> dropped;
};

// What open() found and repaired; for a log line and counters.
struct SpoolRecovery {
  uint64_t entries = 0;          // unacked entries recovered (all unsent)
  uint64_t acked_records = 0;    // records found at or below the ack point
  uint64_t truncated_bytes = 0;  // torn tails / garbage cut off, and removed files' bytes
  uint32_t truncated_files = 0;  // files that had a tail cut off
  uint32_t removed_files = 0;    // empty or headerless files deleted, fully acked files freed
  bool state_rebuilt = false;    // the state file was missing or unreadable
};

class Spool {
 public:
  static constexpr size_t kFileHeaderBytes = 40;
  static constexpr size_t kRecordHeaderBytes = 48;
  static constexpr size_t kStateSlotBytes = 64;

  // Opens or creates the spool in opts.dir. After a crash it scans every file,
  // keeps each complete record whose checksum matches, truncates a torn or
  // stale tail (anything after the first bad or out-of-order record of a
  // file), frees fully acked files, adopts leftover spares (deleting those
  // over the limit), and marks all recovered entries unsent. A new spool gets
  // a random non-zero 64-bit spool_id that is kept for its whole life.
  static Result<std::unique_ptr<Spool>> open(SpoolOptions opts);

  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  uint64_t spool_id() const { return spool_id_; }
  // Highest seq ever passed to append() (stored, refused or failed) or
  // acked; persisted before the record is written, so it survives restart
  // even when the spool is empty. The agent must start its next batch above it.
  uint64_t last_seq() const { return last_seq_; }
  // Cumulative ack point (every seq <= acked_seq() is durable at the collector).
  uint64_t acked_seq() const { return acked_seq_; }

  // Stores the frame, or drops by policy. meta.seq must be > last_seq()
  // (asserted). The seq is consumed whatever happens. On error the frame was
  // not stored: the caller counts it as lost.
  Result<AppendOutcome> append(const EntryMeta& meta, std::span<const uint8_t> frame);

  // Oldest entry not yet handed out since the last rewind(), now in flight.
  // The span points into a buffer owned by the spool and is valid until the
  // next call to any non-const method. std::nullopt: everything is handed out.
  Result<std::optional<std::pair<EntryMeta, std::span<const uint8_t>>>> next_unsent();

  // Cumulative ack; seqs at or below the current ack point are ignored. A
  // seq above last_seq() acks everything and raises last_seq() to it, so a
  // seq the collector already holds is never reused (call it with the
  // collector's durable seq on every connect). Persists the ack point, then
  // frees every file whose records are all acked.
  // The entry next_unsent() would hand out, without reading it.
  std::optional<EntryMeta> peek_unsent() const;
  // Hands out that entry without reading its bytes: for a caller that still
  // holds the frame in memory (the agent's recently-sealed batches).
  std::optional<EntryMeta> skip_unsent();

  Status ack(uint64_t seq);

  // After a reconnect: every unacked entry becomes unsent again, oldest first.
  void rewind() { in_flight_ = 0; }

  uint64_t bytes() const { return bytes_; }             // spool files' records and headers
  // What the directory really takes: bytes(), the spares, and the stale tail
  // of a reused file. Also never above max_bytes (state file not counted).
  uint64_t disk_bytes() const { return disk_bytes_; }
  uint64_t entries() const { return entries_.size(); }  // unacked (in flight or unsent)
  uint64_t unsent_entries() const { return entries_.size() - in_flight_; }
  std::optional<uint64_t> oldest_unacked_first_ts() const;
  uint64_t max_bytes() const { return opts_.max_bytes; }
  uint64_t file_bytes() const { return opts_.file_bytes; }  // after clamping
  const SpoolRecovery& recovery() const { return recovery_; }

 private:
  struct File {
    std::filesystem::path path;
    uint64_t size = 0;       // bytes written (header + complete records)
    uint64_t disk_size = 0;  // its length: size plus the stale tail of a reused file
    uint64_t last_seq = 0;   // seq of its newest record
    uint32_t crc_seed = 0;   // its record CRCs chain from this: 0 in version 1, from the nonce in 2
  };
  // A fully acked file kept for reuse, under a name open() does not read as
  // a spool file.
  struct Spare {
    std::filesystem::path path;
    uint64_t size = 0;
  };
  struct Entry {
    EntryMeta meta;
    uint64_t offset = 0;  // of the record header within its file
    uint32_t length = 0;  // payload bytes
  };

  explicit Spool(SpoolOptions opts);
  Status recover();
  Status recover_file(uint64_t first_seq, const std::filesystem::path& path, uint64_t& prev_seq);
  Status create_state();
  Status write_state();
  Status adopt_spares(const std::map<uint64_t, std::filesystem::path>& found);
  std::filesystem::path file_path(uint64_t first_seq) const;
  std::filesystem::path spare_path(uint64_t first_seq) const;
  std::map<uint64_t, File>::iterator file_of(uint64_t seq);
  void forget_file(std::map<uint64_t, File>::iterator it);
  Status remove_file(std::map<uint64_t, File>::iterator it);
  Status free_file(std::map<uint64_t, File>::iterator it);
  Status free_acked_files();
  Status remove_spare(size_t i);
  Status cut_stale_tail(File& f);
  Status write_record(const EntryMeta& meta, std::span<const uint8_t> frame);
  Status start_file(const EntryMeta& meta, std::span<const uint8_t> frame);
  void close_active();
  void drop_read_fd();

  SpoolOptions opts_;
  uint64_t spool_id_ = 0;
  uint64_t last_seq_ = 0;
  uint64_t acked_seq_ = 0;
  uint64_t state_generation_ = 0;
  uint64_t bytes_ = 0;
  uint64_t disk_bytes_ = 0;  // every File::disk_size and Spare::size

  std::map<uint64_t, File> files_;  // by first seq; the last one is appended to
  std::vector<Spare> spares_;       // oldest first; the newest is reused first
  std::deque<Entry> entries_;       // unacked, oldest first
  size_t in_flight_ = 0;            // entries_[0, in_flight_) are handed out

  int dir_fd_ = -1;  // holds the flock
  int state_fd_ = -1;
  // The file appends go to, the only one that may have a stale tail. Only a
  // file this Spool started is appended to: after open(), after it is freed
  // or evicted, or after a failed write the next append starts a new file.
  std::optional<uint64_t> active_key_;
  int active_fd_ = -1;
  int read_fd_ = -1;  // cached read fd of a closed file
  uint64_t read_key_ = 0;
  std::unique_ptr<uint8_t[]> read_buf_;  // header + payload of the last next_unsent()
  size_t read_cap_ = 0;
  std::vector<EntryMeta> carried_drops_;  // evicted by an append that then failed
  SpoolRecovery recovery_;
};

// The spool's record checksum: CRC32C (core/crc32c.h).
using trawl::crc32c;
namespace spool_detail {
using trawl::crc32c_detail::crc32c_table;
}  // namespace spool_detail

}  // namespace trawl::agent
