// SegmentWriter: batches -> pcapng segments, with crash recovery.
//
// Per batch, on the collector's per-agent thread:
//   1. begin_batch: settle earlier failures -> rotate if due -> open lazily ->
//      IDBs for new interfaces
//   2. packet / stats / gap: encode into buf_ (memory only)
//   3. end_batch: BATCH MARK -> write(2) when the buffer is half full
//   4. sync: write -> fdatasync (-> fsync the directory once per segment)
// Any I/O error rolls back to the last durable point (see the header).
#include "store/segment_writer.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/bytes.h"
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

// The (spool_id, last_seq) stored in a sealed segment: its trailing SEAL
// record, read through the trailing block length; else a forward scan for
// the last BATCH MARK / SEAL.
std::optional<png::BatchMark> read_segment_state(const fs::path& path) {
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
  std::optional<png::BatchMark> last;
  while (reader->next() == png::PcapngReader::Next::kBlock) {
    const auto& b = reader->block();
    if (b.type != png::kNrbType && b.type != png::kCustomCopyType && b.type != png::kCustomNoCopyType)
      continue;
    auto rec = png::decode_trawl_record(b);
    if (!rec) continue;
    if (const auto* m = std::get_if<png::BatchMark>(&*rec)) last = *m;
    if (const auto* s = std::get_if<png::SealRecord>(&*rec)) last = png::BatchMark{s->spool_id, s->last_seq};
  }
  return last;
}

}  // namespace

// ---------------------------------------------------------------- open / recovery

SegmentWriter::SegmentWriter(SegmentOptions opts, const Clock& clock)
    : opts_(std::move(opts)), clock_(clock) {
  if (opts_.write_buffer_bytes < 4096) opts_.write_buffer_bytes = 4096;
  buf_.reserve(opts_.write_buffer_bytes + (64u << 10));
}

