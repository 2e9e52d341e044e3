// libFuzzer target: SCTP chunk parsing and DATA reassembly.
#include "decode/sctp.h"

namespace {
class Null : public trawl::decode::StreamHandler {
 public:
  void on_stream_data(const trawl::decode::StreamSegment& s) override { n_ += s.data.size(); }
  void on_stream_gap(uint64_t, bool) override {}
  void on_stream_close(uint64_t) override {}
  size_t n_ = 0;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::decode;
  Anomalies an;
  (void)parse_sctp_chunks({data, size}, an, [](const SctpDataChunk&) {});
  Null h;
  SctpAssembler a(h, [](uint16_t, uint16_t, uint32_t) { return true; });
  L4Packet p;
  p.proto = kProtoSctp;
  p.src.family = p.dst.family = 4;
  p.sport = 3868;
  p.dport = 3868;
  for (size_t pos = 0; pos < size; pos += 64) {
    p.payload = {data + pos, std::min<size_t>(64, size - pos)};
    a.add(p);
  }
  a.finish();
  return 0;
}
