// libFuzzer target: the osmo-pcap message splitter and parser, fed in
// chunks whose sizes come from the input; every packet view is read.
#include <cstring>

#include "live/osmo_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::live::osmo;
  OsmoDecoder d(size > 0 ? 1 + data[0] * 300u : 65535);
  size_t pos = 0;
  uint64_t sum = 0;
  while (pos < size) {
    size_t n = std::min<size_t>(size - pos, 1 + data[pos] % 131);
    auto w = d.writable(n);
    std::memcpy(w.data(), data + pos, n);
    d.commit(n);
    pos += n;
    std::optional<OsmoError> err;
    while (auto m = d.next(err)) {
      for (uint8_t b : m->packet.data) sum += b;
      sum += m->packet.ts_ns + m->link.link_type;
    }
    if (err) break;
  }
  return sum == 42 ? 0 : 0;
}
