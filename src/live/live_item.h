// What the collector hands to the live channel: a batch (its BATCH body,
// copied once into a pooled buffer and shared, read-only, by every sink) or
// an event (connect, disconnect, closingtracefile). Items are immutable once
// published; the last reference returns the buffer to its pool.
//
// ItemQueue: the bounded hand-off between the publishing (session) threads
// and one sink's thread. push() never blocks: a full queue drops the item
// and says so. Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "wire/frames.h"

namespace trawl::live {

struct LiveItem {
  enum class Kind : uint8_t { kBatch, kEvent };
  Kind kind = Kind::kBatch;
  std::string agent;
  // kBatch
  std::vector<uint8_t> body;  // the BATCH body
  wire::BatchView batch;      // parsed view into body
  // kEvent
  std::string event;  // "connect", "disconnect", "closingtracefile"
  std::string text;   // v1 payload (peer address, segment path); "" = none
};
using LiveItemPtr = std::shared_ptr<const LiveItem>;

// Recycles LiveItems (and their body capacity) between batches. At most
// max_items batch items exist: when the outputs are that far behind,
// try_get() says no and the batch is not published (counted by the
// caller) rather than the storage path allocating and faulting in fresh
// buffers. In the steady state no buffer is allocated.
class ItemPool : public std::enable_shared_from_this<ItemPool> {
 public:
  explicit ItemPool(size_t max_items = 64) : max_items_(max_items) {}
  // A recycled item, or a new one while fewer than max_items exist;
  // nullptr when every item is still held by an output.
  std::shared_ptr<LiveItem> try_get();
  // Always an item (events: small and rare), even past max_items.
  std::shared_ptr<LiveItem> get();

 private:
  std::shared_ptr<LiveItem> take(bool bounded);
  void put(LiveItem* item);

  std::mutex mu_;
  std::vector<std::unique_ptr<LiveItem>> free_;
  size_t max_items_;
  size_t items_ = 0;  // existing: free or in use
};

class ItemQueue {
 public:
  ItemQueue(size_t max_items, size_t max_bytes);
  ~ItemQueue();
  ItemQueue(const ItemQueue&) = delete;
  ItemQueue& operator=(const ItemQueue&) = delete;

  // false: the queue is full and the item was not taken.
  bool push(LiveItemPtr item);
  // Moves everything queued to out (appends) and clears the wake-up fd.
  void drain(std::vector<LiveItemPtr>& out);
  // Readable while items are queued (an eventfd): poll it.
  int wake_fd() const { return efd_; }
  void wake();  // makes wake_fd readable without an item (stop)

 private:
  std::mutex mu_;
  std::deque<LiveItemPtr> q_;
  size_t bytes_ = 0;
  size_t max_items_;
  size_t max_bytes_;
  int efd_ = -1;
};

}  // namespace trawl::live
