// pcapng block encoding/decoding; layout per draft-ietf-opsawg-pcapng.
#include "store/pcapng.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "core/bytes.h"

namespace trawl::store::pcapng {
namespace {

__extension__ typedef unsigned __int128 u128;

inline void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}
inline void put64(uint8_t* p, uint64_t v) {
  put32(p, static_cast<uint32_t>(v));
  put32(p + 4, static_cast<uint32_t>(v >> 32));
}
inline void append(std::vector<uint8_t>& out, const uint8_t* p, size_t n) {
  out.insert(out.end(), p, p + n);
}
inline void append_u32(std::vector<uint8_t>& out, uint32_t v) {
  uint8_t b[4];
  put32(b, v);
  append(out, b, 4);
}
inline size_t pad4(size_t n) { return (4 - n % 4) % 4; }

// Block framing: header now, total length patched in at the end.
inline size_t begin_block(std::vector<uint8_t>& out, uint32_t type) {
  size_t at = out.size();
  uint8_t h[8];
  put32(h, type);
  put32(h + 4, 0);
  append(out, h, 8);
  return at;
}
inline void end_block(std::vector<uint8_t>& out, size_t at) {
  auto total = static_cast<uint32_t>(out.size() - at + 4);
  append_u32(out, total);
  put32(out.data() + at + 4, total);
}

inline void option_str(std::vector<uint8_t>& out, uint16_t code, std::string_view s) {
  if (!s.empty()) encode_option(out, code, as_bytes(s));
}
inline void option_u64(std::vector<uint8_t>& out, uint16_t code, uint64_t v) {
  uint8_t b[8];
  put64(b, v);
  encode_option(out, code, {b, 8});
}
// pcapng timestamps are two u32 words: high, then low.
inline void option_ts(std::vector<uint8_t>& out, uint16_t code, uint64_t ts) {
  uint8_t b[8];
  put32(b, static_cast<uint32_t>(ts >> 32));
  put32(b + 4, static_cast<uint32_t>(ts));
  encode_option(out, code, {b, 8});
}
inline void end_of_options(std::vector<uint8_t>& out) { append_u32(out, 0); }

constexpr size_t kTrawlHeaderBytes = 8;  // PEN, type, version, reserved
constexpr size_t kBatchFields = 16;
constexpr size_t kGapFields = 40;
constexpr size_t kSealFields = 40;

}  // namespace

// ---------------------------------------------------------------- encoding

void encode_option(std::vector<uint8_t>& out, uint16_t code, std::span<const uint8_t> value) {
  // Option lengths are 16 bits; longer values (only ever comments) are cut.
  size_t n = std::min<size_t>(value.size(), 0xFFFF);
  uint8_t h[4];
  put16(h, code);
  put16(h + 2, static_cast<uint16_t>(n));
  append(out, h, 4);
  append(out, value.data(), n);
  out.insert(out.end(), pad4(n), 0);
}

void encode_shb(std::vector<uint8_t>& out, const ShbInfo& info) {
  size_t at = begin_block(out, kShbType);
  uint8_t f[16];
  put32(f, kByteOrderMagic);
  put16(f + 4, 1);
  put16(f + 6, 0);
  put64(f + 8, ~uint64_t{0});  // section length unknown (-1)
  append(out, f, 16);
  if (!info.hardware.empty() || !info.os.empty() || !info.userappl.empty() ||
      !info.comment.empty()) {
    option_str(out, kOptComment, info.comment);
    option_str(out, kShbHardware, info.hardware);
    option_str(out, kShbOs, info.os);
    option_str(out, kShbUserAppl, info.userappl);
    end_of_options(out);
  }
  end_block(out, at);
}

void encode_idb(std::vector<uint8_t>& out, const InterfaceInfo& iface) {
  size_t at = begin_block(out, kIdbType);
  uint8_t f[8];
  put16(f, iface.link_type);
  put16(f + 2, 0);
  put32(f + 4, iface.snaplen);
  append(out, f, 8);
  option_str(out, kIfName, iface.name);
  const uint8_t tsresol = 9;
  encode_option(out, kIfTsresol, {&tsresol, 1});
  end_of_options(out);
  end_block(out, at);
}

