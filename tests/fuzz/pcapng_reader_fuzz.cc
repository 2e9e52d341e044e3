// libFuzzer target: PcapngReader over arbitrary bytes must never crash, read
// out of bounds or break its own invariants (valid_end within the input,
// a corruption reported exactly at valid_end).
#include <cstddef>
#include <cstdint>
#include <span>

#include "store/pcapng.h"

using namespace trawl::store::pcapng;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  PcapngReader reader(input);
  PcapngReader::Next next;
  uint64_t sink = 0;
  while ((next = reader.next()) == PcapngReader::Next::kBlock) {
    const Block& b = reader.block();
    if (b.offset + b.total_length != reader.valid_end()) __builtin_trap();
    if (auto rec = decode_trawl_record(b)) sink += rec->index();
    if (const auto* epb = std::get_if<EpbView>(&b.view)) {
      sink += reader.ts_ns(*epb);
      for (uint8_t byte : epb->data) sink += byte;
    }
    if (const auto* idb = std::get_if<IdbView>(&b.view)) sink += idb->name().size() + idb->tsresol();
    if (const auto* isb = std::get_if<IsbView>(&b.view))
      sink += find_u64_option(isb->options, kIsbIfRecv).value_or(0);
    if (const auto* shb = std::get_if<ShbView>(&b.view))
      sink += find_string_option(shb->options, kOptComment).value_or("").size();
  }
  if (reader.valid_end() > size) __builtin_trap();
  if (next == PcapngReader::Next::kCorrupt && reader.corrupt_offset() != reader.valid_end())
    __builtin_trap();
  if (next == PcapngReader::Next::kEnd && reader.valid_end() != size) __builtin_trap();
  // Single-block decoding at every 4-byte offset of the first KiB.
  for (size_t off = 0; off < size && off < 1024; off += 4) {
    if (auto b = decode_block(input.subspan(off), off)) {
      if (b->total_length > size - off) __builtin_trap();
      if (auto rec = decode_trawl_record(*b)) sink += rec->index();
    }
  }
  asm volatile("" : : "r"(sink));
  return 0;
}
