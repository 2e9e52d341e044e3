// Index records: encode / decode / rebuild. Format in docs/storage.md.
#include "store/segment_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <zstd.h>

#include "core/bytes.h"
#include "store/crc32c.h"
#include "store/pcapng.h"

namespace trawl::store {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'T', 'R', 'A', 'W', 'L', 'I', 'D', 'X'};
constexpr uint32_t kRecBlock = 1;
constexpr uint32_t kRecEnd = 2;
constexpr uint32_t kMaxRecord = 64u << 20;
constexpr uint64_t kMaxRawBlock = 256u << 20;  // sanity cap when decoding one frame
constexpr uint32_t kZstdMagic = 0xFD2FB528;

void begin_record(ByteWriter& w, uint32_t type) {
  w.u32le(type);
  w.u32le(0);  // length, patched
}
void end_record(std::vector<uint8_t>& out, size_t start) {
  ByteWriter w(out);
  w.patch_u32le(start + 4, static_cast<uint32_t>(out.size() - start - 8));
  w.u32le(crc32c(std::span<const uint8_t>(out).subspan(start)));
}

// One flow record of a block's flow table (docs/storage.md).
void encode_flow(ByteWriter& w, const FlowKey& f) {
  w.u8(f.kind);
  w.u8(f.flags);
  w.u8(f.proto);
  w.u8(0);
  w.u16le(f.vlan);
  w.u16le(f.sport);
  w.u16le(f.dport);
  w.u32le(f.vni);
  w.bytes(f.src);
  w.bytes(f.dst);
}

}  // namespace

void encode_index_header(std::vector<uint8_t>& out, bool compressed, uint32_t block_bytes) {
  size_t start = out.size();
  ByteWriter w(out);
  w.bytes({reinterpret_cast<const uint8_t*>(kMagic), 8});
  w.u16le(kIndexVersion);
  w.u16le(compressed ? 1 : 0);
  w.u32le(block_bytes);
  w.u64le(0);
  w.u32le(0);
  w.u32le(crc32c(std::span<const uint8_t>(out).subspan(start, 28)));
}

namespace {
uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 33);
}
void bloom_set(std::array<uint8_t, FlowSummary::kBloomBytes>& b, uint64_t h) {
  for (int i = 0; i < 3; ++i) {
    uint64_t bit = (h >> (i * 21)) % (FlowSummary::kBloomBytes * 8);
    b[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
  }
}
bool bloom_test(const std::array<uint8_t, FlowSummary::kBloomBytes>& b, uint64_t h) {
  for (int i = 0; i < 3; ++i) {
    uint64_t bit = (h >> (i * 21)) % (FlowSummary::kBloomBytes * 8);
    if (!(b[bit / 8] & (1u << (bit % 8)))) return false;
  }
  return true;
}
uint64_t addr_hash(uint8_t family, const std::array<uint8_t, 16>& a) {
  uint64_t x, y;
  std::memcpy(&x, a.data(), 8);
  std::memcpy(&y, a.data() + 8, 8);
  return mix(x ^ mix(y ^ family));
}
}  // namespace

void FlowSummary::add(const FlowKey& f) {
  kinds |= 1u << (f.kind & 31);
  if (f.kind == FlowKey::kUnknown) flags |= kHasUnknown;
  if (f.flags & FlowKey::kL4Inexact) flags |= kHasInexact;
  if (f.kind == FlowKey::kNonIp && (f.sport == 0x0806 || f.sport == 0x8035) && !(f.flags & FlowKey::kArpAddrs))
    flags |= kHasArpNoAddr;
  if (f.kind == FlowKey::kIpv4 || f.kind == FlowKey::kIpv6) protos[f.proto / 8] |= static_cast<uint8_t>(1u << (f.proto % 8));
  const uint8_t fam = f.kind == FlowKey::kIpv6 ? 6 : 4;
  if (f.kind == FlowKey::kIpv4 || f.kind == FlowKey::kIpv6 || (f.flags & FlowKey::kArpAddrs)) {
    bloom_set(addrs, addr_hash(fam, f.src));
    bloom_set(addrs, addr_hash(fam, f.dst));
  }
  if (f.kind == FlowKey::kIpv4 || f.kind == FlowKey::kIpv6) {
    bloom_set(ports, mix(0x100000u + f.sport));
    bloom_set(ports, mix(0x100000u + f.dport));
  }
}

