// Bounds-checked little/big-endian reading and appending of wire bytes.
//
// ByteReader never reads past its span: once a read runs short it turns
// false and stays false, and every later read returns zero/empty. Decoders
// read a whole structure, then check ok() once. Not thread-safe; cheap to copy.
// ByteWriter appends to a caller-owned std::vector (amortised, no per-call
// allocation once the vector has grown).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace trawl {

class ByteReader {
 public:
  ByteReader() = default;
  explicit ByteReader(std::span<const uint8_t> data) : data_(data) {}

  bool ok() const { return ok_; }
  size_t remaining() const { return ok_ ? data_.size() - pos_ : 0; }
  size_t position() const { return pos_; }
  bool empty() const { return remaining() == 0; }

  uint8_t u8() { return static_cast<uint8_t>(read_le(1)); }
  uint16_t u16le() { return static_cast<uint16_t>(read_le(2)); }
  uint32_t u32le() { return static_cast<uint32_t>(read_le(4)); }
  uint64_t u64le() { return read_le(8); }
  uint16_t u16be() { return static_cast<uint16_t>(read_be(2)); }
  uint32_t u32be() { return static_cast<uint32_t>(read_be(4)); }
  uint64_t u64be() { return read_be(8); }

  // Next n bytes as a view into the underlying buffer (empty on short read).
  std::span<const uint8_t> bytes(size_t n) {
    if (!take(n)) return {};
    return data_.subspan(pos_ - n, n);
  }
  std::string_view str(size_t n) {
    auto b = bytes(n);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  void skip(size_t n) { take(n); }
  // Marks the reader failed (a decoder found a value out of range).
  void fail() { ok_ = false; }

 private:
  bool take(size_t n) {
    if (!ok_ || data_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  uint64_t read_le(size_t n) {
    if (!take(n)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{data_[pos_ - n + i]} << (8 * i);
    return v;
  }
  uint64_t read_be(size_t n) {
    if (!take(n)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | data_[pos_ - n + i];
    return v;
  }

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>& out) : out_(out) {}

  void u8(uint8_t v) { out_.push_back(v); }
  void u16le(uint16_t v) { le(v, 2); }
  void u32le(uint32_t v) { le(v, 4); }
  void u64le(uint64_t v) { le(v, 8); }
  void u16be(uint16_t v) { be(v, 2); }
  void u32be(uint32_t v) { be(v, 4); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str(std::string_view s) {
    bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  }
  void zeros(size_t n) { out_.insert(out_.end(), n, 0); }
  size_t size() const { return out_.size(); }
  // Overwrites 4 bytes at pos (for length fields filled in after the body).
  void patch_u32le(size_t pos, uint32_t v) {
    for (int i = 0; i < 4; ++i) out_[pos + i] = static_cast<uint8_t>(v >> (8 * i));
  }

 private:
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t>& out_;
};

inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace trawl
