// trawl's own ZMTP SUB client against a real libzmq PUB (interop with any
// ZeroMQ publisher, osmo-pcap's included), against trawl's LiveBus, and
// against peers that break the protocol.
#include "live/zmtp_subscriber.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include <chrono>
#include <string>
#include <thread>

#include "live/live_bus.h"
#include "wire/tcp.h"

namespace trawl::live::zmtp {
namespace {

using namespace std::chrono_literals;

std::string str(std::span<const uint8_t> s) { return {reinterpret_cast<const char*>(s.data()), s.size()}; }

struct Pub {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_PUB);
  uint16_t port = 0;
  Pub() {
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    int hwm = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    EXPECT_EQ(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    char ep[64];
    size_t len = sizeof ep;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len);
    port = static_cast<uint16_t>(std::stoi(std::string(ep).substr(std::string(ep).rfind(':') + 1)));
  }
  ~Pub() {
    zmq_close(s);
    zmq_ctx_term(ctx);
  }
  void send(const std::vector<std::string>& parts) {
    for (size_t i = 0; i < parts.size(); ++i) {
      zmq_send(s, parts[i].data(), parts[i].size(), i + 1 < parts.size() ? ZMQ_SNDMORE : 0);
    }
  }
};

// Publishes until the subscription has reached the publisher (PUB drops
// messages for subscribers it does not know yet), then returns the first
// message received.
std::vector<std::string> first_message(Pub& pub, Subscriber& sub, const std::vector<std::string>& msg) {
  Subscriber::Parts parts;
  for (int i = 0; i < 100; ++i) {
    pub.send(msg);
    if (sub.receive(parts, 50)) {
      std::vector<std::string> out;
      for (auto p : parts) out.push_back(str(p));
      return out;
    }
  }
  return {};
}

TEST(ZmtpSubscriber, ReceivesMultipartMessagesFromLibzmqPub) {
  Pub pub;
  auto sub = Subscriber::create("tcp://127.0.0.1:" + std::to_string(pub.port), {"data.v1.edge1", "event."});
  ASSERT_TRUE(sub.ok()) << sub.error().message();
  auto first = first_message(pub, **sub, {"event.v1.connect.edge1", "10.0.0.1"});
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0], "event.v1.connect.edge1");
  EXPECT_TRUE((*sub)->connected());
  // Filtering happens at the publisher; sizes cross the short/long frame
  // boundary (255) and the client's read chunk (256 KiB).
  std::string big(300000, 'x');
  pub.send({"data.v1.edge2", "not for us"});
  for (size_t n : {0ul, 1ul, 255ul, 256ul, 70000ul, 300000ul}) pub.send({"data.v1.edge1", "hdr", big.substr(0, n)});
  Subscriber::Parts parts;
  for (size_t n : {0ul, 1ul, 255ul, 256ul, 70000ul, 300000ul}) {
    // A drained connect message may still be in flight from first_message().
    do {
      ASSERT_TRUE((*sub)->receive(parts, 3000)) << n;
    } while (str(parts[0]).starts_with("event."));
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_EQ(str(parts[0]), "data.v1.edge1");
    EXPECT_EQ(str(parts[1]), "hdr");
    EXPECT_EQ(parts[2].size(), n);
    EXPECT_EQ(str(parts[2]), big.substr(0, n));
  }
  EXPECT_FALSE((*sub)->receive(parts, 100));  // edge2's message never came
}

TEST(ZmtpSubscriber, ManySmallMessagesInOrder) {
  Pub pub;
  auto sub = Subscriber::create("127.0.0.1:" + std::to_string(pub.port), {"m"});
  ASSERT_TRUE(sub.ok());
  ASSERT_FALSE(first_message(pub, **sub, {"mark"}).empty());
  constexpr int kCount = 100000;
  for (int i = 0; i < kCount; ++i) pub.send({"m", std::to_string(i)});
  Subscriber::Parts parts;
  int next = 0;
  while (next < kCount && (*sub)->receive(parts, 3000)) {
    if (str(parts[0]) == "mark") continue;
    ASSERT_EQ(str(parts[1]), std::to_string(next));
    ++next;
  }
  EXPECT_EQ(next, kCount);
}

