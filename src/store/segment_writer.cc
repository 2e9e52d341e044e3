// SegmentWriter: batches -> pcapng segments, with crash recovery.
//
// Per batch, on the collector's per-agent thread:
//   1. begin_batch: settle earlier failures -> rotate if due -> open lazily ->
//      IDBs for new interfaces
//   2. packet / stats / gap: encode into buf_ (memory only)
//   3. end_batch: BATCH MARK -> end the block (zstd frame) when it reached
//      block_bytes, else compress/write when the buffer is half full
//   4. sync: flush (ZSTD_e_flush) -> write -> fdatasync (-> fsync the
//      directory once per segment) -> index journal
// Any I/O error rolls back to the last durable point (see the header).
#include "store/segment_writer.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zstd.h>

#include "core/bytes.h"
#include "store/crc32c.h"
#include "store/pcapng.h"
#include "store/segment_name.h"

#ifndef TRAWL_VERSION
#define TRAWL_VERSION "dev"
#endif

// API misuse by the caller is a bug: crash loudly, in every build.
#define STORE_CHECK(cond, what)                               \
  do {                                                        \
    if (!(cond)) [[unlikely]] {                               \
      spdlog::critical("SegmentWriter: {} ({})", what, #cond); \
      std::abort();                                           \
    }                                                         \
  } while (0)

namespace trawl::store {
namespace fs = std::filesystem;
namespace png = pcapng;

// A frame is ended on an alignment boundary when the padding this costs is
// at most this much (see zstd_frame_end).
constexpr uint64_t kAlignSlackBytes = 16u << 10;

namespace {

Status fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("opening directory " + dir.string());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Error::from_errno("fsync directory " + dir.string(), err);
  return ok_status();
}

Status write_all(int fd, std::span<const uint8_t> data, uint64_t offset, const std::string& label,
                 uint64_t* written = nullptr) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done,
                         static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("writing segment " + label);
    }
    done += static_cast<size_t>(n);
    if (written) *written += static_cast<uint64_t>(n);
  }
  return ok_status();
}

// Renames without ever replacing an existing (sealed) file.
Status rename_no_replace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0)
    return ok_status();
  if (errno != EINVAL && errno != ENOSYS)
    return Error::from_errno("renaming " + from.filename().string() + " to " + to.filename().string());
  // File system without RENAME_NOREPLACE: link() fails if the target exists.
  if (::link(from.c_str(), to.c_str()) != 0)
    return Error::from_errno("linking " + from.filename().string() + " to " + to.filename().string());
  if (::unlink(from.c_str()) != 0) return Error::from_errno("removing " + from.string());
  return ok_status();
}

bool agent_name_valid(std::string_view a) {
  if (a.empty() || a == "." || a == ".." || a.size() > 200) return false;
  return std::none_of(a.begin(), a.end(), [](char c) { return c == '/' || c == '\0'; });
}

// The last BATCH MARK / SEAL a reader meets from where it is to the end.
std::optional<png::BatchMark> scan_last_mark(png::PcapngReader& reader) {
  std::optional<png::BatchMark> last;
  while (reader.next() == png::PcapngReader::Next::kBlock) {
    const auto& b = reader.block();
    if (b.type != png::kNrbType && b.type != png::kCustomCopyType && b.type != png::kCustomNoCopyType)
      continue;
    auto rec = png::decode_trawl_record(b);
    if (!rec) continue;
    if (const auto* m = std::get_if<png::BatchMark>(&*rec)) last = *m;
    if (const auto* s = std::get_if<png::SealRecord>(&*rec)) last = png::BatchMark{s->spool_id, s->last_seq};
  }
  return last;
}

// The last BATCH MARK / SEAL in pcapng bytes.
std::optional<png::BatchMark> last_mark_in(std::span<const uint8_t> raw,
                                           std::vector<png::PcapngReader::Interface> ifaces) {
  png::PcapngReader reader(raw, std::move(ifaces));
  return scan_last_mark(reader);
}

// Compressed segment: the last block (through the index), else all of it.
std::optional<png::BatchMark> read_compressed_state(const fs::path& path) {
  auto file = png::MappedFile::open(path);
  if (!file.ok()) return std::nullopt;
  fs::path idx_path = path;
  idx_path += kIndexSuffix;
  if (auto idx = read_index_file(idx_path, false); idx.ok() && !idx->blocks.empty()) {
    // Interfaces do not matter for finding records; give enough ids.
    std::vector<png::PcapngReader::Interface> ifaces;
    for (const auto& blk : idx->blocks)
      for (const auto& i : blk.new_interfaces) ifaces.push_back({i.link_type, i.snaplen, i.name, 9});
    for (auto it = idx->blocks.rbegin(); it != idx->blocks.rend(); ++it) {
      auto raw = decode_block_bytes(file->bytes(), true, *it);
      if (!raw.ok()) break;
      if (auto m = last_mark_in(*raw, ifaces)) return m;
    }
  }
  auto raw = decode_tail(file->bytes(), true, 0);
  return last_mark_in(raw, {});
}

