// The ZeroMQ publisher against real libzmq SUB sockets (interop), and the
// per-subscriber bounded queue with a stalled subscriber.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "live/formats.h"
#include "live/live_bus.h"
#include "live/zmtp.h"

namespace trawl::live {
namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> make_batch(uint64_t seq, int packets, size_t size, uint8_t fill) {
  wire::BatchBuilder b;
  std::vector<InterfaceInfo> ifaces{{"eth0", 1, 65535}};
  b.reset(42, ifaces);
  std::vector<uint8_t> data(size, fill);
  for (int i = 0; i < packets; ++i) {
    data[0] = static_cast<uint8_t>(i);
    b.add_packet(0, 1'700'000'000'000'001'000ull + static_cast<uint64_t>(i) * 1000, static_cast<uint32_t>(size + 4), data);
  }
  Gap g;
  g.iface = 0;
  g.packets = 5;
  g.reason = GapReason::kSpoolFull;
  b.add_gap(g);
  auto frame = b.finish(seq, 1);
  return {frame.begin() + wire::kFrameHeaderBytes, frame.end()};
}

struct Sub {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_SUB);
  Sub(uint16_t port, std::vector<std::string> topics) {
    for (auto& t : topics) zmq_setsockopt(s, ZMQ_SUBSCRIBE, t.data(), t.size());
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    int timeout = 3000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    std::string ep = "tcp://127.0.0.1:" + std::to_string(port);
    EXPECT_EQ(zmq_connect(s, ep.c_str()), 0);
  }
  ~Sub() {
    zmq_close(s);
    zmq_ctx_term(ctx);
  }
  std::vector<std::string> recv() {
    std::vector<std::string> parts;
    for (;;) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, s, 0) < 0) {
        zmq_msg_close(&m);
        return parts;
      }
      parts.emplace_back(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
      bool more = zmq_msg_more(&m);
      zmq_msg_close(&m);
      if (!more) return parts;
    }
  }
};

TEST(Publisher, LibzmqSubscribersGetV1AndV2ByteExact) {
  LiveOptions o;
  o.zmq_listen = "tcp://127.0.0.1:0";
  auto bus = LiveBus::start(o);
  ASSERT_TRUE(bus.ok()) << bus.error().message();
  Sub v1((*bus)->zmq_port(), {"data.v1.edge1", "event.v1."});
  Sub v2((*bus)->zmq_port(), {"data.v2.", "event.v2."});
  Sub other((*bus)->zmq_port(), {"data.v1.edge2"});
  std::this_thread::sleep_for(300ms);  // subscriptions reach the publisher
  (*bus)->publish_event("edge1", "connect", "10.0.0.1:4000");
  auto body = make_batch(7, 3, 100, 0xab);
  (*bus)->publish_batch("edge1", body);
  (*bus)->publish_event("edge1", "closingtracefile", "/data/edge1/x.pcapng");

  auto ev = v1.recv();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0], "event.v1.connect.edge1");
  for (int i = 0; i < 3; ++i) {
    auto m = v1.recv();
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0], "data.v1.edge1");
    auto h = pcap_file_header(kPcapMagicUsec, 65535, 1);
    EXPECT_EQ(m[1], std::string(h.begin(), h.end()));
    auto rec = pcap_record_header(1'700'000'000'000'001'000ull + static_cast<uint64_t>(i) * 1000, 100, 104, false);
    std::string want(rec.begin(), rec.end());
    std::string data(100, static_cast<char>(0xab));
    data[0] = static_cast<char>(i);
    EXPECT_EQ(m[2], want + data);
  }
  auto closing = v1.recv();
  ASSERT_EQ(closing.size(), 2u);
  EXPECT_EQ(closing[0], "event.v1.closingtracefile.edge1");
  EXPECT_EQ(closing[1], "/data/edge1/x.pcapng");

  auto c2 = v2.recv();
  EXPECT_EQ(c2[0], "event.v2.connect.edge1");
  EXPECT_EQ(c2[1], R"({"agent":"edge1","peer":"10.0.0.1:4000"})");
  for (int i = 0; i < 3; ++i) {
    auto m = v2.recv();
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0], "data.v2.edge1");
    V2Meta meta;
    ASSERT_TRUE(parse_v2_meta({reinterpret_cast<const uint8_t*>(m[1].data()), m[1].size()}, meta));
    EXPECT_EQ(meta.seq, 7u);
    EXPECT_EQ(meta.ts_ns, 1'700'000'000'000'001'000ull + static_cast<uint64_t>(i) * 1000);
    EXPECT_EQ(meta.iface_name, "eth0");
    EXPECT_EQ(meta.orig_len, 104u);
    EXPECT_EQ(m[2].size(), 100u);
  }
  auto gap = v2.recv();
  ASSERT_EQ(gap.size(), 2u);
  EXPECT_EQ(gap[0], "event.v2.gap.edge1");
  EXPECT_NE(gap[1].find(R"("packets":5)"), std::string::npos);
  EXPECT_NE(gap[1].find(R"("reason":"spool-full")"), std::string::npos);
  EXPECT_EQ(v2.recv()[0], "event.v2.closingtracefile.edge1");
  int timeout = 300;
  zmq_setsockopt(other.s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  EXPECT_TRUE(other.recv().empty());  // nothing for edge2
}