bool FlowSummary::may_have_addr(uint8_t family, const std::array<uint8_t, 16>& a) const {
  return bloom_test(addrs, addr_hash(family, a));
}
bool FlowSummary::may_have_port(uint16_t p) const { return bloom_test(ports, mix(0x100000u + p)); }

FlowKey decode_flow(std::span<const uint8_t, 46> b) {
  FlowKey f;
  ByteReader r(b);
  f.kind = r.u8();
  f.flags = r.u8();
  f.proto = r.u8();
  r.u8();
  f.vlan = r.u16le();
  f.sport = r.u16le();
  f.dport = r.u16le();
  f.vni = r.u32le();
  std::memcpy(f.src.data(), b.data() + 14, 16);
  std::memcpy(f.dst.data(), b.data() + 30, 16);
  return f;
}

uint32_t flow_table_crc(std::span<const uint8_t> bytes) { return crc32c(bytes); }

std::vector<FlowKey> IndexBlock::decoded_flows() const {
  std::vector<FlowKey> out;
  for_each_flow([&](const FlowKey& f) { out.push_back(f); });
  return out;
}

bool IndexBlock::operator==(const IndexBlock& o) const {
  return file_offset == o.file_offset && file_size == o.file_size && raw_offset == o.raw_offset &&
         raw_size == o.raw_size && first_ts == o.first_ts && last_ts == o.last_ts && packets == o.packets &&
         data_crc == o.data_crc && flags == o.flags && new_interfaces == o.new_interfaces &&
         summary == o.summary && decoded_flows() == o.decoded_flows();
}

void encode_index_block(std::vector<uint8_t>& out, const IndexBlock& b, uint64_t flow_table_offset) {
  // The record checksum covers everything but the flow table, which has a
  // checksum of its own: a query checks the summary of every block but
  // reads the flows of few.
  std::vector<uint8_t> table;
  uint32_t count = 0;
  if (!b.flows.empty()) {
    ByteWriter t(table);
    for (const auto& f : b.flows) encode_flow(t, f);
    count = static_cast<uint32_t>(b.flows.size());
  } else {
    table.assign(b.flow_bytes.begin(), b.flow_bytes.end());
    count = b.flow_count;
  }
  size_t start = out.size();
  ByteWriter w(out);
  begin_record(w, kRecBlock);
  w.u64le(b.file_offset);
  w.u64le(b.file_size);
  w.u64le(b.raw_offset);
  w.u64le(b.raw_size);
  w.u64le(b.first_ts);
  w.u64le(b.last_ts);
  w.u32le(b.packets);
  w.u32le(b.data_crc);
  w.u32le(b.flags);
  w.u32le(static_cast<uint32_t>(b.new_interfaces.size()));
  w.u32le(count);
  w.u32le(crc32c(table));
  w.u64le(flow_table_offset);
  w.u32le(b.summary.kinds);
  w.u32le(b.summary.flags);
  w.bytes(b.summary.protos);
  w.bytes(b.summary.addrs);
  w.bytes(b.summary.ports);
  for (const auto& i : b.new_interfaces) {
    w.u16le(i.link_type);
    w.u32le(i.snaplen);
    w.u16le(static_cast<uint16_t>(std::min<size_t>(i.name.size(), 0xFFFF)));
    w.bytes(as_bytes(std::string_view(i.name).substr(0, 0xFFFF)));
  }
  const size_t head_end = out.size();
  if (flow_table_offset == 0) w.bytes(table);  // else the caller places it there
  // Length covers everything; the trailing checksum covers the head only.
  w.patch_u32le(start + 4, static_cast<uint32_t>(out.size() - start - 8));
  w.u32le(crc32c(std::span<const uint8_t>(out).subspan(start, head_end - start)));
}

void encode_index_end(std::vector<uint8_t>& out, uint64_t segment_size, uint64_t blocks,
                      uint64_t packets) {
  size_t start = out.size();
  ByteWriter w(out);
  begin_record(w, kRecEnd);
  w.u64le(segment_size);
  w.u64le(blocks);
  w.u64le(packets);
  end_record(out, start);
}

