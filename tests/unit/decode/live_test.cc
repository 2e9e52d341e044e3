// The live feed subscriber against a real libzmq PUB socket publishing the
// osmo-pcap v1 format.
#include <gtest/gtest.h>

#include <zmq.hpp>

#include <chrono>
#include <thread>

#include "decode/analyzer.h"
#include "decode/live_source.h"
#include "packet_builder.h"

namespace trawl::decode {
namespace {

std::vector<uint8_t> pcap_file_header() {
  testing::PcapBuilder b(101);
  return b.bytes;
}

std::vector<uint8_t> pcap_record(uint64_t ts_us, std::span<const uint8_t> d) {
  testing::PcapBuilder b(101);
  b.add(ts_us, d);
  return std::vector<uint8_t>(b.bytes.begin() + 24, b.bytes.end());
}

void publish(zmq::socket_t& pub, const std::string& topic, std::span<const uint8_t> hdr, std::span<const uint8_t> rec) {
  pub.send(zmq::buffer(topic), zmq::send_flags::sndmore);
  pub.send(zmq::buffer(hdr.data(), hdr.size()), zmq::send_flags::sndmore);
  pub.send(zmq::buffer(rec.data(), rec.size()), zmq::send_flags::none);
}

TEST(LiveSource, ReceivesDataOfOneAgentAndCountsEvents) {
  zmq::context_t ctx;
  zmq::socket_t pub(ctx, zmq::socket_type::pub);
  pub.bind("tcp://127.0.0.1:*");
  std::string ep = pub.get(zmq::sockopt::last_endpoint);
  auto src = LiveSource::connect(ep, "edge1");
  ASSERT_TRUE(src.ok()) << src.error().message();

  std::vector<nlohmann::json> out;
  auto an = Analyzer::create({"rtp"}, [&](nlohmann::json&& j) { out.push_back(std::move(j)); }, {});
  ASSERT_TRUE(an.ok());
  auto hdr = pcap_file_header();
  // SUB sockets join late: publish a probe until the subscription is live.
  Frame f;
  bool joined = false;
  for (int i = 0; i < 500 && !joined; ++i) {
    auto probe = testing::ipv4_udp(1, 2, 9, 9, std::vector<uint8_t>{1});
    publish(pub, "data.v1.edge1", hdr, pcap_record(1, probe));
    auto n = (*src)->next(f, 10);
    ASSERT_TRUE(n.ok());
    joined = *n == LiveSource::Next::kFrame;
  }
  ASSERT_TRUE(joined);
  while (true) {  // drain extra probes
    auto n = (*src)->next(f, 50);
    if (*n == LiveSource::Next::kTimeout) break;
  }
  for (int i = 0; i < 10; ++i) {
    auto r = testing::rtp(0, static_cast<uint16_t>(i), 160u * i, 7);
    auto pkt = testing::ipv4_udp(0x0a000001, 0x0a000002, 30000, 30002, r);
    publish(pub, "data.v1.edge10", hdr, pcap_record(2'000'000 + 20'000 * i, pkt));  // other agent
    publish(pub, "data.v1.edge1", hdr, pcap_record(1'000'000 + 20'000 * i, pkt));
  }
  pub.send(zmq::buffer(std::string("event.v1.connect.edge1")), zmq::send_flags::sndmore);
  pub.send(zmq::buffer(std::string("hello")), zmq::send_flags::none);
  publish(pub, "data.v1.edge1", std::vector<uint8_t>{1, 2, 3}, pcap_record(0, std::vector<uint8_t>{}));  // bad
  int frames = 0;
  while (true) {
    auto n = (*src)->next(f, 300);
    ASSERT_TRUE(n.ok());
    if (*n == LiveSource::Next::kTimeout) break;
    (*an)->frame(f);
    ++frames;
  }
  (*an)->finish();
  EXPECT_EQ(frames, 10);
  EXPECT_EQ((*src)->events(), 1u);
  EXPECT_EQ((*src)->anomalies().get("live.short_file_header"), 1u);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0]["kind"], "rtp");
  EXPECT_EQ(out[0]["packets"], 10);
  EXPECT_EQ(out[0]["lost"], 0);
}

}  // namespace
}  // namespace trawl::decode
