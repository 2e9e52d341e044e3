// libFuzzer target: the index decoder, the index rebuild (zstd frames and
// plain pcapng) and the flow extractor over arbitrary bytes must never
// crash or read out of bounds; a decoded index re-encodes to bytes that
// decode to the same index.
#include <cstddef>
#include <cstdint>
#include <span>

#include "store/flow.h"
#include "store/segment_index.h"

using namespace trawl::store;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  for (bool journal : {false, true}) {
    auto idx = decode_index(input, journal);
    if (!idx.ok()) continue;
    std::vector<uint8_t> again;
    encode_index_header(again, idx->compressed, idx->block_bytes);
    for (const auto& b : idx->blocks) encode_index_block(again, b);
    auto back = decode_index(again, true);
    if (!back.ok() || back->blocks != idx->blocks) __builtin_trap();
    for (const auto& b : idx->blocks) (void)decode_block_bytes(input, idx->compressed, b);
  }
  if (size > 0) {
    auto rebuilt = rebuild_index(input.subspan(1), data[0] & 1, 4096);
    (void)decode_tail(input.subspan(1), data[0] & 1, rebuilt.covered_end());
    (void)extract_flow(static_cast<uint16_t>(data[0] % 4 == 0 ? 1 : data[0] % 4 == 1 ? 113 : data[0] % 4 == 2 ? 276 : 101),
                       input.subspan(1));
  }
  return 0;
}