namespace {

// Fills b from a BLOCK payload; *head_len = bytes before the flow table.
bool decode_block_record(std::span<const uint8_t> p, IndexBlock& b, size_t* head_len,
                         std::span<const uint8_t> file) {
  ByteReader r(p);
  b.file_offset = r.u64le();
  b.file_size = r.u64le();
  b.raw_offset = r.u64le();
  b.raw_size = r.u64le();
  b.first_ts = r.u64le();
  b.last_ts = r.u64le();
  b.packets = r.u32le();
  b.data_crc = r.u32le();
  b.flags = r.u32le();
  uint32_t nif = r.u32le();
  uint32_t nflows = r.u32le();
  b.flow_crc = r.u32le();
  const uint64_t table_at = r.u64le();
  b.summary.kinds = r.u32le();
  b.summary.flags = r.u32le();
  auto protos = r.bytes(32);
  auto addrs = r.bytes(FlowSummary::kBloomBytes);
  auto ports = r.bytes(FlowSummary::kBloomBytes);
  if (!r.ok() || nif > p.size() / 8 || nflows > (table_at ? file.size() : p.size()) / 46) return false;
  std::memcpy(b.summary.protos.data(), protos.data(), 32);
  std::memcpy(b.summary.addrs.data(), addrs.data(), FlowSummary::kBloomBytes);
  std::memcpy(b.summary.ports.data(), ports.data(), FlowSummary::kBloomBytes);
  b.new_interfaces.resize(nif);
  for (auto& i : b.new_interfaces) {
    i.link_type = r.u16le();
    i.snaplen = r.u32le();
    uint16_t n = r.u16le();
    auto name = r.bytes(n);
    if (!r.ok()) return false;
    i.name.assign(name.begin(), name.end());
  }
  *head_len = p.size() - r.remaining();
  b.flow_count = nflows;
  if (table_at == 0) {
    b.flow_bytes = r.bytes(uint64_t{nflows} * 46);
  } else {
    const uint64_t n = uint64_t{nflows} * 46;
    if (table_at > file.size() || n > file.size() - table_at) return false;
    b.flow_bytes = file.subspan(table_at, n);
  }
  return r.ok() && r.remaining() == 0;
}

}  // namespace

Result<SegmentIndex> decode_index(std::span<const uint8_t> bytes, bool journal) {
  SegmentIndex idx;
  if (bytes.size() < kIndexHeaderBytes) return Error("index too short for its header");
  if (std::memcmp(bytes.data(), kMagic, 8) != 0) return Error("not a trawl index (bad magic)");
  ByteReader h(bytes.first(kIndexHeaderBytes));
  h.skip(8);
  uint16_t version = h.u16le();
  uint16_t flags = h.u16le();
  idx.block_bytes = h.u32le();
  h.skip(12);
  uint32_t crc = h.u32le();
  if (crc != crc32c(bytes.first(28))) return Error("index header checksum mismatch");
  if (version != kIndexVersion) return Error(fmt::format("unsupported index version {}", version));
  idx.compressed = flags & 1;
  size_t pos = kIndexHeaderBytes;
  {  // count the records first: IndexBlock is ~2 KiB, avoid regrowing
    size_t n = 0;
    for (size_t p = pos; p + 12 <= bytes.size() && n < (1u << 24); ++n) {
      uint32_t len = ByteReader(bytes.subspan(p + 4, 4)).u32le();
      if (len > kMaxRecord) break;
      p += 12 + uint64_t{len};
    }
    idx.blocks.reserve(n);
  }
  uint64_t expect_off = 0;
  while (pos < bytes.size()) {
    ByteReader r(bytes.subspan(pos));
    uint32_t type = r.u32le();
    uint32_t len = r.u32le();
    if (!r.ok() || len > kMaxRecord || bytes.size() - pos < 12 + uint64_t{len}) {
      if (journal) return idx;  // being appended
      return Error(fmt::format("index truncated at offset {}", pos));
    }
    auto rec = bytes.subspan(pos, 8 + len);
    uint32_t rcrc = ByteReader(bytes.subspan(pos + 8 + len, 4)).u32le();
    auto payload = rec.subspan(8);
    const uint64_t at = pos;
    pos += 12 + len;
    if (type == kRecBlock) {
      IndexBlock b;
      size_t head = 0;
      if (!decode_block_record(payload, b, &head, bytes) || rcrc != crc32c(rec.first(8 + head)))
        return Error(fmt::format("index record at offset {}: checksum mismatch or malformed block", at));
      if (b.file_offset < expect_off)
        return Error(fmt::format("index record at offset {}: blocks out of order", pos - 12 - len));
      expect_off = b.file_offset + b.file_size;
      idx.packets += b.packets;
      idx.blocks.push_back(std::move(b));
    } else if (rcrc != crc32c(rec)) {
      return Error(fmt::format("index record at offset {}: checksum mismatch", at));
    } else if (type == kRecEnd) {
      ByteReader e(payload);
      idx.segment_size = e.u64le();
      uint64_t nblocks = e.u64le();
      e.u64le();
      if (!e.ok() || nblocks != idx.blocks.size()) return Error("index END record does not match its blocks");
      idx.complete = true;
      break;  // a sealed index keeps its flow tables after END
    }  // unknown record types are skipped (forward compatible)
  }
  if (!journal && !idx.complete) return Error("index has no END record");
  return idx;
}