void encode_epb(std::vector<uint8_t>& out, uint32_t interface_id, const PacketView& p,
                std::span<const uint8_t> extra_options) {
  const size_t caplen = p.data.size();
  const size_t pad = pad4(caplen);
  const size_t opt_len = extra_options.empty() ? 0 : extra_options.size() + 4;
  const auto total = static_cast<uint32_t>(32 + caplen + pad + opt_len);
  // Header and trailer are written in place: built on the stack and copied,
  // the copy's wide loads over the byte stores stalled once per packet.
  size_t at = out.size();
  out.resize(at + 28);
  uint8_t* h = out.data() + at;
  put32(h, kEpbType);
  put32(h + 4, total);
  put32(h + 8, interface_id);
  put32(h + 12, static_cast<uint32_t>(p.ts_ns >> 32));
  put32(h + 16, static_cast<uint32_t>(p.ts_ns));
  put32(h + 20, static_cast<uint32_t>(caplen));
  put32(h + 24, p.orig_len);
  append(out, p.data.data(), caplen);
  if (opt_len == 0) {
    at = out.size();
    out.resize(at + pad + 4);  // zero padding, then the length
    put32(out.data() + at + pad, total);
  } else {
    out.resize(out.size() + pad);
    append(out, extra_options.data(), extra_options.size());
    at = out.size();
    out.resize(at + 8);  // opt_endofopt (4 zero bytes), then the length
    put32(out.data() + at + 4, total);
  }
}

void encode_isb(std::vector<uint8_t>& out, uint32_t interface_id, const InterfaceStats& s,
                uint64_t start_ns, std::string_view comment) {
  size_t at = begin_block(out, kIsbType);
  uint8_t f[12];
  put32(f, interface_id);
  put32(f + 4, static_cast<uint32_t>(s.ts_ns >> 32));
  put32(f + 8, static_cast<uint32_t>(s.ts_ns));
  append(out, f, 12);
  if (start_ns != 0) option_ts(out, kIsbStartTime, start_ns);
  option_ts(out, kIsbEndTime, s.ts_ns);
  option_u64(out, kIsbIfRecv, s.received);
  option_u64(out, kIsbIfDrop, s.if_drops);
  option_u64(out, kIsbOsDrop, s.kernel_drops);
  if (s.received >= s.kernel_drops && s.received - s.kernel_drops >= s.agent_drops)
    option_u64(out, kIsbUsrDeliv, s.received - s.kernel_drops - s.agent_drops);
  option_str(out, kOptComment, comment);
  end_of_options(out);
  end_block(out, at);
}

void encode_trawl_record(std::vector<uint8_t>& out, const TrawlRecord& rec,
                         std::string_view comment) {
  // Value of the custom option: PEN, type, version, reserved u16, fields.
  uint8_t v[kTrawlHeaderBytes + 40];
  put32(v, kTrawlPen);
  v[5] = kTrawlRecordVersion;
  put16(v + 6, 0);
  uint8_t* f = v + kTrawlHeaderBytes;
  size_t n = kTrawlHeaderBytes;
  uint16_t code = kOptCustomBinNoCopy;
  if (const auto* m = std::get_if<BatchMark>(&rec)) {
    v[4] = static_cast<uint8_t>(TrawlRecordType::kBatchMark);
    put64(f, m->spool_id);
    put64(f + 8, m->seq);
    n += kBatchFields;
  } else if (const auto* g = std::get_if<GapRecord>(&rec)) {
    v[4] = static_cast<uint8_t>(TrawlRecordType::kGap);
    put32(f, g->interface_id);
    f[4] = static_cast<uint8_t>(g->reason);
    f[5] = f[6] = f[7] = 0;
    put64(f + 8, g->from_ns);
    put64(f + 16, g->to_ns);
    put64(f + 24, g->packets);
    put64(f + 32, g->bytes);
    n += kGapFields;
    code = kOptCustomBinCopy;  // a gap stays true when the block is copied elsewhere
  } else {
    const auto& s = std::get<SealRecord>(rec);
    v[4] = static_cast<uint8_t>(TrawlRecordType::kSeal);
    put64(f, s.spool_id);
    put64(f + 8, s.last_seq);
    put64(f + 16, s.packets);
    put64(f + 24, s.first_ts_ns);
    put64(f + 32, s.last_ts_ns);
    n += kSealFields;
  }
  size_t at = begin_block(out, kNrbType);
  append_u32(out, 0);  // nrb_record_end: no name records
  option_str(out, kOptComment, comment);
  encode_option(out, code, {v, n});
  end_of_options(out);
  end_block(out, at);
}

