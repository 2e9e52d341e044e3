// Spool: append-only files of checksummed records, a two-slot state file,
// whole-file freeing, freed files reused in place. Layout and rules:
// docs/spool.md.
//
// The three paths, in order of how often they run:
//   append:      1 write the state (last_seq) → 2 plan room (refuse or pick
//                victim files) → 3 unlink victims → 4 rotate if the active
//                file is full (cutting its stale tail) → 5 disk room (delete
//                spares, cut the stale tail) → 6 start a file (from a spare
//                or anew, with a fresh nonce) if needed → 7 one pwritev of
//                header + frame.
//   next_unsent: find the entry's file → one pread of header + payload into a
//                reusable buffer → check the header → hand out.
//   ack:         write the state (ack point) → forget acked entries → rename
//                every file whose newest record is acked to a spare (or
//                unlink it when there are enough spares).
#include "agent/spool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string_view>
#include <system_error>

#include "core/bytes.h"
#include "core/crc32c.h"

namespace trawl::agent {


// Broken invariants are bugs: crash loudly, in release builds too.
#define SPOOL_CHECK(cond)                                                                     \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "%s:%d: spool invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

// ---------------------------------------------------------- on-disk layout ---

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kFileMagic = "TRWLSPL1";   // 8 bytes
constexpr std::string_view kStateMagic = "TRWLSTA1";  // 8 bytes
constexpr uint32_t kRecordMagic = 0x52575254;         // "TRWR" little-endian
// Spool file versions: 1, record CRCs over the record alone (read only);
// 2, record CRCs seeded by the nonce in the file header (written).
constexpr uint32_t kFileVersionUnseeded = 1;
constexpr uint32_t kFileVersion = 2;
constexpr uint32_t kStateVersion = 1;
constexpr std::string_view kStateName = "state";
constexpr std::string_view kStateTmpName = "state.tmp";
constexpr std::string_view kFileSuffix = ".spool";
constexpr std::string_view kSpareSuffix = ".spare";
constexpr size_t kSeqDigits = 20;
constexpr size_t kH = Spool::kFileHeaderBytes;
constexpr size_t kR = Spool::kRecordHeaderBytes;
constexpr size_t kSlot = Spool::kStateSlotBytes;

void put_le(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

std::span<const uint8_t> span_of(const uint8_t* p, size_t n) { return {p, n}; }

// A version 2 record's CRC32C is that of the file's nonce (4 bytes,
// little-endian) followed by the record: the CRC of the nonce alone is where
// the record's CRC starts (crc32c chains). Version 1 records start from 0.
uint32_t record_crc_seed(uint32_t nonce) {
  std::array<uint8_t, 4> b{};
  put_le(b.data(), nonce, 4);
  return crc32c(b);
}

// File header: magic[8] version u32, flags u32, spool_id u64, first_seq u64,
// nonce u32 (version 2; reserved in version 1), crc32c(bytes 0..36) u32.
std::array<uint8_t, kH> encode_file_header(uint64_t spool_id, uint64_t first_seq, uint32_t nonce) {
  std::array<uint8_t, kH> h{};
  std::memcpy(h.data(), kFileMagic.data(), 8);
  put_le(h.data() + 8, kFileVersion, 4);
  put_le(h.data() + 16, spool_id, 8);
  put_le(h.data() + 24, first_seq, 8);
  put_le(h.data() + 32, nonce, 4);
  put_le(h.data() + 36, crc32c(span_of(h.data(), 36)), 4);
  return h;
}

struct FileHeader {
  uint64_t spool_id;
  uint64_t first_seq;
  uint32_t crc_seed;  // of its records' CRCs
};

std::optional<FileHeader> decode_file_header(std::span<const uint8_t> b) {
  ByteReader r(b);
  auto magic = r.str(8);
  uint32_t version = r.u32le();
  r.skip(4);
  uint64_t spool_id = r.u64le();
  uint64_t first_seq = r.u64le();
  uint32_t nonce = r.u32le();
  uint32_t crc = r.u32le();
  if (!r.ok() || magic != kFileMagic) return std::nullopt;
  if (version != kFileVersion && version != kFileVersionUnseeded) return std::nullopt;
  if (crc != crc32c(b.first(36))) return std::nullopt;
  return FileHeader{spool_id, first_seq, version == kFileVersion ? record_crc_seed(nonce) : 0};
}

// Record header: magic u32, payload_len u32, seq u64, packet_bytes u64,
// first_ts_ns u64, last_ts_ns u64, packets u32, crc32c(bytes 0..44 ++
// payload) u32, chained from the file's crc_seed.
std::array<uint8_t, kR> encode_record_header(const EntryMeta& m, std::span<const uint8_t> payload,
                                             uint32_t crc_seed) {
  std::array<uint8_t, kR> h{};
  put_le(h.data() + 0, kRecordMagic, 4);
  put_le(h.data() + 4, payload.size(), 4);
  put_le(h.data() + 8, m.seq, 8);
  put_le(h.data() + 16, m.packet_bytes, 8);
  put_le(h.data() + 24, m.first_ts_ns, 8);
  put_le(h.data() + 32, m.last_ts_ns, 8);
  put_le(h.data() + 40, m.packets, 4);
  put_le(h.data() + 44, crc32c(payload, crc32c(span_of(h.data(), 44), crc_seed)), 4);
  return h;
}

struct RecordHeader {
  EntryMeta meta;
  uint32_t length = 0;
  uint32_t crc = 0;
};

std::optional<RecordHeader> decode_record_header(std::span<const uint8_t> b) {
  ByteReader r(b);
  RecordHeader h;
  uint32_t magic = r.u32le();
  h.length = r.u32le();
  h.meta.seq = r.u64le();
  h.meta.packet_bytes = r.u64le();
  h.meta.first_ts_ns = r.u64le();
  h.meta.last_ts_ns = r.u64le();
  h.meta.packets = r.u32le();
  h.crc = r.u32le();
  if (!r.ok() || magic != kRecordMagic) return std::nullopt;
  return h;
}

// State slot: magic[8], version u32, reserved u32, generation u64,
// spool_id u64, last_seq u64, acked_seq u64, reserved[12], crc32c(0..60) u32.
struct StateSlot {
  uint64_t generation = 0;
  uint64_t spool_id = 0;
  uint64_t last_seq = 0;
  uint64_t acked_seq = 0;
};

std::array<uint8_t, kSlot> encode_state_slot(const StateSlot& s) {
  std::array<uint8_t, kSlot> b{};
  std::memcpy(b.data(), kStateMagic.data(), 8);
  put_le(b.data() + 8, kStateVersion, 4);
  put_le(b.data() + 16, s.generation, 8);
  put_le(b.data() + 24, s.spool_id, 8);
  put_le(b.data() + 32, s.last_seq, 8);
  put_le(b.data() + 40, s.acked_seq, 8);
  put_le(b.data() + 60, crc32c(span_of(b.data(), 60)), 4);
  return b;
}

std::optional<StateSlot> decode_state_slot(std::span<const uint8_t> b) {
  ByteReader r(b);
  auto magic = r.str(8);
  uint32_t version = r.u32le();
  r.skip(4);
  StateSlot s;
  s.generation = r.u64le();
  s.spool_id = r.u64le();
  s.last_seq = r.u64le();
  s.acked_seq = r.u64le();
  r.skip(12);
  uint32_t crc = r.u32le();
  if (!r.ok() || magic != kStateMagic || version != kStateVersion || s.spool_id == 0)
    return std::nullopt;
  if (crc != crc32c(b.first(60))) return std::nullopt;
  return s;
}

// "00000000000000000123.spool" -> 123 (suffix ".spool"; spares: ".spare").
std::optional<uint64_t> parse_file_name(std::string_view name, std::string_view suffix) {
  if (name.size() != kSeqDigits + suffix.size() || !name.ends_with(suffix)) return std::nullopt;
  uint64_t seq = 0;
  auto digits = name.substr(0, kSeqDigits);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), seq);
  if (ec != std::errc() || p != digits.data() + digits.size()) return std::nullopt;
  return seq;
}

