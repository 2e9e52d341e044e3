// libFuzzer target: parse_gsmtap and the per-type counts.
#include "decode/gsmtap.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::decode;
  GsmtapHeader h;
  (void)parse_gsmtap({data, size}, h);
  GsmtapDecoder dec([](nlohmann::json&& j) { (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }, {});
  L4Packet p;
  p.proto = kProtoUdp;
  p.src.family = p.dst.family = 4;
  p.dport = 4729;
  p.payload = {data, size};
  dec.on_udp(p);
  dec.finish();
  return 0;
}