// The (spool_id, last_seq) stored in a sealed segment: its trailing SEAL
// record, read through the trailing block length; else a forward scan for
// the last BATCH MARK / SEAL.
std::optional<png::BatchMark> read_segment_state(const fs::path& path) {
  if (path.string().ends_with(kZstSuffix)) return read_compressed_state(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    struct stat st {};
    uint8_t len_bytes[4];
    if (::fstat(fd, &st) == 0 && st.st_size >= 16 &&
        ::pread(fd, len_bytes, 4, st.st_size - 4) == 4) {
      uint32_t len = ByteReader({len_bytes, 4}).u32le();
      if (len >= 12 && len % 4 == 0 && len <= 4096 && len <= static_cast<uint64_t>(st.st_size)) {
        std::vector<uint8_t> tail(len);
        if (::pread(fd, tail.data(), len, st.st_size - len) == static_cast<ssize_t>(len)) {
          auto b = png::decode_block(tail, static_cast<uint64_t>(st.st_size) - len);
          if (b) {
            auto rec = png::decode_trawl_record(*b);
            if (rec) {
              if (const auto* s = std::get_if<png::SealRecord>(&*rec)) {
                ::close(fd);
                return png::BatchMark{s->spool_id, s->last_seq};
              }
            }
          }
        }
      }
    }
    ::close(fd);
  }
  auto reader = png::PcapngReader::open_file(path);
  if (!reader.ok()) return std::nullopt;
  return scan_last_mark(*reader);
}

}  // namespace

// ---------------------------------------------------------------- open / recovery

SegmentWriter::SegmentWriter(SegmentOptions opts, const Clock& clock)
    : opts_(std::move(opts)), clock_(clock) {
  if (opts_.write_buffer_bytes < 4096) opts_.write_buffer_bytes = 4096;
  if (opts_.block_bytes < 4096) opts_.block_bytes = 4096;
  buf_.reserve(opts_.write_buffer_bytes + (64u << 10));
  compressed_ = opts_.zstd_level != 0;
  if (compressed_) {
    cctx_ = ZSTD_createCCtx();
    STORE_CHECK(cctx_ != nullptr, "ZSTD_createCCtx");
    ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, std::clamp(opts_.zstd_level, ZSTD_minCLevel(), ZSTD_maxCLevel()));
    // Integrity is checked through the index's per-block CRC32C; without
    // a content checksum a frame can be ended after any flush (rollback).
    ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 0);
    // A window that holds a whole frame (frames are independent, so more is
    // useless; a frame ends by 4 x block_bytes, usually at 1-3 x since it
    // waits for a batch end near an alignment boundary): with the fast
    // levels' default 512 KiB, zstd's input buffer wraps within every frame
    // and the rest of the frame is matched in its slower two-segment
    // ("extDict") mode; 16 % slower on real captures. Costs 4 x frame-size
    // of buffer per writer (4 MiB by default).
    const int window_log = std::clamp(static_cast<int>(std::bit_width(4 * opts_.block_bytes - 1)), 20, 24);
    ZSTD_CCtx_setParameter(cctx_, ZSTD_c_windowLog, window_log);
    zbuf_.resize(ZSTD_CStreamOutSize());
  }
}

SegmentWriter::~SegmentWriter() {
  if (fd_ >= 0) {
    spdlog::warn("segment {} abandoned without close(); it is recovered at the next open",
                 part_path_.string());
    ::close(fd_);
  }
  if (idx_fd_ >= 0) ::close(idx_fd_);
  ZSTD_freeCCtx(cctx_);
}

Result<std::unique_ptr<SegmentWriter>> SegmentWriter::open(SegmentOptions opts,
                                                            const Clock& clock) {
  if (!agent_name_valid(opts.agent))
    return Error(fmt::format("invalid agent name \"{}\" for a segment directory", opts.agent));
  std::error_code ec;
  fs::create_directories(opts.dir, ec);
  if (ec) return Error(fmt::format("creating {}: {}", opts.dir.string(), ec.message()));
  std::unique_ptr<SegmentWriter> w(new SegmentWriter(std::move(opts), clock));
  TRAWL_TRY(w->recover_directory(), "opening segments in " + w->opts_.dir.string());
  return w;
}

Status SegmentWriter::recover_directory() {
  auto list = [&](std::vector<std::pair<std::string, SegmentFileName>>& out) -> Status {
    out.clear();
    std::error_code ec;
    for (fs::directory_iterator it(opts_.dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      auto parsed = parse_segment_file_name(opts_.agent, name);
      if (!parsed) continue;
      last_start_ns_ = std::max(last_start_ns_, parsed->start_ns);
      out.emplace_back(std::move(name), *parsed);
    }
    if (ec) return Error(fmt::format("listing {}: {}", opts_.dir.string(), ec.message()));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return ok_status();
  };

  std::vector<std::pair<std::string, SegmentFileName>> files;
  TRAWL_TRY(list(files), "recovery");
  for (const auto& [name, parsed] : files) {
    if (!parsed.sealed) TRAWL_TRY(recover_part(opts_.dir / name), "recovering " + name);
  }
  TRAWL_TRY(list(files), "recovery");

  cur_ = State{};
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    if (!it->second.sealed) continue;
    if (auto state = read_segment_state(opts_.dir / it->first)) {
      cur_.spool_id = state->spool_id;
      cur_.last_seq = state->seq;
      break;
    }
    spdlog::warn("segment {} holds no batch record; looking at older segments", it->first);
  }
  needs_recovery_ = false;
  capture(durable_);
  return ok_status();
}