Result<SegmentIndex> read_index_file(const fs::path& path, bool journal) {
  auto f = pcapng::MappedFile::open(path);
  if (!f.ok()) return std::move(f).error();
  auto file = std::make_shared<pcapng::MappedFile>(std::move(*f));
  file->advise_random();  // a query reads every block's head but few flow tables
  auto idx = decode_index(file->bytes(), journal);
  if (!idx.ok()) return std::move(idx).error().with_context(path.filename().string());
  idx->backing = file;  // flow_bytes point into it
  return idx;
}

std::vector<uint8_t> encode_sealed_index(const SegmentIndex& idx, uint64_t segment_size) {
  // Heads first (with the offsets of their flow tables), END, then the flow
  // tables: a query reads a few contiguous pages of heads, not the tables.
  auto encode_heads = [&](std::vector<uint8_t>& out, uint64_t tables_at) {
    encode_index_header(out, idx.compressed, idx.block_bytes);
    uint64_t at = tables_at;
    for (const auto& b : idx.blocks) {
      encode_index_block(out, b, at);
      at += uint64_t{b.flows.empty() ? b.flow_count : static_cast<uint32_t>(b.flows.size())} * 46;
    }
    encode_index_end(out, segment_size, idx.blocks.size(), idx.packets);
  };
  std::vector<uint8_t> out;
  encode_heads(out, 1);  // sizes do not depend on the offsets
  const uint64_t tables_at = out.size();
  out.clear();
  encode_heads(out, tables_at);
  ByteWriter w(out);
  for (const auto& b : idx.blocks) {
    if (b.flows.empty()) {
      w.bytes(b.flow_bytes);
      continue;
    }
    for (const auto& f : b.flows) encode_flow(w, f);
  }
  return out;
}

Status write_index_file(const fs::path& path, const SegmentIndex& idx, uint64_t segment_size) {
  std::vector<uint8_t> out = encode_sealed_index(idx, segment_size);
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error::from_errno("creating " + tmp.string());
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Error::from_errno("writing " + tmp.string(), err);
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error::from_errno("renaming " + tmp.string(), err);
  }
  return ok_status();
}

// ---------------------------------------------------------------- BlockIndexer

void BlockIndexer::start(uint64_t file_offset, uint64_t raw_offset) {
  block_ = IndexBlock{};
  block_.file_offset = file_offset;
  block_.raw_offset = raw_offset;
  flows_.clear();
  pending_n_ = 0;
}

IndexBlock BlockIndexer::finish(uint64_t file_end, uint64_t raw_end, uint32_t data_crc) {
  add_pending_flows();
  IndexBlock b = std::move(block_);
  b.file_size = file_end - b.file_offset;
  b.raw_size = raw_end - b.raw_offset;
  b.data_crc = data_crc;
  if (flows_.overflowed()) b.flags |= IndexBlock::kAllFlows;
  b.flows = flows_.keys();
  for (const auto& f : b.flows) b.summary.add(f);
  block_ = IndexBlock{};
  return b;
}

