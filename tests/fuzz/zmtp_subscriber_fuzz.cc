// libFuzzer target: what a ZeroMQ subscriber may send to the publisher
// (greeting, READY, subscriptions), fed in chunks; half the runs start with a
// valid greeting so the frame parser gets exercised.
#include <cstring>
#include <vector>

#include "live/zmtp.h"

namespace {
struct Sink : trawl::live::zmtp::SubscriberParser::Handler {
  size_t n = 0;
  void subscribe(std::string_view p) override { n += p.size() + 1; }
  void cancel(std::string_view p) override { n += p.size(); }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  trawl::live::zmtp::SubscriberParser p;
  Sink s;
  std::vector<uint8_t> in;
  if (size > 0 && (data[0] & 1)) {
    in.assign(64, 0);
    in[0] = 0xff;
    in[9] = 0x7f;
    in[10] = 3;
    std::memcpy(&in[12], "NULL", 4);
    const char ready[] = "\x04\x19\x05READY\x0bSocket-Type\0\0\0\x03SUB";
    in.insert(in.end(), ready, ready + 27);
  }
  in.insert(in.end(), data, data + size);
  size_t pos = 0;
  while (pos < in.size()) {
    size_t n = std::min<size_t>(in.size() - pos, 1 + in[pos] % 61);
    if (!p.feed({in.data() + pos, n}, s).ok()) break;
    pos += n;
  }
  return 0;
}