// ------------------------------------------------------------- syscalls ---

Error sys_error(std::string_view what, const fs::path& path, int err = errno) {
  return Error::from_errno(std::string(what) + " " + path.string(), err);
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Writes every byte of iov at offset (pwritev may write short).
Status pwritev_all(int fd, std::span<iovec> iov, uint64_t offset, const fs::path& path,
                   std::string_view what) {
  size_t i = 0;
  while (i < iov.size()) {
    ssize_t n =
        ::pwritev(fd, iov.data() + i, static_cast<int>(iov.size() - i), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(what, path);
    }
    if (n == 0) return sys_error(what, path, EIO);
    offset += static_cast<uint64_t>(n);
    auto left = static_cast<size_t>(n);
    while (i < iov.size() && left >= iov[i].iov_len) left -= iov[i++].iov_len;
    if (i < iov.size()) {
      iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + left;
      iov[i].iov_len -= left;
    }
  }
  return ok_status();
}

// Reads up to n bytes at offset; fewer only at end of file.
Result<size_t> pread_full(int fd, uint8_t* buf, size_t n, uint64_t offset, const fs::path& path,
                          std::string_view what) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, buf + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return sys_error(what, path);
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

uint64_t random_u64() {
  uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != sizeof v) {
    std::random_device rd;
    v = (uint64_t{rd()} << 32) ^ rd();
  }
  return v;
}