// A subscriber that completes the handshake, subscribes to everything and
// then never reads.
int stalled_subscriber(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::vector<uint8_t> out(64, 0);
  out[0] = 0xff;
  out[9] = 0x7f;
  out[10] = 3;
  memcpy(&out[12], "NULL", 4);
  std::string ready("\x04\x19\x05READY\x0bSocket-Type\0\0\0\x03SUB", 27);
  out.insert(out.end(), ready.begin(), ready.end());
  out.push_back(0);
  out.push_back(1);
  out.push_back(1);  // subscribe ""
  EXPECT_EQ(send(fd, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
  return fd;
}

TEST(Publisher, StalledSubscriberLosesOnlyItsOwnPackets) {
  LiveOptions o;
  o.zmq_listen = "127.0.0.1:0";
  o.subscriber_queue_bytes = 64 << 10;
  auto bus = LiveBus::start(o);
  ASSERT_TRUE(bus.ok());
  Sub fast((*bus)->zmq_port(), {"data.v2."});
  int hwm = 0;  // no receive limit: the fast one must get everything
  zmq_setsockopt(fast.s, ZMQ_RCVHWM, &hwm, sizeof hwm);
  int stalled = stalled_subscriber((*bus)->zmq_port());
  std::this_thread::sleep_for(300ms);
  constexpr int kBatches = 200, kPerBatch = 50;
  int received = 0;
  std::thread reader([&] {
    while (received < kBatches * kPerBatch) {
      auto m = fast.recv();
      if (m.empty()) break;
      ++received;
    }
  });
  for (int i = 0; i < kBatches; ++i) {
    auto body = make_batch(static_cast<uint64_t>(i + 1), kPerBatch, 1000, 1);
    (*bus)->publish_batch("edge1", body);
    std::this_thread::sleep_for(1ms);  // the bus's own queue is not what is tested here
  }
  reader.join();
  EXPECT_EQ(received, kBatches * kPerBatch);
  metrics::Exposition e;
  (*bus)->write_metrics(e);
  const std::string& text = e.text();
  EXPECT_NE(text.find("trawl_live_subscribers{output=\"zmq\"} 2"), std::string::npos) << text;
  // The stalled subscriber (#2) lost packets; the fast one (#1) none.
  auto value = [&](const std::string& key) -> double {
    auto p = text.find(key);
    if (p == std::string::npos) return -1;
    return std::stod(text.substr(text.find(' ', p + key.size()) + 1));
  };
  // (which one connected first is up to libzmq's connect timing)
  double d1 = value("trawl_live_subscriber_dropped_packets_total{output=\"zmq\",subscriber=\"1\"");
  double d2 = value("trawl_live_subscriber_dropped_packets_total{output=\"zmq\",subscriber=\"2\"");
  EXPECT_EQ(std::min(d1, d2), 0);
  EXPECT_GT(std::max(d1, d2), 5000);
  EXPECT_EQ(value("trawl_live_output_dropped_batches_total{output=\"zmq\"}"), 0);
  close(stalled);
}

// The zero-copy hand-off: the live item takes the caller's buffer (the
// bytes do not move) and the caller gets another one back; with nobody
// subscribed nothing is taken or copied.
TEST(Publisher, AdoptedBatchesAreNotCopied) {
  LiveOptions o;
  o.zmq_listen = "127.0.0.1:0";
  auto bus = LiveBus::start(o);
  ASSERT_TRUE(bus.ok());
  auto frame_of = [](uint64_t seq) {
    auto body = make_batch(seq, 2, 80, 0x5a);
    std::vector<uint8_t> storage(16, 0);  // a frame header in front, as BatchBuilder has it
    storage.insert(storage.end(), body.begin(), body.end());
    return storage;
  };
  {
    auto storage = frame_of(1);
    std::span<const uint8_t> body(storage.data() + 16, storage.size() - 16);
    auto view = wire::BatchView::parse(body);
    ASSERT_TRUE(view.ok());
    EXPECT_FALSE((*bus)->has_subscribers());
    EXPECT_EQ((*bus)->publish_batch_adopt("edge1", storage, body, *view), nullptr);
    EXPECT_EQ(storage.size(), body.size() + 16);  // untouched
  }
  Sub v2((*bus)->zmq_port(), {"data.v2."});
  for (int i = 0; i < 100 && !(*bus)->has_subscribers(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE((*bus)->has_subscribers());
  std::this_thread::sleep_for(200ms);  // the subscription itself
  auto storage = frame_of(2);
  const uint8_t* bytes = storage.data();
  std::span<const uint8_t> body(storage.data() + 16, storage.size() - 16);
  auto view = wire::BatchView::parse(body);
  ASSERT_TRUE(view.ok());
  auto held = (*bus)->publish_batch_adopt("edge1", storage, body, *view);
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->body.data(), bytes);  // the same heap block, not a copy
  EXPECT_TRUE(storage.empty());
  for (int i = 0; i < 2; ++i) {
    auto m = v2.recv();
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0], "data.v2.edge1");
    EXPECT_EQ(m[2].size(), 80u);
    EXPECT_EQ(static_cast<uint8_t>(m[2][0]), i);
  }
}

// When every pooled live buffer is still held (the outputs are that far
// behind), a batch is shed and counted; the caller's buffer is untouched and
// nothing is allocated.
TEST(Publisher, BatchesAreShedWhenEveryBufferIsHeld) {
  LiveOptions o;
  o.zmq_listen = "127.0.0.1:0";
  auto bus = LiveBus::start(o);
  ASSERT_TRUE(bus.ok());
  Sub v2((*bus)->zmq_port(), {"data.v2."});
  for (int i = 0; i < 100 && !(*bus)->has_subscribers(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE((*bus)->has_subscribers());
  auto body_bytes = make_batch(1, 3, 100, 0x11);
  std::vector<LiveItemPtr> held;
  int shed = 0;
  for (int i = 0; i < 80; ++i) {
    std::vector<uint8_t> storage = body_bytes;
    auto view = wire::BatchView::parse(storage);
    ASSERT_TRUE(view.ok());
    auto item = (*bus)->publish_batch_adopt("edge1", storage, storage, *view);
    if (item) {
      held.push_back(std::move(item));
    } else {
      ++shed;
      EXPECT_EQ(storage, body_bytes);  // untouched
    }
  }
  EXPECT_EQ(held.size(), 64u);
  EXPECT_EQ(shed, 16);
  metrics::Exposition e;
  (*bus)->write_metrics(e);
  EXPECT_NE(e.text().find("trawl_live_shed_batches_total 16"), std::string::npos) << e.text();
  EXPECT_NE(e.text().find("trawl_live_shed_packets_total 48"), std::string::npos) << e.text();
  held.clear();  // buffers come back once the output thread is done with them too
  LiveItemPtr again;
  for (int i = 0; i < 200 && !again; ++i) {
    std::vector<uint8_t> storage = body_bytes;
    auto view = wire::BatchView::parse(storage);
    ASSERT_TRUE(view.ok());
    again = (*bus)->publish_batch_adopt("edge1", storage, storage, *view);
    if (!again) std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(again, nullptr);
}

// The publishing threads lower their own priority by --live-nice, and only
// theirs.
TEST(Publisher, PublishingThreadsRunAtTheirNiceIncrement) {
  auto nices = [] {
    std::vector<int> v;
    for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream f(t.path() / "stat");
      std::string line;
      std::getline(f, line);
      std::istringstream rest(line.substr(line.rfind(')') + 2));
      std::string field;
      // Fields after the name: state is #3; nice is #19.
      for (int i = 3; i < 19 && rest >> field; ++i) {}
      int nice = 0;
      if (rest >> nice) v.push_back(nice);
    }
    return v;
  };
  const int base = getpriority(PRIO_PROCESS, 0);
  if (base > 12) GTEST_SKIP() << "already at nice " << base;
  LiveOptions o;
  o.zmq_listen = "127.0.0.1:0";
  o.pcap_listeners.push_back(PcapListenerOptions{});
  o.pcap_listeners.back().listen = "127.0.0.1:0";
  o.nice = 7;
  auto bus = LiveBus::start(o);
  ASSERT_TRUE(bus.ok());
  int lowered = 0;
  for (int i = 0; i < 200 && lowered < 2; ++i) {
    std::this_thread::sleep_for(10ms);
    auto v = nices();
    lowered = static_cast<int>(std::count(v.begin(), v.end(), base + 7));
  }
  EXPECT_EQ(lowered, 2);  // the ZeroMQ and the PCAP-over-IP threads
  EXPECT_EQ(getpriority(PRIO_PROCESS, 0), base);  // this thread is untouched
}

}  // namespace
}  // namespace trawl::live
