// Shared helpers for the spool tests: a temporary directory per test, an
// independent reader and writer of the on-disk format as docs/spool.md
// describes it (so the tests check the documented bytes, not the
// implementation's own parser and encoder, which they deliberately do not
// share), and deterministic payloads.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "agent/spool.h"
#include "core/bytes.h"

namespace trawl::agent {

inline void PrintTo(const EntryMeta& m, std::ostream* os) {
  *os << "{seq " << m.seq << ", packets " << m.packets << ", bytes " << m.packet_bytes << ", ts "
      << m.first_ts_ns << ".." << m.last_ts_ns << "}";
}

namespace test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/trawl-spool-XXXXXX";
    if (!mkdtemp(tmpl.data())) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path spool() const { return path_ / "spool"; }

 private:
  fs::path path_;
};

inline std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<uint8_t> out(fs::file_size(p));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

inline void write_file(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Files with the given extension in the directory, by name (= first seq).
inline std::vector<fs::path> files_with(const fs::path& dir, std::string_view ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ext) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Spool files in the directory, oldest (lowest first seq) first.
inline std::vector<fs::path> spool_files(const fs::path& dir) { return files_with(dir, ".spool"); }
// Acked files kept for reuse.
inline std::vector<fs::path> spare_files(const fs::path& dir) { return files_with(dir, ".spare"); }

// What the spool takes on disk: spool files and spares, whole.
inline uint64_t disk_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& p : spool_files(dir)) n += fs::file_size(p);
  for (const auto& p : spare_files(dir)) n += fs::file_size(p);
  return n;
}

struct DiskRecord {
  EntryMeta meta;
  std::vector<uint8_t> payload;
};
struct DiskFile {
  std::string name;
  uint32_t version = 0;
  uint32_t nonce = 0;  // version 2
  uint64_t spool_id = 0;
  uint64_t first_seq = 0;
  uint64_t size = 0;
  uint64_t end = 0;  // after the last valid record: what recovery keeps
  std::vector<DiskRecord> records;
  bool clean = true;  // every byte belongs to a valid header or record (end == size)
};

