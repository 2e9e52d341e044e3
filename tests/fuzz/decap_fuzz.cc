// libFuzzer target: decapsulation (every link type, tunnels, fragments) and
// the whole analyze driver behind it. The first byte picks the link type;
// the rest is split into frames by a length byte so fragment and TCP state
// is exercised across frames.
#include "decode/analyzer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::decode;
  static const uint32_t kLinks[] = {1, 113, 276, 101, 228, 229, 0, 108, 12, 147};
  if (size < 1) return 0;
  auto an = Analyzer::create({"all"}, [](nlohmann::json&& j) { (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }, {});
  if (!an.ok()) return 0;
  uint32_t lt = kLinks[data[0] % (sizeof kLinks / sizeof kLinks[0])];
  size_t pos = 1;
  uint64_t ts = 1;
  while (pos < size) {
    size_t n = size_t{data[pos]} * 4 + 1;  // frame length from a length byte
    ++pos;
    n = std::min(n, size - pos);
    Frame f{lt, ts += 20'000'000, static_cast<uint32_t>(n), {data + pos, n}};
    (*an)->frame(f);
    pos += n;
  }
  (*an)->finish();
  return 0;
}