// ---------------------------------------------------------------- options

bool OptionReader::next(OptionView& opt) {
  if (!ok_ || done_) return false;
  const size_t left = data_.size() - pos_;
  if (left == 0) {
    done_ = true;
    return false;
  }
  ByteReader r(data_.subspan(pos_));
  uint16_t code = r.u16le();
  uint16_t len = r.u16le();
  if (!r.ok()) {
    ok_ = false;
    return false;
  }
  if (code == kOptEndOfOpt) {
    done_ = true;
    return false;
  }
  const size_t padded = size_t{len} + pad4(len);
  if (left - 4 < padded) {
    ok_ = false;
    return false;
  }
  opt.code = code;
  opt.value = data_.subspan(pos_ + 4, len);
  pos_ += 4 + padded;
  return true;
}

bool options_valid(std::span<const uint8_t> options) {
  OptionReader r(options);
  OptionView o;
  while (r.next(o)) {
  }
  return r.ok();
}

std::optional<std::string_view> find_string_option(std::span<const uint8_t> options,
                                                   uint16_t code) {
  OptionReader r(options);
  OptionView o;
  while (r.next(o)) {
    if (o.code == code)
      return std::string_view(reinterpret_cast<const char*>(o.value.data()), o.value.size());
  }
  return std::nullopt;
}

std::optional<uint64_t> find_u64_option(std::span<const uint8_t> options, uint16_t code) {
  OptionReader r(options);
  OptionView o;
  while (r.next(o)) {
    if (o.code == code && o.value.size() == 8) return ByteReader(o.value).u64le();
  }
  return std::nullopt;
}

std::string_view IdbView::name() const {
  return find_string_option(options, kIfName).value_or(std::string_view{});
}

uint8_t IdbView::tsresol() const {
  OptionReader r(options);
  OptionView o;
  while (r.next(o)) {
    if (o.code == kIfTsresol && !o.value.empty()) return o.value[0];
  }
  return 6;
}

