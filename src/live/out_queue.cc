#include "live/out_queue.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>

namespace trawl::live {

uint8_t* OutQueue::reserve(size_t n) {
  if (!chunks_.empty() && chunks_.back().cap - chunks_.back().end >= n) {
    return chunks_.back().data.get() + chunks_.back().end;
  }
  Chunk c;
  if (!spare_.empty() && spare_.back().cap >= n) {
    c = std::move(spare_.back());
    spare_.pop_back();
  } else {
    c.cap = std::max(kChunkBytes, n);
    c.data.reset(new uint8_t[c.cap]);  // not value-initialised: no zero-fill
  }
  c.begin = c.end = 0;
  chunks_.push_back(std::move(c));
  return chunks_.back().data.get();
}

ssize_t OutQueue::send_to(int fd) {
  constexpr size_t kMaxIov = 64;
  iovec iov[kMaxIov];
  size_t n = 0;
  for (const auto& c : chunks_) {
    if (n == kMaxIov) break;
    if (c.end == c.begin) continue;
    iov[n].iov_base = c.data.get() + c.begin;
    iov[n].iov_len = c.end - c.begin;
    ++n;
  }
  if (n == 0) return 0;
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  ssize_t sent = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent > 0) consume(static_cast<size_t>(sent));
  return sent;
}

void OutQueue::consume(size_t n) {
  size_ -= n;
  while (n > 0) {
    Chunk& c = chunks_.front();
    size_t take = std::min(n, c.end - c.begin);
    c.begin += take;
    n -= take;
    if (c.begin == c.end && (chunks_.size() > 1 || n > 0)) {
      if (spare_.size() < max_spare_ && c.cap == kChunkBytes) spare_.push_back(std::move(c));
      chunks_.pop_front();
    }
  }
  if (size_ == 0 && !chunks_.empty()) chunks_.front().begin = chunks_.front().end = 0;
}

void OutQueue::clear() {
  chunks_.clear();
  size_ = 0;
}

}  // namespace trawl::live
