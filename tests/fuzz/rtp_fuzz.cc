// libFuzzer target: parse_rtp and the stream tracker fed datagrams cut
// from the input.
#include "decode/rtp.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::decode;
  std::span<const uint8_t> in(data, size);
  RtpHeader h;
  (void)parse_rtp(in, h);
  RtpDecoder dec([](nlohmann::json&& j) { (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }, RtpDecoder::Options{true});
  L4Packet p;
  p.proto = kProtoUdp;
  p.src.family = p.dst.family = 4;
  size_t pos = 0;
  uint64_t ts = 0;
  while (pos + 2 < size) {
    size_t n = std::min<size_t>(size - pos - 2, data[pos] % 64 + 12);
    p.sport = data[pos + 1] % 4 == 0 ? 5060 : 40000;
    p.dport = 40002;
    p.ts_ns = ts += data[pos + 1] * 1000000ull;
    p.payload = in.subspan(pos + 2, n);
    if (dec.wants_udp(p)) dec.on_udp(p);
    pos += 2 + n;
  }
  dec.finish();
  return 0;
}