TEST(ZmtpSubscriber, ConnectsLateAndReconnectsAfterThePublisherRestarts) {
  // Nothing listens yet: receive() times out quietly and says why.
  int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  uint16_t port = *wire::bound_port(probe);
  ::close(probe);
  auto sub = Subscriber::create("tcp://127.0.0.1:" + std::to_string(port), {"data.v2."});
  ASSERT_TRUE(sub.ok());
  Subscriber::Parts parts;
  EXPECT_FALSE((*sub)->receive(parts, 300));
  EXPECT_FALSE((*sub)->connected());
  EXPECT_NE((*sub)->last_error().find("refused"), std::string::npos) << (*sub)->last_error();

  for (int round = 0; round < 2; ++round) {
    LiveOptions o;
    o.zmq_listen = "127.0.0.1:" + std::to_string(port);
    auto bus = LiveBus::start(o);
    ASSERT_TRUE(bus.ok()) << bus.error().message();
    bool got = false;
    for (int i = 0; i < 100 && !got; ++i) {
      (*bus)->publish_event("edge1", "connect", "x");  // not subscribed: never arrives
      wire::BatchBuilder b;
      std::vector<InterfaceInfo> ifaces{{"eth0", 1, 65535}};
      b.reset(1, ifaces);
      std::vector<uint8_t> data(60, static_cast<uint8_t>(round));
      b.add_packet(0, 1'700'000'000'000'000'000ull, 60, data);
      auto frame = b.finish(static_cast<uint64_t>(i + 1), 1);
      (*bus)->publish_batch("edge1", std::vector<uint8_t>(frame.begin() + wire::kFrameHeaderBytes, frame.end()));
      got = (*sub)->receive(parts, 50);
    }
    ASSERT_TRUE(got) << "round " << round << ": " << (*sub)->last_error();
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_EQ(str(parts[0]), "data.v2.edge1");
    EXPECT_EQ(parts[2][0], round);
    EXPECT_TRUE((*sub)->connected());
  }
}

// A peer that accepts and answers with something that is not ZMTP 3.
void bad_publisher(int listen_fd, std::string reply) {
  for (;;) {
    auto acc = wire::tcp_accept(listen_fd);
    if (acc.ok() && *acc) {
      ::send((*acc)->fd, reply.data(), reply.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(20ms);
      ::close((*acc)->fd);
      return;
    }
    std::this_thread::sleep_for(5ms);
  }
}

TEST(ZmtpSubscriber, ProtocolViolationsAreNamedAndRetried) {
  struct Case {
    std::string reply;
    std::string error;
  };
  std::string greeting(64, '\0');
  greeting[0] = '\xff';
  greeting[9] = '\x7f';
  greeting[10] = 3;
  greeting.replace(12, 4, "NULL");
  std::string ready_sub("\x04\x19\x05READY\x0bSocket-Type\0\0\0\x03SUB", 27);
  std::string curve = greeting;
  curve.replace(12, 5, "CURVE");
  const Case cases[] = {
      {"HTTP/1.1 400 Bad Request\r\n\r\n", "bad greeting signature"},
      {std::string("\xff\0\0\0\0\0\0\0\0\x01", 10), "not a ZMTP 3 peer"},
      {curve, "other than NULL"},
      {greeting + ready_sub, "SUB socket, not a publisher"},
      {greeting + std::string("\x00\x03" "abc", 5), "message before READY"},
      {greeting + std::string("\x40\x01x", 3), "bad ZMTP frame flags"},
      {greeting + std::string("\x02\x00\x00\x00\x00\x10\x00\x00\x00", 9), "ZMTP frame of"},
  };
  for (const auto& c : cases) {
    auto lfd = wire::tcp_listen({"127.0.0.1", 0});
    ASSERT_TRUE(lfd.ok());
    uint16_t port = *wire::bound_port(*lfd);
    std::thread peer(bad_publisher, *lfd, c.reply);
    auto sub = Subscriber::create("tcp://127.0.0.1:" + std::to_string(port), {""});
    ASSERT_TRUE(sub.ok());
    Subscriber::Parts parts;
    for (int i = 0; i < 20 && (*sub)->failures() == 0; ++i) EXPECT_FALSE((*sub)->receive(parts, 50));
    peer.join();
    ::close(*lfd);
    EXPECT_NE((*sub)->last_error().find(c.error), std::string::npos) << c.error << " / " << (*sub)->last_error();
    EXPECT_FALSE((*sub)->connected());
  }
}

TEST(ZmtpSubscriber, BadEndpointsAreErrorsUpFront) {
  EXPECT_FALSE(Subscriber::create("ipc:///tmp/x", {}).ok());
  EXPECT_FALSE(Subscriber::create("tcp://nohostport", {}).ok());
  EXPECT_FALSE(Subscriber::create("tcp://127.0.0.1:0", {}).ok());
  EXPECT_TRUE(Subscriber::create("tcp://[::1]:5555", {}).ok());
}

}  // namespace
}  // namespace trawl::live::zmtp