uint64_t ts_to_ns(uint64_t ts, uint8_t tsresol) {
  const unsigned exp = tsresol & 0x7F;
  if (tsresol & 0x80) {
    if (exp >= 64) return 0;
    return static_cast<uint64_t>((u128{ts} * 1'000'000'000u) >> exp);
  }
  if (exp <= 9) {
    uint64_t mul = 1;
    for (unsigned i = exp; i < 9; ++i) mul *= 10;
    return ts * mul;
  }
  if (exp > 19) return 0;
  uint64_t div = 1;
  for (unsigned i = 9; i < exp; ++i) div *= 10;
  return ts / div;
}

// ---------------------------------------------------------------- blocks

namespace {

bool tsresol_valid(uint8_t r) {
  return (r & 0x80) ? (r & 0x7F) < 64 : r <= 19;
}

// Parses the body of a known block type into its view; false + why if malformed.
bool parse_view(Block& b, std::string* why) {
  ByteReader r(b.body);
  auto fail = [&](std::string_view what) {
    if (why) *why = what;
    return false;
  };
  auto rest = [&]() { return b.body.subspan(r.position()); };
  switch (b.type) {
    case kShbType: {
      ShbView v;
      r.u32le();  // magic, checked by the caller
      v.major = r.u16le();
      v.minor = r.u16le();
      v.section_length = static_cast<int64_t>(r.u64le());
      if (!r.ok()) return fail("section header block too short");
      if (v.major != 1) return fail(fmt::format("unsupported pcapng version {}.{}", v.major, v.minor));
      v.options = rest();
      if (!options_valid(v.options)) return fail("malformed section header options");
      b.view = v;
      return true;
    }
    case kIdbType: {
      IdbView v;
      v.link_type = r.u16le();
      r.u16le();
      v.snaplen = r.u32le();
      if (!r.ok()) return fail("interface description block too short");
      v.options = rest();
      if (!options_valid(v.options)) return fail("malformed interface description options");
      if (!tsresol_valid(v.tsresol())) return fail("if_tsresol out of range");
      b.view = v;
      return true;
    }
    case kEpbType: {
      EpbView v;
      v.interface_id = r.u32le();
      uint64_t hi = r.u32le();
      uint64_t lo = r.u32le();
      v.timestamp = (hi << 32) | lo;
      v.caplen = r.u32le();
      v.orig_len = r.u32le();
      if (!r.ok()) return fail("enhanced packet block too short");
      v.data = r.bytes(v.caplen);
      r.skip(pad4(v.caplen));
      if (!r.ok())
        return fail(fmt::format("packet length {} exceeds the enhanced packet block", v.caplen));
      v.options = rest();
      if (!options_valid(v.options)) return fail("malformed enhanced packet options");
      b.view = v;
      return true;
    }
    case kIsbType: {
      IsbView v;
      v.interface_id = r.u32le();
      uint64_t hi = r.u32le();
      uint64_t lo = r.u32le();
      v.timestamp = (hi << 32) | lo;
      if (!r.ok()) return fail("interface statistics block too short");
      v.options = rest();
      if (!options_valid(v.options)) return fail("malformed interface statistics options");
      b.view = v;
      return true;
    }
    case kNrbType: {
      NrbView v;
      size_t start = r.position();
      for (;;) {
        uint16_t type = r.u16le();
        uint16_t len = r.u16le();
        if (!r.ok()) return fail("name resolution records run past the block");
        if (type == 0) break;
        r.skip(size_t{len} + pad4(len));
        if (!r.ok()) return fail("name resolution record runs past the block");
      }
      v.records = b.body.subspan(start, r.position() - start);
      v.options = rest();
      if (!options_valid(v.options)) return fail("malformed name resolution options");
      b.view = v;
      return true;
    }
    case kCustomCopyType:
    case kCustomNoCopyType: {
      CustomBlockView v;
      v.copyable = b.type == kCustomCopyType;
      v.pen = r.u32le();
      if (!r.ok()) return fail("custom block too short");
      v.data = rest();
      b.view = v;
      return true;
    }
    default:
      b.view = std::monostate{};
      return true;
  }
}

}  // namespace

std::optional<Block> decode_block(std::span<const uint8_t> bytes, uint64_t offset,
                                  std::string* why) {
  auto fail = [&](std::string what) -> std::optional<Block> {
    if (why) *why = std::move(what);
    return std::nullopt;
  };
  ByteReader r(bytes);
  const uint32_t type = r.u32le();
  const uint32_t len = r.u32le();
  if (!r.ok()) return fail(fmt::format("truncated block header ({} bytes left)", bytes.size()));
  if (type == kShbType) {
    const uint32_t magic = r.u32le();
    if (!r.ok()) return fail("truncated section header block");
    if (magic == kByteOrderMagicSwapped) return fail("big-endian section not supported");
    if (magic != kByteOrderMagic) return fail(fmt::format("bad byte-order magic 0x{:08x}", magic));
  }
  if (len < 12 || len % 4 != 0)
    return fail(fmt::format("bad block length {} (block type 0x{:08x})", len, type));
  if (len > kMaxBlockBytes) return fail(fmt::format("block length {} over the {} limit", len, kMaxBlockBytes));
  if (len > bytes.size())
    return fail(fmt::format("truncated block: length {} but {} bytes left", len, bytes.size()));
  ByteReader tail(bytes.subspan(len - 4, 4));
  if (tail.u32le() != len) return fail("trailing block length does not match");
  Block b;
  b.type = type;
  b.offset = offset;
  b.total_length = len;
  b.body = bytes.subspan(8, len - 12);
  std::string reason;
  if (!parse_view(b, &reason)) return fail(std::move(reason));
  return b;
}

std::optional<TrawlRecord> decode_trawl_record(const Block& block) {
  // payload: type, version, reserved u16, fields (after the PEN)
  auto parse = [](std::span<const uint8_t> payload) -> std::optional<TrawlRecord> {
    ByteReader r(payload);
    auto type = static_cast<TrawlRecordType>(r.u8());
    r.u8();  // version: later versions may only append fields
    r.u16le();
    switch (type) {
      case TrawlRecordType::kBatchMark: {
        BatchMark m;
        m.spool_id = r.u64le();
        m.seq = r.u64le();
        if (r.ok()) return m;
        break;
      }
      case TrawlRecordType::kGap: {
        GapRecord g;
        g.interface_id = r.u32le();
        g.reason = static_cast<GapReason>(r.u8());
        r.skip(3);
        g.from_ns = r.u64le();
        g.to_ns = r.u64le();
        g.packets = r.u64le();
        g.bytes = r.u64le();
        if (r.ok()) return g;
        break;
      }
      case TrawlRecordType::kSeal: {
        SealRecord s;
        s.spool_id = r.u64le();
        s.last_seq = r.u64le();
        s.packets = r.u64le();
        s.first_ts_ns = r.u64le();
        s.last_ts_ns = r.u64le();
        if (r.ok()) return s;
        break;
      }
    }
    return std::nullopt;
  };
  if (const auto* nrb = std::get_if<NrbView>(&block.view)) {
    OptionReader opts(nrb->options);
    OptionView o;
    while (opts.next(o)) {
      if (o.code != kOptCustomBinCopy && o.code != kOptCustomBinNoCopy) continue;
      ByteReader r(o.value);
      if (r.u32le() != kTrawlPen || !r.ok()) continue;
      return parse(o.value.subspan(4));
    }
    return std::nullopt;
  }
  if (const auto* cb = std::get_if<CustomBlockView>(&block.view)) {
    if (cb->pen == kTrawlPen) return parse(cb->data);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- files

void MappedFile::advise_random() const {
  if (data_ && size_) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_RANDOM);
}

Result<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("opening " + path.string());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Error e = Error::from_errno("stat " + path.string());
    ::close(fd);
    return e;
  }
  MappedFile f;
  if (st.st_size > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      Error e = Error::from_errno("mapping " + path.string());
      ::close(fd);
      return e;
    }
    f.data_ = static_cast<const uint8_t*>(p);
    f.size_ = static_cast<size_t>(st.st_size);
  }
  ::close(fd);
  return f;
}

