#include "live/live_item.h"

#include <sys/eventfd.h>
#include <unistd.h>

namespace trawl::live {

std::shared_ptr<LiveItem> ItemPool::try_get() { return take(true); }
std::shared_ptr<LiveItem> ItemPool::get() { return take(false); }

std::shared_ptr<LiveItem> ItemPool::take(bool bounded) {
  std::unique_ptr<LiveItem> item;
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      item = std::move(free_.back());
      free_.pop_back();
    } else if (bounded && items_ >= max_items_) {
      return nullptr;
    } else {
      ++items_;
    }
  }
  if (!item) item = std::make_unique<LiveItem>();
  auto self = shared_from_this();
  return std::shared_ptr<LiveItem>(item.release(), [self](LiveItem* p) { self->put(p); });
}

void ItemPool::put(LiveItem* p) {
  std::unique_ptr<LiveItem> item(p);
  item->body.clear();
  item->agent.clear();
  item->event.clear();
  item->text.clear();
  item->batch = {};
  std::lock_guard lock(mu_);
  if (free_.size() < max_items_) {
    free_.push_back(std::move(item));
  } else {
    --items_;  // one of get()'s extras: let it go
  }
}

ItemQueue::ItemQueue(size_t max_items, size_t max_bytes)
    : max_items_(max_items), max_bytes_(max_bytes), efd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

ItemQueue::~ItemQueue() {
  if (efd_ >= 0) ::close(efd_);
}

bool ItemQueue::push(LiveItemPtr item) {
  size_t n = item->body.size();
  {
    std::lock_guard lock(mu_);
    // An oversized item still goes through into an empty queue.
    if (q_.size() >= max_items_ || (!q_.empty() && bytes_ + n > max_bytes_)) return false;
    q_.push_back(std::move(item));
    bytes_ += n;
  }
  wake();
  return true;
}

void ItemQueue::drain(std::vector<LiveItemPtr>& out) {
  uint64_t v;
  (void)!::read(efd_, &v, sizeof v);
  std::lock_guard lock(mu_);
  for (auto& i : q_) out.push_back(std::move(i));
  q_.clear();
  bytes_ = 0;
}

void ItemQueue::wake() {
  uint64_t one = 1;
  (void)!::write(efd_, &one, sizeof one);
}

}  // namespace trawl::live
