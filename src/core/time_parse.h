// Parsing the times users type on the command line and in API queries:
//   now | -15m | -2h | -30s | -1.5s | -1d | -500ms   relative to `now_ns`
//   2026-11-22T10:30:00Z | 2026-11-22T10:30:00.123456789+01:00 |
//   2026-11-22 10:30 | 2026-11-22                 RFC 3339 and close relatives (UTC unless an offset is given)
//   1763807400 | 1763807400.25                    Unix epoch seconds
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/result.h"

namespace trawl {

// UTC nanoseconds since the epoch, or an error saying what was expected.
Result<uint64_t> parse_time(std::string_view text, uint64_t now_ns);
// "15m", "2h", "30s", "1.5s", "1d", "500ms", "1h30m" -> nanoseconds.
Result<uint64_t> parse_duration(std::string_view text);

}  // namespace trawl