namespace {

// What a scan of a segment's pcapng bytes found: the end of every complete
// batch with the totals up to it, and a SEAL that follows a complete batch.
struct BatchEnd {
  uint64_t raw_end = 0;
  png::BatchMark mark;
  uint64_t batches = 0, packets = 0, first = UINT64_MAX, last = 0;
};
struct ScanResult {
  std::vector<BatchEnd> ends;
  std::optional<uint64_t> seal_end;  // raw offset just past the SEAL
  std::string stop = "clean end";
};

ScanResult scan_batches(std::span<const uint8_t> raw) {
  ScanResult out;
  BatchEnd cur;
  uint64_t b_packets = 0, b_first = UINT64_MAX, b_last = 0;  // batch in progress
  png::PcapngReader reader(raw);
  for (;;) {
    auto n = reader.next();
    if (n == png::PcapngReader::Next::kEnd) return out;
    if (n == png::PcapngReader::Next::kCorrupt) {
      out.stop = fmt::format("corrupt at offset {}: {}", reader.corrupt_offset(), reader.corrupt_reason());
      return out;
    }
    const auto& b = reader.block();
    if (const auto* epb = std::get_if<png::EpbView>(&b.view)) {
      uint64_t ts = reader.ts_ns(*epb);
      ++b_packets;
      b_first = std::min(b_first, ts);
      b_last = std::max(b_last, ts);
      continue;
    }
    if (b.type != png::kNrbType && b.type != png::kCustomCopyType && b.type != png::kCustomNoCopyType)
      continue;
    auto rec = png::decode_trawl_record(b);
    if (!rec) continue;
    if (const auto* m = std::get_if<png::BatchMark>(&*rec)) {
      cur.mark = *m;
      ++cur.batches;
      cur.packets += b_packets;
      cur.first = std::min(cur.first, b_first);
      cur.last = std::max(cur.last, b_last);
      cur.raw_end = reader.valid_end();
      out.ends.push_back(cur);
      b_packets = 0;
      b_first = UINT64_MAX;
      b_last = 0;
    } else if (std::holds_alternative<png::SealRecord>(*rec) && !out.ends.empty()) {
      out.seal_end = reader.valid_end();
      return out;
    }
  }
}

// Ends an open zstd frame whose flushed data ends at file offset `at`:
// empty non-last blocks (raw: 3 bytes, RLE of length 0: 4 bytes) as padding,
// then an empty last raw block, so that the frame ends on a multiple of
// `align` (0: no padding). Why: Wireshark 4.0 reads a .zst in chunks of
// ZSTD_DStreamInSize() (131075) bytes and, when a frame ends, looks for the
// next frame's magic at the start of its current chunk instead of at the
// read position; a multi-frame file is read correctly only if every frame
// that crosses a chunk boundary also ends on one (docs/storage.md).
std::vector<uint8_t> zstd_frame_end(uint64_t at, uint64_t align) {
  std::vector<uint8_t> out;
  uint64_t pad = 0;
  if (align) {
    pad = (align - (at + 3) % align) % align;
    if (pad == 1 || pad == 2 || pad == 5) pad += align;  // not a sum of 3s and 4s
  }
  while (pad > 0) {
    if (pad % 3 == 0) {
      out.insert(out.end(), {0x00, 0x00, 0x00});  // raw block, size 0
      pad -= 3;
    } else {
      out.insert(out.end(), {0x02, 0x00, 0x00, 0x00});  // RLE block, size 0
      pad -= 4;
    }
  }
  out.insert(out.end(), {0x01, 0x00, 0x00});  // raw block, size 0, last
  return out;
}

// A place where a compressed segment may be cut: the file offset, the
// uncompressed offset there, and whether a zstd frame is open at that point
// (then an empty last block must be appended to end it).
struct CutPoint {
  uint64_t file = 0;
  uint64_t raw = 0;
  bool in_frame = false;
};

// Frame header size of the zstd frame at d (RFC 8878 3.1.1.1), or 0.
size_t zstd_frame_header_size(std::span<const uint8_t> d) {
  if (d.size() < 5) return 0;
  uint8_t fhd = d[4];
  unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, did_flag = fhd & 3;
  static const size_t kDid[4] = {0, 1, 2, 4};
  size_t fcs = fcs_flag == 0 ? (single ? 1 : 0) : (size_t{1} << fcs_flag);
  size_t h = 5 + (single ? 0 : 1) + kDid[did_flag] + fcs;
  return h <= d.size() ? h : 0;
}

// Decodes a compressed segment: every complete frame, then the unfinished
// one as far as it goes; lists the cut points (frame ends, and the ends of
// complete zstd blocks inside the unfinished frame).
void decode_for_recovery(std::span<const uint8_t> seg, std::vector<uint8_t>& raw,
                         std::vector<CutPoint>& cuts) {
  constexpr uint32_t kMagic = 0xFD2FB528;
  uint64_t off = 0;
  cuts.push_back({0, 0, false});
  std::vector<uint8_t> out(256u << 10);
  while (off + 4 <= seg.size() && ByteReader(seg.subspan(off, 4)).u32le() == kMagic) {
    auto rest = seg.subspan(off);
    size_t n = ZSTD_findFrameCompressedSize(rest.data(), rest.size());
    bool whole = !ZSTD_isError(n);
    // Block boundaries of this frame (only needed for the unfinished one).
    std::vector<size_t> bounds;
    if (!whole) {
      size_t p = zstd_frame_header_size(rest);
      if (p == 0) return;
      while (p + 3 <= rest.size()) {
        uint32_t h = rest[p] | (rest[p + 1] << 8) | (static_cast<uint32_t>(rest[p + 2]) << 16);
        uint32_t type = (h >> 1) & 3, size = h >> 3;
        if (type == 3) break;
        size_t content = type == 1 ? 1 : size;
        if (p + 3 + content > rest.size()) break;
        p += 3 + content;
        bounds.push_back(p);
        if (h & 1) break;
      }
      n = bounds.empty() ? 0 : bounds.back();
      if (n == 0) return;
    } else {
      bounds.push_back(n);
    }
    ZSTD_DStream* ds = ZSTD_createDStream();
    ZSTD_inBuffer ib{rest.data(), 0, 0};
    bool failed = false;
    for (size_t bound : bounds) {
      ib.size = bound;
      for (;;) {
        ZSTD_outBuffer ob{out.data(), out.size(), 0};
        size_t rc = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(rc)) {
          failed = true;
          break;
        }
        raw.insert(raw.end(), out.data(), out.data() + ob.pos);
        if (ob.pos < ob.size && ib.pos == ib.size) break;
        if (rc == 0 && ib.pos == ib.size) break;
      }
      if (failed) break;
      cuts.push_back({off + bound, raw.size(), !whole});
    }
    ZSTD_freeDStream(ds);
    if (failed || !whole) return;
    off += n;
  }
}

}  // namespace