// ---------------------------------------------------------------- decoding blocks

namespace {

// Streams a zstd input through the decoder until it ends or fails; appends
// the output. Returns the input bytes consumed and whether a frame error
// happened (as opposed to running out of input).
struct Decoded {
  size_t consumed = 0;
  bool error = false;
  std::string why;
  bool frame_ended = false;
};
Decoded zstd_decode(std::span<const uint8_t> in, std::vector<uint8_t>& out, uint64_t max_out,
                    bool one_frame) {
  Decoded d;
  ZSTD_DStream* ds = ZSTD_createDStream();
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  size_t base = out.size();
  for (;;) {
    if (out.size() - base >= max_out) {
      d.error = true;
      d.why = "decoded block exceeds the size limit";
      break;
    }
    size_t have = out.size();
    out.resize(have + (256u << 10));
    ZSTD_outBuffer ob{out.data() + have, 256u << 10, 0};
    size_t rc = ZSTD_decompressStream(ds, &ob, &ib);
    out.resize(have + ob.pos);
    if (ZSTD_isError(rc)) {
      d.error = true;
      d.why = ZSTD_getErrorName(rc);
      break;
    }
    if (rc == 0) {
      d.frame_ended = true;
      if (one_frame || ib.pos == ib.size) break;
      continue;
    }
    if (ib.pos == ib.size && ob.pos < ob.size) break;  // needs more input
  }
  d.consumed = ib.pos;
  ZSTD_freeDStream(ds);
  return d;
}

uint32_t read_u32le(std::span<const uint8_t> s, size_t off) {
  return ByteReader(s.subspan(off, 4)).u32le();
}

}  // namespace

Result<std::vector<uint8_t>> decode_block_bytes(std::span<const uint8_t> seg, bool compressed,
                                                const IndexBlock& b) {
  if (b.file_offset > seg.size() || b.file_size > seg.size() - b.file_offset)
    return Error(fmt::format("damaged block at offset {}: beyond the end of the segment ({} bytes)",
                             b.file_offset, seg.size()));
  auto stored = seg.subspan(b.file_offset, b.file_size);
  if (b.flags & IndexBlock::kDamaged)
    return Error(fmt::format("damaged block at offset {}: undecodable", b.file_offset));
  if (crc32c(stored) != b.data_crc)
    return Error(fmt::format("damaged block at offset {}: checksum mismatch", b.file_offset));
  std::vector<uint8_t> out;
  if (!compressed) {
    out.assign(stored.begin(), stored.end());
    return out;
  }
  out.reserve(b.raw_size);
  auto d = zstd_decode(stored, out, std::max<uint64_t>(b.raw_size, 1) , false);
  if (d.error || !d.frame_ended || out.size() != b.raw_size)
    return Error(fmt::format("damaged block at offset {}: {}", b.file_offset,
                             d.error ? d.why : "decoded size differs from the index"));
  return out;
}

std::vector<uint8_t> decode_tail(std::span<const uint8_t> seg, bool compressed, uint64_t offset) {
  std::vector<uint8_t> out;
  if (offset >= seg.size()) return out;
  auto in = seg.subspan(offset);
  if (!compressed) {
    out.assign(in.begin(), in.end());
    return out;
  }
  zstd_decode(in, out, kMaxRawBlock, false);
  return out;
}

// ---------------------------------------------------------------- rebuild

namespace {

// Feeds one block's pcapng bytes to an indexer; `ifaces` carries the
// section's interfaces across blocks. Returns false if the bytes are not
// whole, valid pcapng blocks.
bool index_pcapng(std::span<const uint8_t> raw, std::vector<IndexInterface>& ifaces,
                  BlockIndexer& ix) {
  std::vector<pcapng::PcapngReader::Interface> start;
  for (const auto& i : ifaces) start.push_back({i.link_type, i.snaplen, i.name, 9});
  pcapng::PcapngReader r(raw, std::move(start));
  for (;;) {
    switch (r.next()) {
      case pcapng::PcapngReader::Next::kEnd:
        return true;
      case pcapng::PcapngReader::Next::kCorrupt:
        return false;
      case pcapng::PcapngReader::Next::kBlock:
        break;
    }
    const auto& b = r.block();
    if (b.type == pcapng::kShbType) {
      ifaces.clear();
    } else if (const auto* idb = std::get_if<pcapng::IdbView>(&b.view)) {
      IndexInterface i{idb->link_type, idb->snaplen, std::string(idb->name())};
      ifaces.push_back(i);
      ix.interface(i);
    } else if (const auto* epb = std::get_if<pcapng::EpbView>(&b.view)) {
      ix.packet(r.interfaces()[epb->interface_id].link_type, r.ts_ns(*epb), epb->data);
    }
  }
}

}  // namespace

