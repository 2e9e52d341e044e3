// OutQueue: bytes come out in the order they went in, across chunk
// boundaries, big messages and partial sends.
#include "live/out_queue.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

namespace trawl::live {
namespace {

TEST(OutQueue, StreamsEverythingInOrderThroughPartialSends) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  int small = 16384;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  std::mt19937 rng(7);
  OutQueue q;
  std::vector<uint8_t> want, got;
  uint8_t next = 0;
  auto drain = [&] {
    uint8_t buf[50000];
    ssize_t n = recv(sv[1], buf, 1 + rng() % sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.insert(got.end(), buf, buf + n);
  };
  for (int round = 0; round < 3000; ++round) {
    // Sizes: tiny, around the 256 KiB chunk, and bigger than a chunk.
    size_t n = round % 500 == 7 ? OutQueue::kChunkBytes + 1000 + rng() % 5000 : rng() % 3000;
    if (round % 2) {
      uint8_t* p = q.reserve(n);
      for (size_t i = 0; i < n; ++i) p[i] = next++;
      q.commit(n);
      for (size_t i = 0; i < n; ++i) want.push_back(p[i]);
    } else {
      std::vector<uint8_t> b(n);
      for (auto& x : b) x = next++;
      q.append(b);
      want.insert(want.end(), b.begin(), b.end());
    }
    size_t before = q.size();
    ssize_t s = q.send_to(sv[0]);
    if (s > 0) {
      EXPECT_EQ(q.size(), before - static_cast<size_t>(s));
    }
    drain();
  }
  while (!q.empty()) {
    q.send_to(sv[0]);
    drain();
  }
  while (got.size() < want.size()) drain();
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want);
  close(sv[0]);
  close(sv[1]);
}

// A queue that fills and drains again reuses its chunks: no allocation (and
// no page faults) once it has reached its size.
TEST(OutQueue, ReusesEmptiedChunksUpToItsSpareLimit) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  OutQueue q;
  q.set_spare_chunks(8);
  std::vector<uint8_t> b(100000, 7);
  std::vector<const uint8_t*> first;
  auto fill_and_drain = [&](std::vector<const uint8_t*>* seen) {
    for (int i = 0; i < 15; ++i) {  // ~1.4 MiB: six chunks
      uint8_t* p = q.reserve(b.size());
      if (seen && (seen->empty() || p < seen->back() || p >= seen->back() + OutQueue::kChunkBytes)) seen->push_back(p);
      std::memcpy(p, b.data(), b.size());
      q.commit(b.size());
    }
    while (!q.empty()) {
      ASSERT_GT(q.send_to(sv[0]), 0);
      uint8_t buf[1 << 16];
      while (recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) > 0) {}
    }
  };
  fill_and_drain(&first);
  ASSERT_GE(first.size(), 5u);
  std::vector<const uint8_t*> second;
  fill_and_drain(&second);
  for (const uint8_t* p : second) {
    EXPECT_NE(std::find(first.begin(), first.end(), p), first.end()) << "a chunk was allocated anew";
  }
  close(sv[0]);
  close(sv[1]);
}

TEST(OutQueue, ClearDropsEverything) {
  OutQueue q;
  std::vector<uint8_t> b(1000, 1);
  q.append(b);
  q.append(b);
  EXPECT_EQ(q.size(), 2000u);
  q.clear();
  EXPECT_TRUE(q.empty());
  q.append(b);
  EXPECT_EQ(q.size(), 1000u);
}

}  // namespace
}  // namespace trawl::live