Status SegmentWriter::recover_part(const fs::path& part) {
  const std::string label = part.filename().string();
  auto parsed = parse_segment_file_name(opts_.agent, label);
  const bool compressed = parsed && parsed->compressed;
  uint64_t file_size = 0;
  ScanResult scan;
  CutPoint cut;
  bool sealed = false;
  const BatchEnd* kept = nullptr;
  {
    auto file = png::MappedFile::open(part);
    if (!file.ok()) return std::move(file).error();
    auto bytes = file->bytes();
    file_size = bytes.size();
    std::vector<uint8_t> raw_buf;
    std::vector<CutPoint> cuts;
    std::span<const uint8_t> raw = bytes;
    if (compressed) {
      decode_for_recovery(bytes, raw_buf, cuts);
      raw = raw_buf;
    }
    scan = scan_batches(raw);
    // The last batch end (or the SEAL) that is also a place the file can be
    // cut; plain segments can be cut anywhere.
    auto usable = [&](uint64_t raw_off) -> std::optional<CutPoint> {
      if (!compressed) return CutPoint{raw_off, raw_off, false};
      for (auto it = cuts.rbegin(); it != cuts.rend(); ++it)
        if (it->raw == raw_off) return *it;
      return std::nullopt;
    };
    if (scan.seal_end) {
      if (auto c = usable(*scan.seal_end)) {
        cut = *c;
        sealed = true;
        kept = &scan.ends.back();
      }
    }
    for (auto it = scan.ends.rbegin(); !sealed && it != scan.ends.rend(); ++it) {
      if (auto c = usable(it->raw_end)) {
        cut = *c;
        kept = &*it;
        break;
      }
    }
  }  // unmapped before the file changes

  const fs::path stale_index = opts_.dir / index_file_name(label);
  ::unlink(stale_index.c_str());  // rebuilt below from what is kept
  if (!kept) {
    spdlog::warn("recovery: {} holds no complete batch ({}); removing it", label, scan.stop);
    if (::unlink(part.c_str()) != 0) return Error::from_errno("removing " + label);
    return fsync_dir(opts_.dir);
  }
  int fd = ::open(part.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("opening " + label);
  auto done = [&](Status st) {
    ::close(fd);
    return st;
  };
  if (cut.file < file_size && ::ftruncate(fd, static_cast<off_t>(cut.file)) != 0)
    return done(Error::from_errno("truncating " + label));
  uint64_t end = cut.file;
  if (cut.in_frame) {  // end the open frame with an empty last raw block
    auto tail = zstd_frame_end(end, opts_.align_bytes);
    if (auto st = write_all(fd, tail, end, label); !st.ok()) return done(st);
    end += tail.size();
  }
  if (!sealed) {
    std::vector<uint8_t> seal;
    png::encode_trawl_record(seal, png::SealRecord{kept->mark.spool_id, kept->mark.seq, kept->packets,
                                                   kept->packets ? kept->first : 0,
                                                   kept->packets ? kept->last : 0});
    if (compressed) {
      std::vector<uint8_t> z(ZSTD_compressBound(seal.size()));
      size_t n = ZSTD_compress(z.data(), z.size(), seal.data(), seal.size(), 1);
      STORE_CHECK(!ZSTD_isError(n), "compressing a SEAL record");
      z.resize(n);
      seal = std::move(z);
    }
    if (auto st = write_all(fd, seal, end, label); !st.ok()) return done(st);
  }
  if (::fdatasync(fd) != 0) return done(Error::from_errno("fdatasync " + label));
  ::close(fd);

  // The sealed name is the .part name without ".part"; bump it in the
  // (never expected) case that it exists already.
  fs::path final_path = part;
  final_path.replace_extension();
  uint64_t start = parsed ? parsed->start_ns : last_start_ns_;
  while (fs::exists(final_path)) {
    start = std::max(start, last_start_ns_) + 1;
    last_start_ns_ = start;
    final_path = opts_.dir / segment_file_name(opts_.agent, start, compressed);
  }
  if (opts_.index) {
    // Written before the segment appears under its sealed name; a failure
    // only costs a rebuild by the first query.
    auto file = png::MappedFile::open(part);
    if (file.ok()) {
      auto idx = rebuild_index(file->bytes(), compressed, static_cast<uint32_t>(opts_.block_bytes));
      fs::path idx_path = opts_.dir / index_file_name(final_path.filename().string());
      if (auto st = write_index_file(idx_path, idx, file->bytes().size()); !st.ok())
        spdlog::warn("recovery: index for {}: {}", label, st.error().message());
    }
  }
  TRAWL_TRY(rename_no_replace(part, final_path), "sealing recovered segment");
  TRAWL_TRY(fsync_dir(opts_.dir), "sealing recovered segment");
  spdlog::info("recovery: sealed {} as {} with {} batches, {} packets; cut {} bytes ({})", label,
               final_path.filename().string(), kept->batches, kept->packets, file_size - cut.file,
               sealed ? "was sealed" : scan.stop);
  return ok_status();
}

// ---------------------------------------------------------------- state

void SegmentWriter::capture(State& s) const {
  s.spool_id = cur_.spool_id;
  s.last_seq = cur_.last_seq;
  s.batches = cur_.batches;
  s.seg_packets = cur_.seg_packets;
  s.first_ts = cur_.first_ts;
  s.last_ts = cur_.last_ts;
  s.size = raw_bytes_ + buf_.size();
  s.file = file_bytes_;
  s.blocks_done = blocks_done_;
  s.blk_file = indexer_.file_offset();
  s.blk_raw = indexer_.raw_offset();
  s.blk_first_idb = blk_first_idb_;
  s.blk_crc = blk_crc_;
  s.blk_mark = indexer_.mark();
  s.idbs = idbs_.size();
  s.packets = counters_.packets;
  s.bytes = counters_.bytes;
  s.pending_comment = pending_comment_;
}

void SegmentWriter::restore(const State& s) {
  cur_.spool_id = s.spool_id;
  cur_.last_seq = s.last_seq;
  cur_.batches = s.batches;
  cur_.seg_packets = s.seg_packets;
  cur_.first_ts = s.first_ts;
  cur_.last_ts = s.last_ts;
  idbs_.resize(std::min(idbs_.size(), s.idbs));
  counters_.packets = s.packets;
  counters_.bytes = s.bytes;
  pending_comment_ = s.pending_comment;
}

std::string SegmentWriter::segment_label() const { return part_path_.filename().string(); }

std::optional<fs::path> SegmentWriter::open_segment_path() const {
  if (fd_ < 0) return std::nullopt;
  return part_path_;
}

bool SegmentWriter::rotation_due() const {
  if (fd_ < 0) return false;
  return file_bytes_ + buf_.size() >= opts_.rotate_bytes || clock_.wall_ns() >= boundary_ns_;
}

Error SegmentWriter::fail(Error e) {
  ++counters_.write_errors;
  in_batch_ = false;
  buf_.clear();
  restore(durable_);
  if (fd_ >= 0) {
    // Back to the block that was open at the durable point. Entries of
    // blocks that ended after it are dropped; if one did, the reopened
    // block's flow list is gone and it is marked "all flows".
    std::erase_if(pending_idx_, [&](const IndexBlock& b) { return b.file_offset >= durable_.blk_file; });
    const bool same_block = blocks_done_ == durable_.blocks_done;
    raw_bytes_ = durable_.size;
    blocks_done_ = durable_.blocks_done;
    blk_first_idb_ = durable_.blk_first_idb;
    blk_crc_ = durable_.blk_crc;
    if (!same_block) {
      indexer_.start(durable_.blk_file, durable_.blk_raw);
      indexer_.mark_all_flows();
    }
    indexer_.restore(durable_.blk_mark);
    if (cctx_) ZSTD_CCtx_reset(cctx_, ZSTD_reset_session_only);
    frame_has_input_ = false;
    truncate_pending_ = true;
    if (auto st = settle(); !st.ok())
      spdlog::error("rolling back {}: {}", segment_label(), st.error().message());
  }
  spdlog::warn("segment writer for {} rolled back to seq {}: {}", opts_.agent, cur_.last_seq,
               e.message());
  return e;
}

Status SegmentWriter::settle() {
  if (truncate_pending_ && fd_ >= 0) {
    if (::ftruncate(fd_, static_cast<off_t>(durable_.file)) != 0) {
      ++counters_.write_errors;
      return Error::from_errno("truncating " + segment_label() + " after a failed write");
    }
    truncate_pending_ = false;
    file_bytes_ = durable_.file;
    blk_crc_ = durable_.blk_crc;  // an earlier attempt may have written past it
    if (durable_.file == 0) {
      discard_segment();  // nothing of it was durable
    } else if (compressed_ && durable_.file > durable_.blk_file) {
      // The frame open at the durable point was flushed there; the
      // compressor's state is gone, so end that frame and start a new one.
      TRAWL_TRY(close_open_frame(), "rolling back");
      capture(durable_);
    }
  }
  if (needs_recovery_) TRAWL_TRY(recover_directory(), "retrying recovery");
  return ok_status();
}

Status SegmentWriter::close_open_frame() {
  // The compressor's state is gone (rollback): end the frame by hand.
  if (auto st = write_out(zstd_frame_end(file_bytes_, opts_.align_bytes)); !st.ok()) {
    truncate_pending_ = true;
    return st;
  }
  finish_block();
  return ok_status();
}

// ---------------------------------------------------------------- segments

Status SegmentWriter::open_segment() {
  STORE_CHECK(fd_ < 0 && buf_.empty(), "opening a segment while one is open");
  uint64_t start = std::max(clock_.wall_ns(), last_start_ns_ + 1);
  for (int attempt = 0;; ++attempt, ++start) {
    final_path_ = opts_.dir / segment_file_name(opts_.agent, start, compressed_);
    part_path_ = final_path_;
    part_path_ += kPartSuffix;
    if (fs::exists(final_path_)) continue;
    fd_ = ::open(part_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ >= 0) break;
    if (errno != EEXIST || attempt > 1000) {
      ++counters_.write_errors;
      return Error::from_errno("creating " + part_path_.string());
    }
  }
  last_start_ns_ = start;
  start_ns_ = start;
  boundary_ns_ = opts_.rotate_every_ns
                     ? (start / opts_.rotate_every_ns + 1) * opts_.rotate_every_ns
                     : UINT64_MAX;
  file_bytes_ = 0;
  raw_bytes_ = 0;
  dir_synced_ = false;
  truncate_pending_ = false;
  idbs_.clear();
  pending_comment_.clear();
  blocks_done_ = 0;
  blk_first_idb_ = 0;
  blk_crc_ = 0;
  indexer_.start(0, 0);
  pending_idx_.clear();
  idx_failed_ = false;
  idx_blocks_ = 0;
  frame_has_input_ = false;
  if (cctx_) ZSTD_CCtx_reset(cctx_, ZSTD_reset_session_only);
  cur_.batches = 0;
  cur_.seg_packets = 0;
  cur_.first_ts = UINT64_MAX;
  cur_.last_ts = 0;
  capture(durable_);  // size 0: a rollback before the first sync removes the file

  const std::string comment = fmt::format("agent={} host={}", opts_.agent, opts_.agent_host);
  const std::string appl = "trawl collector " TRAWL_VERSION;
  png::encode_shb(buf_, {.hardware = opts_.agent_host, .os = {}, .userappl = appl,
                         .comment = comment});
  spdlog::debug("opened segment {}", part_path_.string());
  return ok_status();
}

fs::path SegmentWriter::journal_path() const {
  return opts_.dir / index_file_name(part_path_.filename().string());
}

void SegmentWriter::drop_journal() {
  if (idx_fd_ >= 0) {
    ::close(idx_fd_);
    idx_fd_ = -1;
  }
  ::unlink(journal_path().c_str());
  idx_bytes_ = 0;
}

void SegmentWriter::discard_segment() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  if (::unlink(part_path_.c_str()) != 0 && errno != ENOENT)
    spdlog::error("removing empty segment {}: {}", part_path_.string(), std::strerror(errno));
  drop_journal();
  pending_idx_.clear();
  buf_.clear();
  file_bytes_ = 0;
  raw_bytes_ = 0;
  idbs_.clear();
  cur_.batches = 0;
}

