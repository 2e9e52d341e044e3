// ReceiveBuffer: bytes read from a stream, waiting to be parsed into
// messages. Read into writable(), commit() what arrived, look at readable(),
// consume() what was parsed. The buffer compacts before it grows, and grows
// only when one message needs more room than it has. Views into it stay
// valid until the next writable() or reserve(). Not thread-safe.
#pragma once

#include <cassert>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace trawl {

class ReceiveBuffer {
 public:
  explicit ReceiveBuffer(size_t initial_capacity) : buf_(initial_capacity) {}

  // At least min_bytes of room after the buffered bytes.
  std::span<uint8_t> writable(size_t min_bytes) {
    if (begin_ == end_) begin_ = end_ = 0;
    if (buf_.size() - end_ < min_bytes) {
      compact();
      if (buf_.size() - end_ < min_bytes) buf_.resize(end_ + min_bytes);
    }
    return {buf_.data() + end_, buf_.size() - end_};
  }
  void commit(size_t n) {
    assert(end_ + n <= buf_.size());
    end_ += n;
  }
  std::span<const uint8_t> readable() const { return {buf_.data() + begin_, end_ - begin_}; }
  void consume(size_t n) {
    assert(begin_ + n <= end_);
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  // Makes sure a message of `total` bytes starting at readable() will fit
  // once it has arrived.
  void reserve(size_t total) {
    if (buf_.size() - begin_ >= total) return;
    compact();
    if (buf_.size() < total) buf_.resize(total);
  }
  size_t size() const { return end_ - begin_; }

 private:
  void compact() {
    if (begin_ == 0) return;
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }

  std::vector<uint8_t> buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace trawl
