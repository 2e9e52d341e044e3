#include "live/zmtp.h"

#include <gtest/gtest.h>

#include "core/bytes.h"

namespace trawl::live::zmtp {
namespace {

struct Rec : SubscriberParser::Handler {
  std::vector<std::string> subs, cancels;
  void subscribe(std::string_view p) override { subs.emplace_back(p); }
  void cancel(std::string_view p) override { cancels.emplace_back(p); }
};

std::vector<uint8_t> greeting(uint8_t major = 3, const char* mech = "NULL") {
  std::vector<uint8_t> g(64, 0);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = major;
  g[11] = 1;
  memcpy(&g[12], mech, strlen(mech));
  return g;
}

std::vector<uint8_t> ready(std::string_view type) {
  std::vector<uint8_t> body;
  ByteWriter w(body);
  w.u8(5);
  w.str("READY");
  w.u8(11);
  w.str("Socket-Type");
  w.u32be(static_cast<uint32_t>(type.size()));
  w.str(type);
  std::vector<uint8_t> f{0x04, static_cast<uint8_t>(body.size())};
  f.insert(f.end(), body.begin(), body.end());
  return f;
}

std::vector<uint8_t> msg(uint8_t op, std::string_view topic) {
  std::vector<uint8_t> b{op};
  b.insert(b.end(), topic.begin(), topic.end());
  std::vector<uint8_t> f;
  append_frame(f, b, false);
  return f;
}

TEST(Zmtp, HandshakeLayout) {
  auto h = publisher_handshake();
  ASSERT_GE(h.size(), 64u);
  EXPECT_EQ(h[0], 0xff);
  EXPECT_EQ(h[9], 0x7f);
  EXPECT_EQ(h[10], 3);
  EXPECT_EQ(std::string(h.begin() + 12, h.begin() + 16), "NULL");
  EXPECT_EQ(h[64], 0x04);  // short command
  EXPECT_EQ(h[65], 25);
  std::string rest(h.begin() + 66, h.end());
  EXPECT_EQ(rest, std::string("\x05READY\x0bSocket-Type\0\0\0\x03PUB", 25));
}

TEST(Zmtp, FrameHeaders) {
  std::vector<uint8_t> out;
  append_frame_header(out, 255, true);
  EXPECT_EQ(out, (std::vector<uint8_t>{0x01, 0xff}));
  out.clear();
  append_frame_header(out, 256, false);
  EXPECT_EQ(out, (std::vector<uint8_t>{0x02, 0, 0, 0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(frame_size(255), 257u);
  EXPECT_EQ(frame_size(256), 265u);
}

TEST(Zmtp, SubscriptionsByteByByte) {
  std::vector<uint8_t> in = greeting();
  auto r = ready("SUB");
  in.insert(in.end(), r.begin(), r.end());
  for (auto& m : {msg(1, "data.v1."), msg(1, ""), msg(0, "data.v1.")}) in.insert(in.end(), m.begin(), m.end());
  SubscriberParser p;
  Rec h;
  for (uint8_t b : in) ASSERT_TRUE(p.feed({&b, 1}, h).ok());
  EXPECT_TRUE(p.ready());
  EXPECT_EQ(h.subs, (std::vector<std::string>{"data.v1.", ""}));
  EXPECT_EQ(h.cancels, (std::vector<std::string>{"data.v1."}));
}

TEST(Zmtp, Zmtp31SubscribeCommand) {
  std::vector<uint8_t> in = greeting();
  auto r = ready("XSUB");
  in.insert(in.end(), r.begin(), r.end());
  std::vector<uint8_t> body{9};
  for (char c : std::string("SUBSCRIBEevent.")) body.push_back(static_cast<uint8_t>(c));
  in.push_back(0x04);
  in.push_back(static_cast<uint8_t>(body.size()));
  in.insert(in.end(), body.begin(), body.end());
  SubscriberParser p;
  Rec h;
  ASSERT_TRUE(p.feed(in, h).ok());
  EXPECT_EQ(h.subs, (std::vector<std::string>{"event."}));
}

TEST(Zmtp, RejectsBadPeers) {
  Rec h;
  {
    SubscriberParser p;
    std::vector<uint8_t> http{'G', 'E', 'T', ' '};
    EXPECT_FALSE(p.feed(http, h).ok());
  }
  {
    SubscriberParser p;
    auto g = greeting(2);
    EXPECT_FALSE(p.feed(g, h).ok());
  }
  {
    SubscriberParser p;
    auto g = greeting(3, "PLAIN");
    EXPECT_FALSE(p.feed(g, h).ok());
  }
  {
    SubscriberParser p;
    auto in = greeting();
    auto r = ready("PUSH");
    in.insert(in.end(), r.begin(), r.end());
    EXPECT_FALSE(p.feed(in, h).ok());
  }
  {
    SubscriberParser p;
    auto in = greeting();
    auto m = msg(1, "x");  // before READY
    in.insert(in.end(), m.begin(), m.end());
    EXPECT_FALSE(p.feed(in, h).ok());
  }
  {
    SubscriberParser p;
    auto in = greeting();
    auto r = ready("SUB");
    in.insert(in.end(), r.begin(), r.end());
    std::vector<uint8_t> huge{0x02, 0, 0, 0, 0, 0x10, 0, 0, 0};  // 256 MiB frame
    in.insert(in.end(), huge.begin(), huge.end());
    EXPECT_FALSE(p.feed(in, h).ok());
  }
}

}  // namespace
}  // namespace trawl::live::zmtp