Status SegmentWriter::finish_segment() {
  if (fd_ < 0) return ok_status();
  if (cur_.batches == 0) {
    discard_segment();
    return ok_status();
  }
  return seal_segment();
}

Status SegmentWriter::seal_segment() {
  STORE_CHECK(!in_batch_, "sealing within a batch");
  const std::string label = segment_label();
  png::encode_trawl_record(
      buf_, png::SealRecord{cur_.spool_id, cur_.last_seq, cur_.seg_packets,
                            cur_.seg_packets ? cur_.first_ts : 0, cur_.seg_packets ? cur_.last_ts : 0});
  if (auto st = flush(FlushMode::kEnd); !st.ok()) return fail(std::move(st).error().with_context("sealing"));
  if (::fdatasync(fd_) != 0) return fail(Error::from_errno("sealing: fdatasync " + label));
  ::close(fd_);
  fd_ = -1;
  buf_.clear();
  capture(durable_);  // everything is durable now, whatever the rename does
  publish_index();
  if (auto st = rename_no_replace(part_path_, final_path_); !st.ok()) {
    ++counters_.write_errors;
    needs_recovery_ = true;  // recovery renames the sealed .part later
    return std::move(st).error().with_context("sealing " + label);
  }
  ++counters_.segments_sealed;
  spdlog::info("sealed segment {} ({} packets, {} bytes)", final_path_.filename().string(),
               cur_.seg_packets, file_bytes_);
  if (auto st = fsync_dir(opts_.dir); !st.ok()) {
    ++counters_.write_errors;
    return std::move(st).error().with_context("sealing " + label);
  }
  if (opts_.on_sealed) opts_.on_sealed(final_path_);
  return ok_status();
}