MappedFile::MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// ---------------------------------------------------------------- reader

Result<PcapngReader> PcapngReader::open_file(const std::filesystem::path& path) {
  auto f = MappedFile::open(path);
  if (!f.ok()) return std::move(f).error();
  PcapngReader r(f->bytes());
  r.file_ = std::move(*f);  // the mapping's address does not change
  return r;
}

PcapngReader::Next PcapngReader::corrupt(uint64_t offset, std::string why) {
  failed_ = true;
  corrupt_offset_ = offset;
  corrupt_reason_ = std::move(why);
  return Next::kCorrupt;
}

PcapngReader::Next PcapngReader::next() {
  if (failed_) return Next::kCorrupt;
  if (pos_ == data_.size()) return Next::kEnd;
  std::string why;
  auto b = decode_block(data_.subspan(pos_), pos_, &why);
  if (!b) return corrupt(pos_, std::move(why));
  if (!in_section_ && b->type != kShbType)
    return corrupt(pos_, fmt::format("block type 0x{:08x} before any section header block", b->type));
  switch (b->type) {
    case kShbType:
      in_section_ = true;
      interfaces_.clear();
      break;
    case kIdbType: {
      const auto& v = std::get<IdbView>(b->view);
      interfaces_.push_back({v.link_type, v.snaplen, v.name(), v.tsresol()});
      break;
    }
    case kEpbType:
    case kIsbType: {
      uint32_t id = b->type == kEpbType ? std::get<EpbView>(b->view).interface_id
                                        : std::get<IsbView>(b->view).interface_id;
      if (id >= interfaces_.size())
        return corrupt(pos_, fmt::format("block references interface {} but the section has {}",
                                         id, interfaces_.size()));
      break;
    }
    case kSpbType:
      if (interfaces_.empty()) return corrupt(pos_, "simple packet block without an interface");
      break;
    default:
      break;
  }
  block_ = *b;
  pos_ += b->total_length;
  valid_end_ = pos_;
  return Next::kBlock;
}

uint64_t PcapngReader::ts_ns(const EpbView& epb) const {
  uint8_t r = epb.interface_id < interfaces_.size() ? interfaces_[epb.interface_id].tsresol : 6;
  return ts_to_ns(epb.timestamp, r);
}

}  // namespace trawl::store::pcapng