inline void put_le(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// A record's CRC32C as docs/spool.md defines it, over the record header's
// bytes 0..43 and the payload: as they are in version 1, preceded by the
// file's nonce (4 bytes, little-endian) in version 2. (Chained, which
// Crc32c.TableMatchesHardwareAndChains shows equals the concatenation.)
inline uint32_t record_crc(uint32_t version, uint32_t nonce, std::span<const uint8_t> header44,
                           std::span<const uint8_t> payload) {
  uint32_t crc = 0;
  if (version == 2) {
    uint8_t n[4];
    put_le(n, nonce, 4);
    crc = crc32c(n);
  }
  return crc32c(payload, crc32c(header44, crc));
}

// The bytes of a 40-byte file header and of a record, built by hand as
// docs/spool.md lays them out: for files the spool no longer writes
// (version 1) and for crafted ones.
inline std::vector<uint8_t> file_header_bytes(uint32_t version, uint32_t nonce, uint64_t spool_id,
                                              uint64_t first_seq) {
  std::vector<uint8_t> h(40, 0);
  std::memcpy(h.data(), "TRWLSPL1", 8);
  put_le(h.data() + 8, version, 4);
  put_le(h.data() + 16, spool_id, 8);
  put_le(h.data() + 24, first_seq, 8);
  put_le(h.data() + 32, version == 2 ? nonce : 0, 4);
  put_le(h.data() + 36, crc32c(std::span<const uint8_t>(h).first(36)), 4);
  return h;
}

inline std::vector<uint8_t> record_bytes(uint32_t version, uint32_t nonce, const EntryMeta& m,
                                         std::span<const uint8_t> payload) {
  std::vector<uint8_t> r(48, 0);
  put_le(r.data() + 0, 0x52575254, 4);
  put_le(r.data() + 4, payload.size(), 4);
  put_le(r.data() + 8, m.seq, 8);
  put_le(r.data() + 16, m.packet_bytes, 8);
  put_le(r.data() + 24, m.first_ts_ns, 8);
  put_le(r.data() + 32, m.last_ts_ns, 8);
  put_le(r.data() + 40, m.packets, 4);
  const uint32_t crc = record_crc(version, nonce, std::span<const uint8_t>(r).first(44), payload);
  put_le(r.data() + 44, crc, 4);
  r.insert(r.end(), payload.begin(), payload.end());
  return r;
}

// Parses one spool file exactly as docs/spool.md lays it out (version 1 or
// 2): records up to the first one that is short, bad, or whose seq does not
// increase (the first must be the header's first seq). What follows is a
// torn record, garbage, or the stale tail of a reused file.
inline DiskFile parse_spool_file(const fs::path& p) {
  DiskFile f;
  f.name = p.filename().string();
  auto bytes = read_file(p);
  f.size = bytes.size();
  ByteReader r(bytes);
  auto magic = r.str(8);
  f.version = r.u32le();
  r.u32le();
  f.spool_id = r.u64le();
  f.first_seq = r.u64le();
  f.nonce = r.u32le();
  uint32_t crc = r.u32le();
  if (!r.ok() || magic != "TRWLSPL1" || (f.version != 1 && f.version != 2) ||
      crc != crc32c(std::span<const uint8_t>(bytes).first(36))) {
    f.clean = false;
    return f;
  }
  f.end = r.position();
  while (!r.empty()) {
    size_t start = r.position();
    uint32_t rmagic = r.u32le();
    uint32_t len = r.u32le();
    DiskRecord rec;
    rec.meta.seq = r.u64le();
    rec.meta.packet_bytes = r.u64le();
    rec.meta.first_ts_ns = r.u64le();
    rec.meta.last_ts_ns = r.u64le();
    rec.meta.packets = r.u32le();
    uint32_t rcrc = r.u32le();
    auto payload = r.bytes(len);
    const uint64_t want_above = f.records.empty() ? f.first_seq - 1 : f.records.back().meta.seq;
    if (!r.ok() || rmagic != 0x52575254 || rec.meta.seq <= want_above ||
        (f.records.empty() && rec.meta.seq != f.first_seq) ||
        rcrc != record_crc(f.version, f.nonce, std::span<const uint8_t>(bytes).subspan(start, 44),
                           payload)) {
      f.clean = false;
      return f;
    }
    rec.payload.assign(payload.begin(), payload.end());
    f.records.push_back(std::move(rec));
    f.end = r.position();
  }
  return f;
}

struct DiskState {
  uint64_t generation = 0, spool_id = 0, last_seq = 0, acked_seq = 0;
};

// The newer valid slot of the state file.
inline std::optional<DiskState> parse_state(const fs::path& dir) {
  auto bytes = read_file(dir / "state");
  std::optional<DiskState> best;
  for (size_t slot = 0; slot < 2 && bytes.size() >= (slot + 1) * 64; ++slot) {
    auto b = std::span<const uint8_t>(bytes).subspan(slot * 64, 64);
    ByteReader r(b);
    auto magic = r.str(8);
    uint32_t version = r.u32le();
    r.u32le();
    DiskState s{r.u64le(), r.u64le(), r.u64le(), r.u64le()};
    r.skip(12);
    uint32_t crc = r.u32le();
    if (!r.ok() || magic != "TRWLSTA1" || version != 1 || crc != crc32c(b.first(60))) continue;
    if (!best || s.generation > best->generation) best = s;
  }
  return best;
}

// Deterministic payload for a seq (the kill -9 test checks content with it).
// A fixed pseudo-random pattern with the seq stamped every 512 bytes: copies
// at memcpy speed (the kill -9 test's child must spend its time writing, not
// generating) and still differs between any two seqs.
inline std::vector<uint8_t> payload_for(uint64_t seq, size_t n) {
  static const std::vector<uint8_t> pattern = [] {
    std::vector<uint8_t> p(4 << 20);
    uint64_t x = 0x243F6A8885A308D3ull;
    for (auto& b : p) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
    return p;
  }();
  std::vector<uint8_t> out(n);
  for (size_t off = 0; off < n; off += pattern.size())
    std::memcpy(out.data() + off, pattern.data(), std::min(pattern.size(), n - off));
  for (size_t off = 0; off < n; off += 512)
    for (size_t i = 0; i < 8 && off + i < n; ++i)
      out[off + i] = static_cast<uint8_t>(seq >> (8 * i));
  return out;
}

inline EntryMeta meta_for(uint64_t seq, size_t frame_bytes) {
  return EntryMeta{seq, static_cast<uint32_t>(seq % 1000 + 1), frame_bytes * 3 + seq,
                   seq * 1'000'000ull, seq * 1'000'000ull + 999};
}

}  // namespace test
}  // namespace trawl::agent