// ---------------------------------------------------------------- blocks and index

Status SegmentWriter::write_out(std::span<const uint8_t> bytes) {
  uint64_t at = file_bytes_;
  Status st = write_all(fd_, bytes, at, segment_label(), &file_bytes_);
  if (opts_.index) blk_crc_ = crc32c(bytes.first(file_bytes_ - at), blk_crc_);
  return st;
}

Status SegmentWriter::flush(FlushMode mode) {
  if (!compressed_) {
    if (!buf_.empty()) {
      if (auto st = write_out(buf_); !st.ok()) return st;
      raw_bytes_ += buf_.size();
      buf_.clear();
    }
    if (mode == FlushMode::kEnd && raw_bytes_ > indexer_.raw_offset()) finish_block();
  } else if (!buf_.empty() || (mode != FlushMode::kContinue && frame_has_input_)) {
    ZSTD_inBuffer in{buf_.data(), buf_.size(), 0};
    const ZSTD_EndDirective d = mode == FlushMode::kContinue ? ZSTD_e_continue
                                : mode == FlushMode::kFlush  ? ZSTD_e_flush
                                                             : ZSTD_e_end;
    for (;;) {
      ZSTD_outBuffer out{zbuf_.data(), zbuf_.size(), 0};
      size_t rc = ZSTD_compressStream2(cctx_, &out, &in, d);
      if (ZSTD_isError(rc))
        return Error(fmt::format("compressing segment {}: {}", segment_label(), ZSTD_getErrorName(rc)));
      if (out.pos) {
        if (auto st = write_out({zbuf_.data(), out.pos}); !st.ok()) return st;
      }
      if (d == ZSTD_e_continue ? in.pos == in.size : rc == 0) break;
    }
    raw_bytes_ += buf_.size();
    frame_has_input_ = frame_has_input_ || !buf_.empty();
    buf_.clear();
    if (mode == FlushMode::kEnd) {
      finish_block();
      frame_has_input_ = false;
    }
  }
  if (buf_.capacity() > 4 * opts_.write_buffer_bytes) {  // after one huge batch
    buf_.shrink_to_fit();
    buf_.reserve(opts_.write_buffer_bytes + (64u << 10));
  }
  return ok_status();
}

