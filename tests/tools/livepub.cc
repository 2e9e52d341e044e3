// Test tool: publishes a capture file on a ZeroMQ PUB socket in the
// osmo-pcap v1 live format, as the collector's live feed does.
//   livepub tcp://127.0.0.1:PORT AGENT FILE [DELAY_MS]
// Binds, waits DELAY_MS (default 1000) for subscribers, sends an
// event.v1.connect.AGENT message, then every frame as [data.v1.AGENT,
// 24-byte pcap file header, pcap record], then lingers until delivered.
#include <zmq.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/bytes.h"
#include "decode/capture_reader.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: livepub ENDPOINT AGENT FILE [DELAY_MS]\n");
    return 2;
  }
  std::string agent = argv[2];
  auto r = trawl::decode::CaptureReader::open(argv[3]);
  if (!r.ok()) {
    std::fprintf(stderr, "livepub: %s\n", r.error().message().c_str());
    return 1;
  }
  zmq::context_t ctx;
  zmq::socket_t pub(ctx, zmq::socket_type::pub);
  pub.set(zmq::sockopt::sndhwm, 0);  // never drop: the test counts every frame
  pub.set(zmq::sockopt::linger, 5000);
  pub.bind(argv[1]);
  std::this_thread::sleep_for(std::chrono::milliseconds(argc > 4 ? std::stoi(argv[4]) : 1000));
  std::string ev = "event.v1.connect." + agent;
  pub.send(zmq::buffer(ev), zmq::send_flags::sndmore);
  pub.send(zmq::str_buffer("hello"), zmq::send_flags::none);
  std::string topic = "data.v1." + agent;
  std::vector<uint8_t> hdr, rec;
  uint64_t n = 0;
  while ((*r)->next() == trawl::decode::CaptureReader::Next::kFrame) {
    const auto& f = (*r)->frame();
    hdr.clear();
    trawl::ByteWriter h(hdr);
    h.u32le(0xa1b2c3d4);
    h.u16le(2);
    h.u16le(4);
    h.u32le(0);
    h.u32le(0);
    h.u32le(262144);
    h.u32le(f.link_type);
    rec.clear();
    trawl::ByteWriter w(rec);
    w.u32le(static_cast<uint32_t>(f.ts_ns / 1000000000ull));
    w.u32le(static_cast<uint32_t>(f.ts_ns % 1000000000ull / 1000));
    w.u32le(static_cast<uint32_t>(f.data.size()));
    w.u32le(f.orig_len);
    w.bytes(f.data);
    pub.send(zmq::buffer(topic), zmq::send_flags::sndmore);
    pub.send(zmq::buffer(hdr), zmq::send_flags::sndmore);
    pub.send(zmq::buffer(rec), zmq::send_flags::none);
    ++n;
  }
  std::fprintf(stderr, "livepub: sent %llu frames\n", static_cast<unsigned long long>(n));
  return 0;
}
