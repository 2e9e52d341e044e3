// libFuzzer target: parse_dns, and the tracker over UDP and a TCP stream.
#include "decode/dns.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::decode;
  std::span<const uint8_t> in(data, size);
  DnsMessage m;
  (void)parse_dns(in, m);
  DnsDecoder dec([](nlohmann::json&& j) { (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }, {});
  L4Packet p;
  p.proto = kProtoUdp;
  p.src.family = p.dst.family = 4;
  p.sport = 5353;
  p.dport = 53;
  p.payload = in;
  dec.on_udp(p);
  StreamSegment s;
  s.conn_id = 1;
  s.src = "a";
  s.dst = "b";
  for (size_t pos = 0; pos < size; pos += 7) {
    s.data = in.subspan(pos, std::min<size_t>(7, size - pos));
    dec.on_stream_data(s);
  }
  dec.on_stream_close(1);
  dec.finish();
  return 0;
}