SegmentWriter::~SegmentWriter() {
  if (fd_ >= 0) {
    spdlog::warn("segment {} abandoned without close(); it is recovered at the next open",
                 part_path_.string());
    ::close(fd_);
  }
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

Status SegmentWriter::recover_part(const fs::path& part) {
  const std::string label = part.filename().string();
  uint64_t keep = 0, file_size = 0, batches = 0, packets = 0;
  uint64_t first = UINT64_MAX, last = 0;
  uint64_t b_packets = 0, b_first = UINT64_MAX, b_last = 0;  // batch in progress
  png::BatchMark mark;
  bool sealed = false;
  std::string stop = "clean end";
  {
    auto reader = png::PcapngReader::open_file(part);
    if (!reader.ok()) return std::move(reader).error();
    file_size = reader->input_size();
    for (bool more = true; more;) {
      switch (reader->next()) {
        case png::PcapngReader::Next::kEnd:
          more = false;
          break;
        case png::PcapngReader::Next::kCorrupt:
          stop = fmt::format("corrupt at offset {}: {}", reader->corrupt_offset(),
                             reader->corrupt_reason());
          more = false;
          break;
        case png::PcapngReader::Next::kBlock: {
          const auto& b = reader->block();
          if (const auto* epb = std::get_if<png::EpbView>(&b.view)) {
            uint64_t ts = reader->ts_ns(*epb);
            ++b_packets;
            b_first = std::min(b_first, ts);
            b_last = std::max(b_last, ts);
            break;
          }
          if (b.type != png::kNrbType && b.type != png::kCustomCopyType &&
              b.type != png::kCustomNoCopyType)
            break;
          auto rec = png::decode_trawl_record(b);
          if (!rec) break;
          if (const auto* m = std::get_if<png::BatchMark>(&*rec)) {
            mark = *m;
            ++batches;
            packets += b_packets;
            first = std::min(first, b_first);
            last = std::max(last, b_last);
            b_packets = 0;
            b_first = UINT64_MAX;
            b_last = 0;
            keep = reader->valid_end();
          } else if (std::holds_alternative<png::SealRecord>(*rec) && batches > 0) {
            sealed = true;
            keep = reader->valid_end();
            more = false;
          }
          break;
        }
      }
    }
  }  // unmapped before the file changes

  if (batches == 0) {
    spdlog::warn("recovery: {} holds no complete batch ({}); removing it", label, stop);
    if (::unlink(part.c_str()) != 0) return Error::from_errno("removing " + label);
    return fsync_dir(opts_.dir);
  }
  int fd = ::open(part.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("opening " + label);
  auto done = [&](Status st) {
    ::close(fd);
    return st;
  };
  if (keep < file_size && ::ftruncate(fd, static_cast<off_t>(keep)) != 0)
    return done(Error::from_errno("truncating " + label));
  if (!sealed) {
    std::vector<uint8_t> seal;
    png::encode_trawl_record(seal, png::SealRecord{mark.spool_id, mark.seq, packets,
                                                   packets ? first : 0, packets ? last : 0});
    if (auto st = write_all(fd, seal, keep, label); !st.ok()) return done(st);
  }
  if (::fdatasync(fd) != 0) return done(Error::from_errno("fdatasync " + label));
  ::close(fd);

  // The sealed name is the .part name without ".part"; bump it in the
  // (never expected) case that it exists already.
  fs::path final_path = part;
  final_path.replace_extension();
  auto parsed = parse_segment_file_name(opts_.agent, label);
  uint64_t start = parsed ? parsed->start_ns : last_start_ns_;
  while (fs::exists(final_path)) {
    start = std::max(start, last_start_ns_) + 1;
    last_start_ns_ = start;
    final_path = opts_.dir / segment_file_name(opts_.agent, start);
  }
  TRAWL_TRY(rename_no_replace(part, final_path), "sealing recovered segment");
  TRAWL_TRY(fsync_dir(opts_.dir), "sealing recovered segment");
  spdlog::info("recovery: sealed {} as {} with {} batches, {} packets; cut {} bytes ({})", label,
               final_path.filename().string(), batches, packets, file_size - keep,
               sealed ? "was sealed" : stop);
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
  s.size = file_bytes_ + buf_.size();
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
    if (::ftruncate(fd_, static_cast<off_t>(durable_.size)) != 0) {
      ++counters_.write_errors;
      return Error::from_errno("truncating " + segment_label() + " after a failed write");
    }
    truncate_pending_ = false;
    file_bytes_ = durable_.size;
    if (durable_.size == 0) discard_segment();  // nothing of it was durable
  }
  if (needs_recovery_) TRAWL_TRY(recover_directory(), "retrying recovery");
  return ok_status();
}

// ---------------------------------------------------------------- segments

Status SegmentWriter::open_segment() {
  STORE_CHECK(fd_ < 0 && buf_.empty(), "opening a segment while one is open");
  uint64_t start = std::max(clock_.wall_ns(), last_start_ns_ + 1);
  for (int attempt = 0;; ++attempt, ++start) {
    final_path_ = opts_.dir / segment_file_name(opts_.agent, start);
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
  dir_synced_ = false;
  truncate_pending_ = false;
  idbs_.clear();
  pending_comment_.clear();
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

void SegmentWriter::discard_segment() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  if (::unlink(part_path_.c_str()) != 0 && errno != ENOENT)
    spdlog::error("removing empty segment {}: {}", part_path_.string(), std::strerror(errno));
  buf_.clear();
  file_bytes_ = 0;
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
  if (auto st = flush(); !st.ok()) return fail(std::move(st).error().with_context("sealing"));
  if (::fdatasync(fd_) != 0) return fail(Error::from_errno("sealing: fdatasync " + label));
  ::close(fd_);
  fd_ = -1;
  buf_.clear();
  capture(durable_);  // everything is durable now, whatever the rename does
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

Status SegmentWriter::flush() {
  if (buf_.empty()) return ok_status();
  Status st = write_all(fd_, buf_, file_bytes_, segment_label(), &file_bytes_);
  if (!st.ok()) return st;
  buf_.clear();
  if (buf_.capacity() > 4 * opts_.write_buffer_bytes) {  // after one huge batch
    buf_.shrink_to_fit();
    buf_.reserve(opts_.write_buffer_bytes + (64u << 10));
  }
  return ok_status();
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
  if (buf_.size() > opts_.write_buffer_bytes / 2) {
    if (auto st = flush(); !st.ok()) return fail(std::move(st).error().with_context("ending batch"));
  }
  return ok_status();
}

void SegmentWriter::abort_batch() {
  if (!in_batch_) return;
  restore(batch_start_);
  buf_.resize(batch_start_.size - file_bytes_);  // nothing is written within a batch
  in_batch_ = false;
}

Status SegmentWriter::sync() {
  STORE_CHECK(!in_batch_, "sync within a batch");
  TRAWL_TRY(settle(), "sync");
  if (fd_ < 0) return ok_status();
  if (auto st = flush(); !st.ok()) return fail(std::move(st).error().with_context("sync"));
  if (file_bytes_ != durable_.size && opts_.fsync) {
    if (::fdatasync(fd_) != 0)
      return fail(Error::from_errno("sync: fdatasync " + segment_label()));
  }
  if (!dir_synced_ && opts_.fsync) {
    if (auto st = fsync_dir(opts_.dir); !st.ok()) return fail(std::move(st).error().with_context("sync"));
    dir_synced_ = true;
  }
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
