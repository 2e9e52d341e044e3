// Time arguments of `trawl query` / the HTTP API: RFC 3339 ("2026-11-22T10:30:00Z",
// with or without a fraction, "Z" or "+01:00"), relative to now ("-15m",
// "-2h", "-1d", "-30s", "-500ms"), "now", or epoch seconds ("1763807400",
// "1763807400.25"). Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/result.h"

namespace trawl::query {

Result<uint64_t> parse_time(std::string_view text, uint64_t now_ns);

}  // namespace trawl::query
