// Segment file names: "<agent>-<UTC start>.pcapng[.zst]", e.g.
// "edge1-20261122T103000.123456789Z.pcapng.zst" (".zst" when the segment is
// zstd-compressed); "<name>.part" while being written. The sidecar index is
// "<segment name>.idx" ("<segment name>.idx.part" while being written). The timestamp has a fixed width, so for one agent lexicographic
// order is chronological order. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace trawl::store {

constexpr std::string_view kSegmentSuffix = ".pcapng";
constexpr std::string_view kZstSuffix = ".zst";
constexpr std::string_view kPartSuffix = ".part";
constexpr std::string_view kIndexSuffix = ".idx";

// "20261122T103000.123456789Z" (always 26 characters for years 1970..9999).
std::string format_segment_stamp(uint64_t wall_ns);
std::optional<uint64_t> parse_segment_stamp(std::string_view stamp);

// "<agent>-<stamp>.pcapng[.zst]" (sealed name; append kPartSuffix while open).
std::string segment_file_name(std::string_view agent, uint64_t start_ns, bool compressed = false);

struct SegmentFileName {
  uint64_t start_ns = 0;
  bool sealed = false;      // false: ".part"
  bool compressed = false;  // ".pcapng.zst[.part]"
};
// Parses a file name of this agent's segment; nullopt for anything else
// (including index files).
std::optional<SegmentFileName> parse_segment_file_name(std::string_view agent,
                                                       std::string_view file_name);

// The index file of a segment: "<segment>.idx" for a sealed segment,
// "<segment without .part>.idx.part" for an open one.
std::string index_file_name(std::string_view segment_file_name);

// "2026-11-22T10:30:00.123456789Z", for comments and logs.
std::string format_utc_ns(uint64_t wall_ns);

}  // namespace trawl::store