uint64_t random_spool_id() {
  uint64_t id = 0;
  while (id == 0) id = random_u64();
  return id;
}

// The nonce of a file written from offset 0, drawn anew for every file, a
// reused spare included: bytes left from the file's earlier life (or planted
// in it by captured traffic) then carry CRCs made without it. Never the one
// value in 2^32 whose seed is 0, with which every record CRC would equal its
// version 1 CRC.
uint32_t new_file_nonce() {
  uint32_t nonce = 0;
  do {
    nonce = static_cast<uint32_t>(random_u64());
  } while (record_crc_seed(nonce) == 0);
  return nonce;
}

iovec iov_of(const void* p, size_t n) { return {const_cast<void*>(p), n}; }

}  // namespace

// ------------------------------------------------------------------ open ---

Spool::Spool(SpoolOptions opts) : opts_(std::move(opts)) {
  opts_.file_bytes = std::min(opts_.file_bytes, opts_.max_bytes / 4);
}

Spool::~Spool() {
  // Only the active file can have a stale tail; cut it so that a clean stop
  // leaves every spool file exactly as long as its records. Spares stay for
  // the next run.
  if (active_key_) {
    const File& f = files_.at(*active_key_);
    if (f.disk_size > f.size && ::ftruncate(active_fd_, static_cast<off_t>(f.size)) != 0) {
      // Best effort: open() cuts it too.
    }
  }
  close_fd(active_fd_);
  close_fd(read_fd_);
  close_fd(state_fd_);
  close_fd(dir_fd_);  // releases the flock
}

Result<std::unique_ptr<Spool>> Spool::open(SpoolOptions opts) {
  std::unique_ptr<Spool> s(new Spool(std::move(opts)));
  const fs::path& dir = s->opts_.dir;
  std::string ctx = "opening spool " + dir.string();
  if (dir.empty()) return Error(ctx + ": no directory given");

  // Captured traffic: readable by the agent's user only (a directory the
  // user made beforehand keeps its mode; the files are 0600 regardless).
  std::error_code ec;
  if (fs::create_directories(dir, ec) && !ec) fs::permissions(dir, fs::perms::owner_all, ec);
  if (ec) return Error(ctx + ": creating directory: " + ec.message());
  s->dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->dir_fd_ < 0) return sys_error("open", dir).with_context(ctx);
  if (::flock(s->dir_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Error(ctx + ": directory is in use by another spool");
    return sys_error("flock", dir).with_context(ctx);
  }
  TRAWL_TRY(s->recover(), ctx);
  return s;
}

Status Spool::recover() {
  const fs::path& dir = opts_.dir;
  const fs::path state_path = dir / kStateName;

  // 1. The state file: the newer of the two valid slots.
  std::optional<StateSlot> state;
  state_fd_ = ::open(state_path.c_str(), O_RDWR | O_CLOEXEC);
  if (state_fd_ >= 0) {
    std::array<uint8_t, 2 * kSlot> buf{};
    auto n = pread_full(state_fd_, buf.data(), buf.size(), 0, state_path, "read");
    if (!n) return std::move(n).error();
    for (size_t slot = 0; slot < 2; ++slot) {
      if (*n < (slot + 1) * kSlot) break;
      auto st = decode_state_slot(span_of(buf.data() + slot * kSlot, kSlot));
      if (st && (!state || st->generation > state->generation)) state = st;
    }
  } else if (errno != ENOENT) {
    return sys_error("open", state_path);
  }
  ::unlink((dir / kStateTmpName).c_str());  // an interrupted create_state()
  if (state) {
    spool_id_ = state->spool_id;
    last_seq_ = state->last_seq;
    acked_seq_ = std::min(state->acked_seq, state->last_seq);
    state_generation_ = state->generation;
  }

  // 2. The spool files, oldest first (and the spares, for step 3).
  std::map<uint64_t, fs::path> found, spares;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (auto seq = parse_file_name(name, kFileSuffix)) found[*seq] = it->path();
    if (auto seq = parse_file_name(name, kSpareSuffix)) spares[*seq] = it->path();
  }
  if (ec) return Error("listing " + dir.string() + ": " + ec.message());
  if (!state && (state_fd_ >= 0 || !found.empty())) recovery_.state_rebuilt = true;

  uint64_t prev_seq = 0;
  for (const auto& [first_seq, path] : found)
    TRAWL_TRY(recover_file(first_seq, path, prev_seq), "recovering " + path.string());

  // 3. Ack point and last_seq: the state may be older than the files after a
  // machine crash (its slots are not fsynced); the files win. Spares left by
  // the last run are kept before acked files are freed (which adds spares).
  uint64_t old_last = last_seq_;
  last_seq_ = std::max(last_seq_, prev_seq);
  TRAWL_TRY(adopt_spares(spares), "adopting spare files");
  const size_t files_before = files_.size();
  TRAWL_TRY(free_acked_files(), "freeing acked files");
  recovery_.removed_files += static_cast<uint32_t>(files_before - files_.size());
  if (!state) {
    if (spool_id_ == 0) spool_id_ = random_spool_id();
    return create_state();
  }
  if (last_seq_ != old_last) return write_state();
  return ok_status();
}