void SegmentWriter::finish_block() {
  IndexBlock b = indexer_.finish(file_bytes_, raw_bytes_, blk_crc_);
  for (size_t i = blk_first_idb_; i < idbs_.size(); ++i)
    b.new_interfaces.push_back({idbs_[i].link_type, idbs_[i].snaplen, idbs_[i].name});
  if (opts_.index) pending_idx_.push_back(std::move(b));
  ++blocks_done_;
  blk_first_idb_ = idbs_.size();
  blk_crc_ = 0;
  indexer_.start(file_bytes_, raw_bytes_);
}

void SegmentWriter::write_journal() {
  if (!opts_.index || pending_idx_.empty()) return;
  if (idx_failed_) {
    pending_idx_.clear();
    return;
  }
  std::vector<uint8_t> out;
  if (idx_fd_ < 0) {
    idx_fd_ = ::open(journal_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    idx_bytes_ = 0;
    if (idx_fd_ < 0) {
      spdlog::warn("index journal {}: {}; queries rebuild the index from the segment",
                   journal_path().string(), std::strerror(errno));
      idx_failed_ = true;
      pending_idx_.clear();
      return;
    }
    encode_index_header(out, compressed_, static_cast<uint32_t>(opts_.block_bytes));
  }
  for (const auto& b : pending_idx_) encode_index_block(out, b);
  if (auto st = write_all(idx_fd_, out, idx_bytes_, journal_path().filename().string(), &idx_bytes_);
      !st.ok()) {
    spdlog::warn("index journal: {}; queries rebuild the index from the segment", st.error().message());
    idx_failed_ = true;
    drop_journal();
  } else {
    idx_blocks_ += pending_idx_.size();
  }
  pending_idx_.clear();
}

void SegmentWriter::publish_index() {
  if (!opts_.index) return;
  write_journal();
  if (idx_fd_ >= 0) {
    ::close(idx_fd_);
    idx_fd_ = -1;
  }
  if (idx_failed_) return;
  // Re-read the journal and write the sealed layout under the final name.
  const fs::path final_idx = opts_.dir / index_file_name(final_path_.filename().string());
  Status st = ok_status();
  if (idx_blocks_ == 0) {
    SegmentIndex empty;
    empty.compressed = compressed_;
    empty.block_bytes = static_cast<uint32_t>(opts_.block_bytes);
    st = write_index_file(final_idx, empty, file_bytes_);
  } else if (auto idx = read_index_file(journal_path(), true); !idx.ok()) {
    st = std::move(idx).error();
  } else if (idx->blocks.size() != idx_blocks_) {
    st = Error(fmt::format("journal holds {} of {} blocks", idx->blocks.size(), idx_blocks_));
  } else {
    st = write_index_file(final_idx, *idx, file_bytes_);
  }
  if (!st.ok())
    spdlog::warn("index for {}: {}; queries rebuild it", final_path_.filename().string(), st.error().message());
  ::unlink(journal_path().c_str());
}

// ---------------------------------------------------------------- batches

Status SegmentWriter::begin_batch(uint64_t spool_id, uint64_t seq,
                                  std::span<const InterfaceInfo> ifaces) {
  STORE_CHECK(!in_batch_, "begin_batch within a batch");
  TRAWL_TRY(settle(), "starting batch");
  if (rotation_due()) TRAWL_TRY(finish_segment(), "rotating segment");
  if (fd_ < 0) TRAWL_TRY(open_segment(), "opening segment");
  capture(batch_start_);
  batch_map_.clear();
  for (const auto& iface : ifaces) {
    auto it = std::find(idbs_.begin(), idbs_.end(), iface);
    if (it == idbs_.end()) {
      png::encode_idb(buf_, iface);
      idbs_.push_back(iface);
      it = idbs_.end() - 1;
    }
    batch_map_.push_back(static_cast<uint32_t>(it - idbs_.begin()));
  }
  in_batch_ = true;
  batch_spool_id_ = spool_id;
  batch_seq_ = seq;
  return ok_status();
}

void SegmentWriter::packet(const PacketView& p) {
  STORE_CHECK(in_batch_, "packet outside a batch");
  STORE_CHECK(p.iface < batch_map_.size(), "packet interface not in the batch's table");
  if (pending_comment_.empty()) [[likely]] {
    png::encode_epb(buf_, batch_map_[p.iface], p);
  } else {
    png::encode_epb(buf_, batch_map_[p.iface], p, pending_comment_);
    pending_comment_.clear();
  }
  if (opts_.index) indexer_.packet(idbs_[batch_map_[p.iface]].link_type, p.ts_ns, p.data);
  ++cur_.seg_packets;
  cur_.first_ts = std::min(cur_.first_ts, p.ts_ns);
  cur_.last_ts = std::max(cur_.last_ts, p.ts_ns);
  ++counters_.packets;
  counters_.bytes += p.data.size();
}

void SegmentWriter::stats(const InterfaceStats& s) {
  STORE_CHECK(in_batch_, "stats outside a batch");
  STORE_CHECK(s.iface < batch_map_.size(), "stats interface not in the batch's table");
  const uint32_t id = batch_map_[s.iface];
  if (s.agent_drops == 0) {
    png::encode_isb(buf_, id, s);
    return;
  }
  fmt::memory_buffer comment;
  fmt::format_to(std::back_inserter(comment),
                 "trawl: agent {} dropped {} packets on {} (spool policy) since capture start",
                 opts_.agent, s.agent_drops, idbs_[id].name);
  png::encode_isb(buf_, id, s, 0, {comment.data(), comment.size()});
}

void SegmentWriter::gap(const Gap& g) {
  STORE_CHECK(in_batch_, "gap outside a batch");
  STORE_CHECK(g.iface == 0xffff || g.iface < batch_map_.size(), "gap interface not in the batch's table");
  const uint32_t id = g.iface == 0xffff ? png::kAllInterfaces : batch_map_[g.iface];
  const std::string where =
      id == png::kAllInterfaces ? "all interfaces" : fmt::format("interface {}", idbs_[id].name);
  const std::string comment = fmt::format(
      "trawl gap: agent {} lost {} packets ({} bytes) on {} between {} and {} ({})", opts_.agent,
      g.packets, g.bytes, where, format_utc_ns(g.from_ns), format_utc_ns(g.to_ns),
      to_string(g.reason));
  png::encode_trawl_record(buf_,
                           png::GapRecord{id, g.reason, g.from_ns, g.to_ns, g.packets, g.bytes},
                           comment);
  png::encode_option(pending_comment_, png::kOptComment, trawl::as_bytes(comment));
}

Status SegmentWriter::end_batch() {
  STORE_CHECK(in_batch_, "end_batch outside a batch");
  png::encode_trawl_record(buf_, png::BatchMark{batch_spool_id_, batch_seq_});
  in_batch_ = false;
  cur_.spool_id = batch_spool_id_;
  cur_.last_seq = batch_seq_;
  ++cur_.batches;
  const uint64_t block_raw = raw_bytes_ + buf_.size() - indexer_.raw_offset();
  if (compressed_ && opts_.align_bytes && block_raw >= opts_.block_bytes) {
    // End the frame on an alignment boundary: once it is big enough, at the
    // first batch end that falls just short of one (or, for a frame 4x too
    // big, at the next one whatever it costs).
    if (auto st = flush(FlushMode::kFlush); !st.ok())
      return fail(std::move(st).error().with_context("ending batch"));
    const uint64_t to_boundary = (opts_.align_bytes - (file_bytes_ + 3) % opts_.align_bytes) % opts_.align_bytes;
    if (to_boundary <= kAlignSlackBytes || block_raw >= 4 * opts_.block_bytes) {
      if (auto st = write_out(zstd_frame_end(file_bytes_, opts_.align_bytes)); !st.ok())
        return fail(std::move(st).error().with_context("ending batch"));
      finish_block();
      frame_has_input_ = false;
      ZSTD_CCtx_reset(cctx_, ZSTD_reset_session_only);
    }
  } else if (block_raw >= opts_.block_bytes) {
    if (auto st = flush(FlushMode::kEnd); !st.ok())
      return fail(std::move(st).error().with_context("ending batch"));
  } else if (buf_.size() > opts_.write_buffer_bytes / 2) {
    if (auto st = flush(); !st.ok()) return fail(std::move(st).error().with_context("ending batch"));
  }
  return ok_status();
}

void SegmentWriter::abort_batch() {
  if (!in_batch_) return;
  restore(batch_start_);
  indexer_.restore(batch_start_.blk_mark);  // blocks only end between batches
  buf_.resize(batch_start_.size - raw_bytes_);  // nothing is written within a batch
  in_batch_ = false;
}

Status SegmentWriter::sync() {
  STORE_CHECK(!in_batch_, "sync within a batch");
  TRAWL_TRY(settle(), "sync");
  if (fd_ < 0) return ok_status();
  if (auto st = flush(FlushMode::kFlush); !st.ok())
    return fail(std::move(st).error().with_context("sync"));
  if (file_bytes_ != durable_.file && opts_.fsync) {
    if (::fdatasync(fd_) != 0)
      return fail(Error::from_errno("sync: fdatasync " + segment_label()));
  }
  if (!dir_synced_ && opts_.fsync) {
    if (auto st = fsync_dir(opts_.dir); !st.ok()) return fail(std::move(st).error().with_context("sync"));
    dir_synced_ = true;
  }
  write_journal();  // entries of blocks that are durable now
  capture(durable_);
  return ok_status();
}

Status SegmentWriter::tick() {
  STORE_CHECK(!in_batch_, "tick within a batch");
  TRAWL_TRY(settle(), "tick");
  if (rotation_due()) TRAWL_TRY(finish_segment(), "rotating segment");
  return ok_status();
}

Status SegmentWriter::close() {
  abort_batch();
  TRAWL_TRY(settle(), "closing segment writer");
  TRAWL_TRY(finish_segment(), "closing segment writer");
  return ok_status();
}

}  // namespace trawl::store
