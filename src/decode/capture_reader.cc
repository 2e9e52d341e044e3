// Capture file reader: see capture_reader.h.
#include "decode/capture_reader.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "core/bytes.h"

namespace trawl::decode {
namespace {

constexpr size_t kChunk = 1 << 18;
constexpr size_t kMaxRecord = 16u << 20;  // largest pcap record / pcapng block accepted

class FdStream : public ByteStream {
 public:
  FdStream(int fd, bool owned) : fd_(fd), owned_(owned) {}
  ~FdStream() override {
    if (owned_) ::close(fd_);
  }
  Result<size_t> read(uint8_t* buf, size_t n) override {
    while (true) {
      ssize_t r = ::read(fd_, buf, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno != EINTR) return Error::from_errno("read");
    }
  }

 private:
  int fd_;
  bool owned_;
};

// Replays bytes already read (the sniffed magic) before the rest of a stream.
class PrefixStream : public ByteStream {
 public:
  PrefixStream(std::vector<uint8_t> prefix, std::unique_ptr<ByteStream> rest)
      : prefix_(std::move(prefix)), rest_(std::move(rest)) {}
  Result<size_t> read(uint8_t* buf, size_t n) override {
    if (pos_ < prefix_.size()) {
      size_t k = std::min(n, prefix_.size() - pos_);
      std::memcpy(buf, prefix_.data() + pos_, k);
      pos_ += k;
      return k;
    }
    return rest_->read(buf, n);
  }

