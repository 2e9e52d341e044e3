// OutQueue: the bytes waiting to go to one live subscriber. A list of
// chunks (256 KiB, or one message if bigger): messages are formatted
// straight into the tail, the head goes out with writev(2), and nothing is
// ever moved or zero-filled. (A flat vector had to be compacted when its
// sent front grew, which copied up to the whole queue — 8 MiB — for every
// MiB sent to a subscriber that lagged.) Emptied chunks are kept for reuse,
// up to set_spare_chunks() of them (default 2): a queue that fills and
// empties again then allocates nothing (fresh 256 KiB blocks are mmap'd and
// page-faulted in, which cost the collector as much as the copies).
//
// Not thread-safe: one FanoutServer thread owns it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <vector>

namespace trawl::live {

class OutQueue {
 public:
  static constexpr size_t kChunkBytes = 256u << 10;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // n contiguous writable bytes at the tail; commit(n) once they are filled.
  uint8_t* reserve(size_t n);
  void commit(size_t n) {
    chunks_.back().end += n;
    size_ += n;
  }
  void append(std::span<const uint8_t> bytes) {
    if (bytes.empty()) return;
    std::memcpy(reserve(bytes.size()), bytes.data(), bytes.size());
    commit(bytes.size());
  }

  // One writev() of the head (MSG_DONTWAIT semantics: the fd is
  // nonblocking). Returns bytes sent, or -1 with errno set.
  ssize_t send_to(int fd);
  void clear();
  // How many emptied chunks to keep for reuse (the owner's bound on the
  // queue's size, in chunks, keeps memory within that bound).
  void set_spare_chunks(size_t n) { max_spare_ = n; }

 private:
  struct Chunk {
    std::unique_ptr<uint8_t[]> data;
    size_t cap = 0;
    size_t begin = 0;  // first unsent byte
    size_t end = 0;    // first free byte
  };
  void consume(size_t n);

  std::deque<Chunk> chunks_;
  std::vector<Chunk> spare_;
  size_t max_spare_ = 2;
  size_t size_ = 0;
};

}  // namespace trawl::live
