// libFuzzer target: the frame splitter and every frame body decoder.
#include <cstring>

#include "wire/frames.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::wire;
  FrameDecoder d(64);
  size_t pos = 0;
  while (pos < size) {
    size_t n = std::min<size_t>(size - pos, 1 + data[pos] % 97);
    auto w = d.writable(n);
    std::memcpy(w.data(), data + pos, n);
    d.commit(n);
    pos += n;
    for (;;) {
      auto f = d.next();
      if (!f.ok()) return 0;
      if (!f->has_value()) break;
      const FrameView& fv = **f;
      switch (fv.type) {
        case FrameType::kHello: (void)decode_hello(fv.body); break;
        case FrameType::kWelcome: (void)decode_welcome(fv.body); break;
        case FrameType::kAck: (void)decode_ack(fv.body); break;
        case FrameType::kError: (void)decode_error(fv.body); break;
        case FrameType::kBatch: {
          auto v = BatchView::parse(fv.body);
          if (v.ok()) {
            uint64_t sum = 0;
            v->for_each([&](const trawl::PacketView& p) { sum += p.data.size() + p.iface; },
                        [&](const trawl::InterfaceStats& s) { sum += s.received; },
                        [&](const trawl::Gap& g) { sum += g.packets; });
            (void)sum;
          }
          break;
        }
        default: break;
      }
    }
  }
  return 0;
}