SegmentIndex rebuild_index(std::span<const uint8_t> seg, bool compressed, uint32_t block_bytes) {
  SegmentIndex idx;
  idx.compressed = compressed;
  idx.block_bytes = block_bytes;
  std::vector<IndexInterface> ifaces;
  BlockIndexer ix;
  if (compressed) {
    uint64_t off = 0;
    std::vector<uint8_t> raw;
    uint64_t raw_off = 0;
    while (off + 4 <= seg.size()) {
      auto rest = seg.subspan(off);
      size_t n = read_u32le(rest, 0) == kZstdMagic ? ZSTD_findFrameCompressedSize(rest.data(), rest.size())
                                                   : static_cast<size_t>(-1);
      ix.start(off, raw_off);
      bool ok = false;
      if (!ZSTD_isError(n)) {
        raw.clear();
        auto d = zstd_decode(rest.first(n), raw, kMaxRawBlock, true);
        auto saved = ifaces;
        ok = !d.error && d.frame_ended && index_pcapng(raw, ifaces, ix);
        if (!ok) ifaces = std::move(saved);
      } else {
        // Find the next frame; none: an unfinished tail (or damage to the end).
        size_t next = 0;
        for (size_t i = 1; i + 4 <= rest.size(); ++i)
          if (read_u32le(rest, i) == kZstdMagic) {
            next = i;
            break;
          }
        if (next == 0) break;
        n = next;
      }
      auto stored = rest.first(n);
      IndexBlock b = ix.finish(off + n, raw_off + (ok ? raw.size() : 0), crc32c(stored));
      if (!ok) {
        b.flags |= IndexBlock::kDamaged | IndexBlock::kAllFlows;
        b.new_interfaces.clear();
        b.flows.clear();
        b.summary = {};
      }
      raw_off += b.raw_size;
      idx.packets += b.packets;
      idx.blocks.push_back(std::move(b));
      off += n;
    }
    return idx;
  }
  // Plain pcapng: cut at batch marks every ~block_bytes.
  pcapng::PcapngReader r(seg);
  ix.start(0, 0);
  uint64_t block_start = 0;
  for (bool more = true; more;) {
    switch (r.next()) {
      case pcapng::PcapngReader::Next::kEnd:
      case pcapng::PcapngReader::Next::kCorrupt:
        more = false;
        continue;
      case pcapng::PcapngReader::Next::kBlock:
        break;
    }
    const auto& b = r.block();
    if (const auto* idb = std::get_if<pcapng::IdbView>(&b.view)) {
      ix.interface({idb->link_type, idb->snaplen, std::string(idb->name())});
    } else if (const auto* epb = std::get_if<pcapng::EpbView>(&b.view)) {
      ix.packet(r.interfaces()[epb->interface_id].link_type, r.ts_ns(*epb), epb->data);
    } else if (b.type == pcapng::kNrbType) {
      auto rec = pcapng::decode_trawl_record(b);
      if (rec && !std::holds_alternative<pcapng::GapRecord>(*rec)) {
        uint64_t end = r.valid_end();
        bool seal = std::holds_alternative<pcapng::SealRecord>(*rec);
        if (end - block_start >= block_bytes || seal) {
          auto blk = ix.finish(end, end, crc32c(seg.subspan(block_start, end - block_start)));
          idx.packets += blk.packets;
          idx.blocks.push_back(std::move(blk));
          block_start = end;
          ix.start(end, end);
        }
      }
    }
  }
  // Batches after the last cut and before the valid end form a final block
  // only when they end at a batch mark; the rest is the tail.
  return idx;
}

}  // namespace trawl::store
