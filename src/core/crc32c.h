// CRC32C (Castagnoli), chainable: crc32c(b, crc32c(a)) == crc32c(a ++ b).
// Uses SSE4.2 (three interleaved streams) when the CPU has it, a
// slicing-by-8 table otherwise. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <span>

namespace trawl {

uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

namespace crc32c_detail {
// The table path alone, so tests can check it against the SSE4.2 path.
uint32_t crc32c_table(std::span<const uint8_t> data, uint32_t crc = 0);
}  // namespace crc32c_detail

}  // namespace trawl