 private:
  std::vector<uint8_t> prefix_;
  size_t pos_ = 0;
  std::unique_ptr<ByteStream> rest_;
};

class MemoryStream : public ByteStream {
 public:
  explicit MemoryStream(std::vector<uint8_t> b) : b_(std::move(b)) {}
  Result<size_t> read(uint8_t* buf, size_t n) override {
    size_t k = std::min(n, b_.size() - pos_);
    if (k) std::memcpy(buf, b_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::vector<uint8_t> b_;
  size_t pos_ = 0;
};

class GzipStream : public ByteStream {
 public:
  explicit GzipStream(std::unique_ptr<ByteStream> in) : in_(std::move(in)), ibuf_(kChunk) {
    inflateInit2(&z_, 15 + 32);
  }
  ~GzipStream() override { inflateEnd(&z_); }
  Result<size_t> read(uint8_t* buf, size_t n) override {
    z_.next_out = buf;
    z_.avail_out = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    while (z_.avail_out == static_cast<uInt>(std::min<size_t>(n, 1u << 30))) {
      if (z_.avail_in == 0 && !in_eof_) {
        auto r = in_->read(ibuf_.data(), ibuf_.size());
        if (!r) return std::move(r).error();
        if (*r == 0) in_eof_ = true;
        z_.next_in = ibuf_.data();
        z_.avail_in = static_cast<uInt>(*r);
      }
      if (z_.avail_in == 0 && in_eof_) {
        if (in_member_) return Error("gzip: truncated stream");
        break;
      }
      int rc = inflate(&z_, Z_NO_FLUSH);
      in_member_ = true;
      if (rc == Z_STREAM_END) {
        in_member_ = false;
        inflateReset(&z_);  // next concatenated member, if any
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return Error(std::string("gzip: ") + (z_.msg ? z_.msg : "corrupt data"));
      }
    }
    return static_cast<size_t>(std::min<size_t>(n, 1u << 30) - z_.avail_out);
  }

 private:
  std::unique_ptr<ByteStream> in_;
  std::vector<uint8_t> ibuf_;
  z_stream z_{};
  bool in_eof_ = false;
  bool in_member_ = false;
};

class ZstdStream : public ByteStream {
 public:
  explicit ZstdStream(std::unique_ptr<ByteStream> in)
      : in_(std::move(in)), ibuf_(ZSTD_DStreamInSize()), ds_(ZSTD_createDStream()) {
    ZSTD_initDStream(ds_);
  }
  ~ZstdStream() override { ZSTD_freeDStream(ds_); }
  Result<size_t> read(uint8_t* buf, size_t n) override {
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (zin_.pos == zin_.size && !in_eof_) {
        auto r = in_->read(ibuf_.data(), ibuf_.size());
        if (!r) return std::move(r).error();
        if (*r == 0) in_eof_ = true;
        zin_ = ZSTD_inBuffer{ibuf_.data(), *r, 0};
      }
      if (zin_.pos == zin_.size && in_eof_) {
        if (mid_frame_) return Error("zstd: truncated frame");
        break;
      }
      size_t rc = ZSTD_decompressStream(ds_, &out, &zin_);
      if (ZSTD_isError(rc)) return Error(std::string("zstd: ") + ZSTD_getErrorName(rc));
      mid_frame_ = rc != 0;  // 0: a frame ended; the next one (if any) starts fresh
    }
    return out.pos;
  }

 private:
  std::unique_ptr<ByteStream> in_;
  std::vector<uint8_t> ibuf_;
  ZSTD_inBuffer zin_{nullptr, 0, 0};
  ZSTD_DStream* ds_;
  bool in_eof_ = false;
  bool mid_frame_ = false;
};

uint64_t to_ns(uint64_t ts, uint64_t units_per_sec) {
  if (units_per_sec == 1000000000ull) return ts;
  if (units_per_sec == 0) return ts;
  if (1000000000ull % units_per_sec == 0) return ts * (1000000000ull / units_per_sec);
  return (ts / units_per_sec) * 1000000000ull +
         static_cast<uint64_t>(static_cast<long double>(ts % units_per_sec) * 1e9L / static_cast<long double>(units_per_sec));
}

uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }
uint16_t bswap16(uint16_t v) { return __builtin_bswap16(v); }

}  // namespace

std::unique_ptr<ByteStream> memory_byte_stream(std::vector<uint8_t> bytes) {
  return std::make_unique<MemoryStream>(std::move(bytes));
}

Result<std::unique_ptr<ByteStream>> open_byte_stream(const std::string& path) {
  std::unique_ptr<ByteStream> raw;
  if (path == "-") {
    raw = std::make_unique<FdStream>(0, false);
  } else {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error::from_errno("open " + path);
    raw = std::make_unique<FdStream>(fd, true);
  }
  std::vector<uint8_t> magic(4);
  size_t got = 0;
  while (got < magic.size()) {
    auto r = raw->read(magic.data() + got, magic.size() - got);
    if (!r) return std::move(r).error().with_context(path);
    if (*r == 0) break;
    got += *r;
  }
  magic.resize(got);
  bool gz = got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  bool zst = got >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd;
  std::unique_ptr<ByteStream> s = std::make_unique<PrefixStream>(std::move(magic), std::move(raw));
  if (gz) return std::unique_ptr<ByteStream>(std::make_unique<GzipStream>(std::move(s)));
  if (zst) return std::unique_ptr<ByteStream>(std::make_unique<ZstdStream>(std::move(s)));
  return s;
}

CaptureReader::CaptureReader(std::unique_ptr<ByteStream> in, std::string name)
    : in_(std::move(in)), name_(std::move(name)), buf_(kChunk) {}

Result<std::unique_ptr<CaptureReader>> CaptureReader::open(const std::string& path) {
  auto s = open_byte_stream(path);
  if (!s) return std::move(s).error();
  return std::make_unique<CaptureReader>(std::move(*s), path == "-" ? "stdin" : path);
}

bool CaptureReader::fill(size_t n) {
  if (end_ - pos_ >= n) return true;
  if (pos_ > 0) {
    std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
    end_ -= pos_;
    offset_ += pos_;
    pos_ = 0;
  }
  if (buf_.size() < n) buf_.resize(std::max(n, buf_.size() * 2));
  while (end_ < n && !eof_) {
    auto r = in_->read(buf_.data() + end_, buf_.size() - end_);
    if (!r) {
      error_ = name_ + ": " + r.error().message();
      eof_ = true;
      return false;
    }
    if (*r == 0) eof_ = true;
    end_ += *r;
  }
  return end_ - pos_ >= n;
}

CaptureReader::Next CaptureReader::corrupt(std::string why) {
  if (error_.empty()) error_ = name_ + ": at byte " + std::to_string(offset_ + pos_) + ": " + why;
  return Next::kCorrupt;
}

bool CaptureReader::read_header() {
  started_ = true;
  if (!fill(4)) return false;
  ByteReader r({buf_.data() + pos_, 4});
  uint32_t m = r.u32le();
  if (m == 0x0A0D0D0A) {
    format_ = Format::kPcapng;
    return true;
  }
  if (m == 0xa1b2c3d4 || m == 0xa1b23c4d) {
    swapped_ = false;
  } else if (m == 0xd4c3b2a1 || m == 0x4d3cb2a1) {
    swapped_ = true;
  } else {
    return false;
  }
  nano_ = (m == 0xa1b23c4d || m == 0x4d3cb2a1);
  if (!fill(24)) return false;
  ByteReader h({buf_.data() + pos_, 24});
  h.skip(20);
  uint32_t lt = h.u32le();
  pcap_link_ = (swapped_ ? bswap32(lt) : lt) & 0x0FFFFFFF;  // upper bits: FCS info
  pos_ += 24;
  format_ = Format::kPcap;
  return true;
}

CaptureReader::Next CaptureReader::next() {
  if (!started_) {
    if (!read_header()) {
      if (!error_.empty()) return Next::kCorrupt;
      if (end_ - pos_ == 0) return corrupt("empty input (no capture file header)");
      return corrupt("not a pcap or pcapng file (unknown magic)");
    }
  }
  return format_ == Format::kPcap ? next_pcap() : next_pcapng();
}

CaptureReader::Next CaptureReader::next_pcap() {
  if (!fill(16)) {
    if (!error_.empty()) return Next::kCorrupt;
    if (end_ == pos_) return Next::kEnd;
    return corrupt("truncated record header");
  }
  ByteReader h({buf_.data() + pos_, 16});
  auto u32 = [&] { uint32_t v = h.u32le(); return swapped_ ? bswap32(v) : v; };
  uint32_t sec = u32(), frac = u32(), caplen = u32(), len = u32();
  if (caplen > kMaxRecord) return corrupt("record claims " + std::to_string(caplen) + " captured bytes");
  if (!fill(16 + size_t{caplen})) {
    if (!error_.empty()) return Next::kCorrupt;
    return corrupt("truncated record (" + std::to_string(caplen) + " bytes announced)");
  }
  frame_.link_type = pcap_link_;
  frame_.ts_ns = uint64_t{sec} * 1000000000ull + (nano_ ? uint64_t{frac} : uint64_t{frac} * 1000ull);
  frame_.orig_len = len;
  frame_.data = {buf_.data() + pos_ + 16, caplen};
  pos_ += 16 + size_t{caplen};
  ++frames_;
  return Next::kFrame;
}

CaptureReader::Next CaptureReader::next_pcapng() {
  while (true) {
    if (!fill(12)) {
      if (!error_.empty()) return Next::kCorrupt;
      if (end_ == pos_) return Next::kEnd;
      return corrupt("truncated block header");
    }
    ByteReader h({buf_.data() + pos_, 12});
    uint32_t type = h.u32le();
    uint32_t len_raw = h.u32le();
    if (type == 0x0A0D0D0A) {
      uint32_t bom = h.u32le();
      if (bom == 0x1A2B3C4D) swapped_ = false;
      else if (bom == 0x4D3C2B1A) swapped_ = true;
      else return corrupt("bad section byte-order magic");
      ifaces_.clear();
    } else if (swapped_) {
      type = bswap32(type);
    }
    uint32_t len = swapped_ ? bswap32(len_raw) : len_raw;
    if (len < 12 || len % 4 != 0 || len > kMaxRecord) return corrupt("bad block length " + std::to_string(len));
    if (!fill(len)) {
      if (!error_.empty()) return Next::kCorrupt;
      return corrupt("truncated block");
    }
    std::span<const uint8_t> body{buf_.data() + pos_ + 8, len - 12};
    pos_ += len;
    ByteReader b(body);
    auto u16 = [&] { uint16_t v = b.u16le(); return swapped_ ? bswap16(v) : v; };
    auto u32 = [&] { uint32_t v = b.u32le(); return swapped_ ? bswap32(v) : v; };
    switch (type) {
      case 1: {  // IDB
        Iface ifc;
        ifc.link_type = u16();
        b.skip(2 + 4);
        while (b.remaining() >= 4) {
          uint16_t code = u16(), olen = u16();
          auto val = b.bytes(olen);
          b.skip((4 - olen % 4) % 4);
          if (!b.ok() || code == 0) break;
          if (code == 9 && olen >= 1) {
            uint8_t v = val[0];
            uint64_t u = 1;
            if (v & 0x80) {
              if ((v & 0x7f) > 63) return corrupt("if_tsresol out of range");
              u = uint64_t{1} << (v & 0x7f);
            } else {
              if (v > 19) return corrupt("if_tsresol out of range");
              for (int i = 0; i < v; ++i) u *= 10;
            }
            ifc.units_per_sec = u;
          }
        }
        ifaces_.push_back(ifc);
        break;
      }
      case 6:    // EPB
      case 2: {  // obsolete Packet Block
        uint32_t ifid;
        if (type == 6) {
          ifid = u32();
        } else {
          ifid = u16();
          b.skip(2);
        }
        uint64_t hi = u32(), lo = u32();
        uint32_t caplen = u32(), olen = u32();
        auto data = b.bytes(caplen);
        if (!b.ok()) return corrupt("packet block shorter than its captured length");
        if (ifid >= ifaces_.size()) return corrupt("packet block names unknown interface " + std::to_string(ifid));
        frame_.link_type = ifaces_[ifid].link_type;
        frame_.ts_ns = to_ns((hi << 32) | lo, ifaces_[ifid].units_per_sec);
        frame_.orig_len = olen;
        frame_.data = data;
        ++frames_;
        return Next::kFrame;
      }
      case 3: {  // SPB
        if (ifaces_.empty()) return corrupt("simple packet block before any interface");
        uint32_t olen = u32();
        auto data = b.bytes(std::min<size_t>(olen, b.remaining()));
        frame_.link_type = ifaces_[0].link_type;
        frame_.ts_ns = 0;
        frame_.orig_len = olen;
        frame_.data = data;
        ++frames_;
        return Next::kFrame;
      }
      default:
        break;  // SHB, NRB, ISB, custom, ...: nothing to analyse
    }
  }
}

}  // namespace trawl::decode
