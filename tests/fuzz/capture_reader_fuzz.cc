// libFuzzer target: the pcap/pcapng reader (and the analyzer on whatever
// frames it yields).
#include "decode/analyzer.h"
#include "decode/capture_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::decode;
  CaptureReader r(memory_byte_stream(std::vector<uint8_t>(data, data + size)));
  auto an = Analyzer::create({"all"}, [](nlohmann::json&&) {}, {});
  for (int i = 0; i < 10000; ++i) {
    if (r.next() != CaptureReader::Next::kFrame) break;
    (*an)->frame(r.frame());
  }
  (*an)->finish();
  return 0;
}
