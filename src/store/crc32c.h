// CRC32C (Castagnoli) for the index: block checksums of segment bytes and
// record checksums. Chainable: crc32c(b, crc32c(a)) == crc32c(a ++ b).
// Uses SSE4.2 when the CPU has it. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <span>

namespace trawl::store {

uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

}  // namespace trawl::store