Status Spool::recover_file(uint64_t first_seq, const fs::path& path, uint64_t& prev_seq) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return sys_error("open", path);
  struct Closer {
    int& fd;
    ~Closer() { close_fd(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return sys_error("stat", path);
  const auto size = static_cast<uint64_t>(st.st_size);

  auto remove = [&]() -> Status {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sys_error("unlink", path);
    ++recovery_.removed_files;
    recovery_.truncated_bytes += size;
    return ok_status();
  };

  // A file whose header is short or bad was torn while being created (or
  // damaged); it holds nothing we could trust.
  std::array<uint8_t, kH> fh{};
  auto n = pread_full(fd, fh.data(), fh.size(), 0, path, "read");
  if (!n) return std::move(n).error();
  auto header = *n == kH ? decode_file_header(fh) : std::nullopt;
  if (!header || header->first_seq != first_seq || first_seq <= prev_seq) return remove();
  if (spool_id_ == 0) spool_id_ = header->spool_id;
  if (header->spool_id != spool_id_)
    return Error(path.string() + " belongs to spool " + std::to_string(header->spool_id) +
                 ", this is spool " + std::to_string(spool_id_));

  // Records up to the first one that is short, bad or out of order.
  constexpr size_t kChunk = 1 << 20;
  std::vector<uint8_t> chunk(kChunk);
  uint64_t off = kH;
  uint64_t last = 0;
  std::vector<Entry> found;
  while (off + kR <= size) {
    std::array<uint8_t, kR> rh{};
    auto got = pread_full(fd, rh.data(), kR, off, path, "read");
    if (!got) return std::move(got).error();
    auto rec = *got == kR ? decode_record_header(rh) : std::nullopt;
    if (!rec || off + kR + rec->length > size) break;
    if (found.empty() ? rec->meta.seq != first_seq : rec->meta.seq <= last) break;
    uint32_t crc = crc32c(span_of(rh.data(), 44), header->crc_seed);
    for (uint64_t done = 0; done < rec->length;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, rec->length - done));
      auto r = pread_full(fd, chunk.data(), want, off + kR + done, path, "read");
      if (!r) return std::move(r).error();
      if (*r != want) return sys_error("read", path, EIO);  // the file shrank under us
      crc = crc32c(span_of(chunk.data(), want), crc);
      done += want;
    }
    if (crc != rec->crc) break;
    found.push_back(Entry{rec->meta, off, rec->length});
    last = rec->meta.seq;
    off += kR + rec->length;
  }

  if (found.empty()) return remove();
  if (off < size) {
    if (::ftruncate(fd, static_cast<off_t>(off)) != 0) return sys_error("truncate", path);
    recovery_.truncated_bytes += size - off;
    ++recovery_.truncated_files;
  }
  for (const Entry& e : found) {
    if (e.meta.seq <= acked_seq_) {
      ++recovery_.acked_records;
    } else {
      entries_.push_back(e);
      ++recovery_.entries;
    }
  }
  files_[first_seq] = File{path, off, off, last, header->crc_seed};
  bytes_ += off;
  disk_bytes_ += off;
  prev_seq = last;
  return ok_status();
}

