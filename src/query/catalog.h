// What is stored under a data directory: agents (one directory each), their
// segments (sealed and open) and each segment's index. Reads only; safe to
// use while a collector writes (a segment sealed between listing and
// opening is found under its sealed name).
//
// load_segment() maps the segment and reads its index ("<seg>.idx", or the
// ".idx.part" journal of an open segment). A missing or damaged index is
// rebuilt from the segment (logged), and written back for a sealed segment
// when the directory is writable. For an open segment the bytes after the
// index's last block (the frame being written) are left to the caller
// (tail_offset). Not thread-safe per object; blocks on file I/O.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/pcapng.h"
#include "store/segment_index.h"

namespace trawl::query {

struct SegmentEntry {
  std::string agent;
  std::filesystem::path path;
  uint64_t start_ns = 0;
  bool sealed = false;
  bool compressed = false;
  uint64_t file_bytes = 0;
};

// Agent directories (names sorted), skipping anything that holds no segment.
std::vector<std::string> list_agents(const std::filesystem::path& data_dir);
// The agent's segments in name (= start time) order.
Result<std::vector<SegmentEntry>> list_segments(const std::filesystem::path& data_dir,
                                                const std::string& agent);

struct LoadedSegment {
  SegmentEntry entry;
  store::pcapng::MappedFile file;
  store::SegmentIndex index;
  bool index_rebuilt = false;
  std::string index_problem;  // why it was rebuilt
  uint64_t tail_offset = 0;   // bytes from here on are not covered by the index
  std::span<const uint8_t> bytes() const { return file.bytes(); }
};

// log: called with one line for each rebuilt index.
Result<LoadedSegment> load_segment(const SegmentEntry& e, bool write_back,
                                   const std::function<void(const std::string&)>& log);

}  // namespace trawl::query