// Spares of the last run, newest first, while they are few, of a sane size
// (a file that size could have been freed by this spool) and within
// max_bytes on disk; the rest are deleted. Their contents do not matter.
Status Spool::adopt_spares(const std::map<uint64_t, fs::path>& found) {
  std::vector<Spare> kept;
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    const fs::path& path = it->second;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return sys_error("stat", path);
    const auto size = static_cast<uint64_t>(st.st_size);
    if (S_ISREG(st.st_mode) && kept.size() < opts_.spare_files && size <= 2 * opts_.file_bytes &&
        disk_bytes_ + size <= opts_.max_bytes) {
      kept.push_back(Spare{path, size});
      disk_bytes_ += size;
    } else if (S_ISREG(st.st_mode)) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sys_error("unlink", path);
    }
  }
  spares_.assign(kept.rbegin(), kept.rend());
  return ok_status();
}

// ----------------------------------------------------------------- state ---

// Written once, whole, under a temporary name and renamed, with fsync: a
// spool never exists without its id.
Status Spool::create_state() {
  const fs::path tmp = opts_.dir / kStateTmpName;
  const fs::path path = opts_.dir / kStateName;
  close_fd(state_fd_);
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return sys_error("create", tmp);
  state_generation_ += 2;
  StateSlot s{state_generation_ - 1, spool_id_, last_seq_, acked_seq_};
  auto a = encode_state_slot(s);
  s.generation = state_generation_;
  auto b = encode_state_slot(s);
  // Slot index = generation % 2.
  auto& slot0 = (s.generation % 2 == 0) ? b : a;
  auto& slot1 = (s.generation % 2 == 0) ? a : b;
  std::array<iovec, 2> iov{iov_of(slot0.data(), kSlot), iov_of(slot1.data(), kSlot)};
  Status st = pwritev_all(fd, iov, 0, tmp, "write");
  if (st.ok() && ::fsync(fd) != 0) st = sys_error("fsync", tmp);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = sys_error("rename", path);
  if (st.ok() && ::fsync(dir_fd_) != 0) st = sys_error("fsync", opts_.dir);
  if (!st.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  state_fd_ = fd;
  return ok_status();
}

// One 64-byte pwrite into the slot the previous write did not use, so the
// other slot stays a valid copy if this write is torn.
Status Spool::write_state() {
  const fs::path path = opts_.dir / kStateName;
  ++state_generation_;
  auto b = encode_state_slot({state_generation_, spool_id_, last_seq_, acked_seq_});
  std::array<iovec, 1> iov{iov_of(b.data(), kSlot)};
  Status st = pwritev_all(state_fd_, iov, (state_generation_ % 2) * kSlot, path, "write");
  if (st.ok() && opts_.fsync_each_append && ::fdatasync(state_fd_) != 0)
    st = sys_error("fdatasync", path);
  if (!st.ok()) --state_generation_;  // rewrite the same (possibly torn) slot next time
  return st;
}

// ----------------------------------------------------------------- files ---

fs::path Spool::file_path(uint64_t first_seq) const {
  std::string name = std::to_string(first_seq);
  name.insert(0, kSeqDigits - name.size(), '0');
  name += kFileSuffix;
  return opts_.dir / name;
}

fs::path Spool::spare_path(uint64_t first_seq) const {
  fs::path p = file_path(first_seq);
  p.replace_extension(kSpareSuffix);
  return p;
}

std::map<uint64_t, Spool::File>::iterator Spool::file_of(uint64_t seq) {
  auto it = files_.upper_bound(seq);
  SPOOL_CHECK(it != files_.begin());
  return std::prev(it);
}

void Spool::close_active() {
  close_fd(active_fd_);
  active_key_.reset();
}

void Spool::drop_read_fd() { close_fd(read_fd_); }

// The file is gone from the directory (deleted or renamed to a spare).
void Spool::forget_file(std::map<uint64_t, File>::iterator it) {
  if (active_key_ == it->first) close_active();
  if (read_fd_ >= 0 && read_key_ == it->first) drop_read_fd();
  bytes_ -= it->second.size;
  disk_bytes_ -= it->second.disk_size;
  files_.erase(it);
}

Status Spool::remove_file(std::map<uint64_t, File>::iterator it) {
  if (::unlink(it->second.path.c_str()) != 0 && errno != ENOENT)
    return sys_error("unlink", it->second.path);
  forget_file(it);
  return ok_status();
}

// A fully acked file: kept as a spare while there is a free slot (and it is
// not an outsized one-record file), deleted otherwise. The rename is atomic:
// after a crash the file is either still a spool file holding acked records
// (freed again by open()) or a spare.
Status Spool::free_file(std::map<uint64_t, File>::iterator it) {
  const File& f = it->second;
  if (spares_.size() >= opts_.spare_files || f.disk_size > 2 * opts_.file_bytes)
    return remove_file(it);
  Spare spare{spare_path(it->first), f.disk_size};
  if (::rename(f.path.c_str(), spare.path.c_str()) != 0) return sys_error("rename", f.path);
  // A spare of the same name (only after seqs were reused, see docs) was replaced.
  for (size_t i = 0; i < spares_.size(); ++i) {
    if (spares_[i].path == spare.path) {
      disk_bytes_ -= spares_[i].size;
      spares_.erase(spares_.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  forget_file(it);
  spares_.push_back(std::move(spare));
  disk_bytes_ += spares_.back().size;
  return ok_status();
}

Status Spool::free_acked_files() {
  while (!files_.empty() && files_.begin()->second.last_seq <= acked_seq_)
    TRAWL_TRY(free_file(files_.begin()), "freeing acked file");
  return ok_status();
}

Status Spool::remove_spare(size_t i) {
  const Spare& s = spares_[i];
  if (::unlink(s.path.c_str()) != 0 && errno != ENOENT) return sys_error("unlink", s.path);
  disk_bytes_ -= s.size;
  spares_.erase(spares_.begin() + static_cast<std::ptrdiff_t>(i));
  return ok_status();
}

// The active file (the only one that may have one) loses its stale tail.
Status Spool::cut_stale_tail(File& f) {
  if (f.disk_size == f.size) return ok_status();
  if (::ftruncate(active_fd_, static_cast<off_t>(f.size)) != 0) return sys_error("truncate", f.path);
  disk_bytes_ -= f.disk_size - f.size;
  f.disk_size = f.size;
  return ok_status();
}

// ---------------------------------------------------------------- append ---

Result<AppendOutcome> Spool::append(const EntryMeta& meta, std::span<const uint8_t> frame) {
  SPOOL_CHECK(meta.seq > last_seq_);
  last_seq_ = meta.seq;
  AppendOutcome out;
  out.dropped = std::move(carried_drops_);
  carried_drops_.clear();
  auto fail = [&](Error e) -> Result<AppendOutcome> {
    carried_drops_ = std::move(out.dropped);
    return std::move(e).with_context("spool append seq " + std::to_string(meta.seq));
  };

  // 1. last_seq first: a seq is never reused, even if we die mid-write.
  if (Status st = write_state(); !st.ok()) return fail(std::move(st).error());

  const uint64_t rec = kR + frame.size();
  auto refuse = [&] {
    out.dropped.push_back(meta);
    return out;
  };
  if (frame.size() > UINT32_MAX || kH + rec > opts_.max_bytes) return refuse();

  // 2. Plan: does it fit, possibly after evicting the oldest files that hold
  // no in-flight entry? Evict nothing unless that is enough.
  const File* target = active_key_ ? &files_.at(*active_key_) : nullptr;
  auto need = [&](const File* t) {
    bool fresh = t == nullptr || (t->size + rec > opts_.file_bytes && t->size > kH);
    return rec + (fresh ? kH : 0);
  };
  uint64_t after = bytes_;
  std::vector<uint64_t> victims;
  bool fits = after + need(target) <= opts_.max_bytes;
  if (!fits && opts_.policy == DropPolicy::kDropOldest) {
    // Files at or below the newest in-flight seq hold an in-flight entry.
    const uint64_t in_flight_max = in_flight_ ? entries_[in_flight_ - 1].meta.seq : 0;
    for (const auto& [key, f] : files_) {
      if (in_flight_ && key <= in_flight_max) continue;
      victims.push_back(key);
      after -= f.size;
      if (active_key_ == key) target = nullptr;
      if (after + need(target) <= opts_.max_bytes) {
        fits = true;
        break;
      }
    }
  }
  if (!fits) return refuse();

  // 3. Evict: unlink first, so an entry is reported dropped only once gone.
  for (uint64_t key : victims) {
    auto it = files_.find(key);
    const uint64_t last = it->second.last_seq;
    if (Status st = remove_file(it); !st.ok()) return fail(std::move(st).error());
    auto by_seq = [](const Entry& e, uint64_t s) { return e.meta.seq < s; };
    auto lo = std::lower_bound(entries_.begin(), entries_.end(), key, by_seq);
    auto hi = std::lower_bound(lo, entries_.end(), last + 1, by_seq);
    for (auto e = lo; e != hi; ++e) out.dropped.push_back(e->meta);
    entries_.erase(lo, hi);
  }

  // 4-5. Write.
  if (Status st = write_record(meta, frame); !st.ok()) return fail(std::move(st).error());
  out.stored = true;
  return out;
}

Status Spool::write_record(const EntryMeta& meta, std::span<const uint8_t> frame) {
  const uint64_t rec = kR + frame.size();
  File* target = active_key_ ? &files_.at(*active_key_) : nullptr;

  if (target && target->size + rec > opts_.file_bytes && target->size > kH) {
    // Rotate: the full file loses its stale tail, if it was a reused one (only
    // the active file may have one), and goes to disk now, off the
    // per-append path.
    if (Status st = cut_stale_tail(*target); !st.ok()) return st;
    if (opts_.fdatasync_on_rotate && ::fdatasync(active_fd_) != 0)
      return sys_error("fdatasync", target->path);
    close_active();
    target = nullptr;
  }
  if (target == nullptr) return start_file(meta, frame);

  // Room on disk: the record takes disk space only where it runs past the
  // stale tail. The logical bytes fit (append() planned them), so deleting
  // the spares and then cutting the stale tail always makes room. (Deleting
  // spares is enough while the bound held before this write: the record
  // either fits inside the stale tail or uses all of it. The cut is for
  // when it did not, after a failed write whose cleanup failed too.)
  const uint64_t end = target->size + rec;
  auto over = [&] {
    return disk_bytes_ + (end > target->disk_size ? end - target->disk_size : 0) > opts_.max_bytes;
  };
  while (over() && !spares_.empty()) {
    if (Status st = remove_spare(0); !st.ok()) return st;
  }
  if (over()) {
    if (Status st = cut_stale_tail(*target); !st.ok()) return st;
  }

  // Stale bytes after the record need no marking: their CRCs were not
  // made with this file's nonce.
  auto rh = encode_record_header(meta, frame, target->crc_seed);
  std::array<iovec, 2> iov{iov_of(rh.data(), kR), iov_of(frame.data(), frame.size())};
  Status st = pwritev_all(active_fd_, iov, target->size, target->path, "write");
  if (st.ok() && opts_.fsync_each_append && ::fdatasync(active_fd_) != 0)
    st = sys_error("fdatasync", target->path);
  if (!st.ok()) {
    // Cut the partial record off (with the stale tail); if even that fails,
    // never append to this file again (open() will cut it).
    const uint64_t disk = ::ftruncate(active_fd_, static_cast<off_t>(target->size)) == 0
                              ? target->size
                              : std::max(target->disk_size, end);
    disk_bytes_ = disk_bytes_ - target->disk_size + disk;
    target->disk_size = disk;
    if (disk != target->size) close_active();
    return st;
  }
  entries_.push_back(Entry{meta, target->size, static_cast<uint32_t>(frame.size())});
  if (end > target->disk_size) {
    disk_bytes_ += end - target->disk_size;
    target->disk_size = end;
  }
  target->size = end;
  target->last_seq = meta.seq;
  bytes_ += rec;
  return ok_status();
}

// A new active file starting with `meta`: the newest spare, renamed and
// overwritten in place (no O_TRUNC: its pages and blocks are reused), or a
// new file. Either way one pwritev of file header (with a fresh nonce) +
// first record at offset 0. A crash before it completes leaves a spool file
// whose header (the spare's old one, or a torn new one) or first record does
// not match its name, which open() deletes.
Status Spool::start_file(const EntryMeta& meta, std::span<const uint8_t> frame) {
  const uint64_t len = kH + kR + frame.size();
  const fs::path path = file_path(meta.seq);

  // Room on disk: spares go oldest first. The newest is reused, which never
  // takes more room than a new file: its stale tail is already counted.
  auto over = [&] {
    const uint64_t reused = spares_.empty() ? 0 : spares_.back().size;
    return disk_bytes_ + (len > reused ? len - reused : 0) > opts_.max_bytes;
  };
  while (over() && !spares_.empty()) {
    if (Status st = remove_spare(0); !st.ok()) return st;
  }

  int fd = -1;
  uint64_t disk = len;  // the file's length once written
  if (!spares_.empty()) {
    const Spare& s = spares_.back();
    fd = ::open(s.path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0 && ::rename(s.path.c_str(), path.c_str()) != 0) close_fd(fd);
    if (fd < 0) {
      // An unusable spare (gone, or not renameable): a new file instead.
      if (Status st = remove_spare(spares_.size() - 1); !st.ok()) return st;
    } else {
      disk = std::max(len, s.size);
      disk_bytes_ -= s.size;  // counted below as the file's
      spares_.pop_back();
    }
  }
  if (fd < 0) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return sys_error("create", path);
  }
  const uint32_t nonce = new_file_nonce();
  File f{path, len, disk, meta.seq, record_crc_seed(nonce)};
  disk_bytes_ += disk;

  auto fh = encode_file_header(spool_id_, meta.seq, nonce);
  auto rh = encode_record_header(meta, frame, f.crc_seed);
  std::array<iovec, 3> iov{iov_of(fh.data(), kH), iov_of(rh.data(), kR),
                           iov_of(frame.data(), frame.size())};
  Status st = pwritev_all(fd, iov, 0, path, "write");
  if (st.ok() && opts_.fsync_each_append) {
    if (::fdatasync(fd) != 0)
      st = sys_error("fdatasync", path);
    else if (::fsync(dir_fd_) != 0)
      st = sys_error("fsync", opts_.dir);
  }
  if (!st.ok()) {
    ::close(fd);
    ::unlink(path.c_str());
    disk_bytes_ -= disk;
    return st;
  }
  files_[meta.seq] = std::move(f);
  active_key_ = meta.seq;
  active_fd_ = fd;
  bytes_ += len;
  entries_.push_back(Entry{meta, kH, static_cast<uint32_t>(frame.size())});
  return ok_status();
}

// ------------------------------------------------------------------- send ---

Result<std::optional<std::pair<EntryMeta, std::span<const uint8_t>>>> Spool::next_unsent() {
  if (in_flight_ == entries_.size())
    return std::optional<std::pair<EntryMeta, std::span<const uint8_t>>>();
  const Entry& e = entries_[in_flight_];
  auto fit = file_of(e.meta.seq);
  const fs::path& path = fit->second.path;
  std::string ctx = "spool read seq " + std::to_string(e.meta.seq);

  int fd = -1;
  if (active_key_ == fit->first) {
    fd = active_fd_;
  } else {
    if (read_fd_ < 0 || read_key_ != fit->first) {
      drop_read_fd();
      read_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (read_fd_ < 0) return sys_error("open", path).with_context(ctx);
      read_key_ = fit->first;
    }
    fd = read_fd_;
  }

  const size_t n = kR + e.length;
  if (read_cap_ < n) {
    read_buf_.reset(new uint8_t[n]);
    read_cap_ = n;
  }
  auto got = pread_full(fd, read_buf_.get(), n, e.offset, path, "read");
  if (!got) return std::move(got).error().with_context(ctx);
  if (*got != n) return sys_error("read", path, EIO).with_context(ctx + ": short record");
  auto rh = decode_record_header(span_of(read_buf_.get(), kR));
  if (!rh || rh->meta.seq != e.meta.seq || rh->length != e.length)
    return Error(ctx + ": " + path.string() + ": record header at offset " +
                 std::to_string(e.offset) + " does not match the index");
  ++in_flight_;
  return std::optional(std::pair(e.meta, std::span<const uint8_t>(read_buf_.get() + kR, e.length)));
}

std::optional<EntryMeta> Spool::peek_unsent() const {
  if (in_flight_ == entries_.size()) return std::nullopt;
  return entries_[in_flight_].meta;
}

std::optional<EntryMeta> Spool::skip_unsent() {
  if (in_flight_ == entries_.size()) return std::nullopt;
  return entries_[in_flight_++].meta;
}

Status Spool::ack(uint64_t seq) {
  if (seq <= acked_seq_) return free_acked_files();  // retries an earlier failed unlink
  const uint64_t acked_before = acked_seq_, last_before = last_seq_;
  acked_seq_ = seq;
  // The collector holds seqs we do not know (our tail was lost in a machine
  // crash, or the spool was wiped): never hand them out again.
  last_seq_ = std::max(last_seq_, seq);
  if (Status st = write_state(); !st.ok()) {
    acked_seq_ = acked_before;
    last_seq_ = last_before;
    return std::move(st).error().with_context("spool ack " + std::to_string(seq));
  }
  size_t popped = 0;
  while (!entries_.empty() && entries_.front().meta.seq <= acked_seq_) {
    entries_.pop_front();
    ++popped;
  }
  in_flight_ -= std::min(in_flight_, popped);
  TRAWL_TRY(free_acked_files(), "spool ack " + std::to_string(seq));
  return ok_status();
}

std::optional<uint64_t> Spool::oldest_unacked_first_ts() const {
  if (entries_.empty()) return std::nullopt;
  return entries_.front().meta.first_ts_ns;
}

}  // namespace trawl::agent
