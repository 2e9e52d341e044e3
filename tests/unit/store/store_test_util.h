// Test helpers: temp directories and reading stored segments back through
// PcapngReader into plain values.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "store/pcapng.h"
#include "store/segment_index.h"
#include "store/segment_name.h"

namespace trawl::store::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "trawl-store-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct StoredPacket {
  std::string iface;
  uint64_t ts_ns = 0;
  uint32_t orig_len = 0;
  std::vector<uint8_t> data;
  std::vector<std::string> comments;
  bool operator==(const StoredPacket& o) const {  // comments are not compared
    return iface == o.iface && ts_ns == o.ts_ns && orig_len == o.orig_len && data == o.data;
  }
};
struct StoredGap {
  std::string iface;  // "*" for all
  pcapng::GapRecord rec;  // interface_id zeroed (segment-specific)
  bool operator==(const StoredGap&) const = default;
};
struct StoredStats {
  std::string iface;
  uint64_t ts_ns = 0, received = 0, if_drops = 0, os_drops = 0;
  bool operator==(const StoredStats&) const = default;
};
struct StoredBatch {
  uint64_t spool_id = 0, seq = 0;
  std::vector<StoredPacket> packets;
  std::vector<StoredGap> gaps;
  std::vector<StoredStats> stats;
  bool operator==(const StoredBatch&) const = default;
};
struct StoredSegment {
  std::filesystem::path path;
  std::vector<StoredBatch> batches;
  std::vector<StoredPacket> trailing_packets;  // after the last BATCH MARK
  std::optional<pcapng::SealRecord> seal;
  bool seal_is_last = false;
  bool clean_end = false;
  std::string error;
  std::string shb_comment;
  uint64_t packets() const {
    uint64_t n = 0;
    for (const auto& b : batches) n += b.packets.size();
    return n;
  }
};

inline StoredSegment read_segment(const std::filesystem::path& path) {
  StoredSegment seg;
  seg.path = path;
  auto file = pcapng::MappedFile::open(path);
  if (!file.ok()) {
    seg.error = file.error().message();
    return seg;
  }
  // .zst: all frames decoded (decode_tail stops at the first broken one).
  std::vector<uint8_t> raw;
  std::span<const uint8_t> bytes = file->bytes();
  if (path.string().ends_with(".zst") || path.string().ends_with(".zst.part")) {
    raw = decode_tail(bytes, true, 0);
    bytes = raw;
  }
  std::optional<pcapng::PcapngReader> reader(std::in_place, bytes);
  StoredBatch cur;
  for (;;) {
    auto n = reader->next();
    if (n == pcapng::PcapngReader::Next::kEnd) {
      seg.clean_end = true;
      break;
    }
    if (n == pcapng::PcapngReader::Next::kCorrupt) {
      seg.error = reader->corrupt_reason();
      break;
    }
    const auto& b = reader->block();
    const auto& ifs = reader->interfaces();
    seg.seal_is_last = false;
    if (const auto* shb = std::get_if<pcapng::ShbView>(&b.view)) {
      seg.shb_comment = pcapng::find_string_option(shb->options, pcapng::kOptComment).value_or("");
    } else if (const auto* epb = std::get_if<pcapng::EpbView>(&b.view)) {
      StoredPacket p;
      p.iface = std::string(ifs[epb->interface_id].name);
      p.ts_ns = reader->ts_ns(*epb);
      p.orig_len = epb->orig_len;
      p.data.assign(epb->data.begin(), epb->data.end());
      pcapng::OptionReader opts(epb->options);
      pcapng::OptionView o;
      while (opts.next(o))
        if (o.code == pcapng::kOptComment) p.comments.emplace_back(o.value.begin(), o.value.end());
      cur.packets.push_back(std::move(p));
    } else if (const auto* isb = std::get_if<pcapng::IsbView>(&b.view)) {
      StoredStats s;
      s.iface = std::string(ifs[isb->interface_id].name);
      s.ts_ns = ifs[isb->interface_id].tsresol == 9 ? isb->timestamp : 0;
      s.received = pcapng::find_u64_option(isb->options, pcapng::kIsbIfRecv).value_or(0);
      s.if_drops = pcapng::find_u64_option(isb->options, pcapng::kIsbIfDrop).value_or(0);
      s.os_drops = pcapng::find_u64_option(isb->options, pcapng::kIsbOsDrop).value_or(0);
      cur.stats.push_back(s);
    } else if (auto rec = pcapng::decode_trawl_record(b)) {
      if (const auto* m = std::get_if<pcapng::BatchMark>(&*rec)) {
        cur.spool_id = m->spool_id;
        cur.seq = m->seq;
        seg.batches.push_back(std::move(cur));
        cur = StoredBatch{};
      } else if (const auto* g = std::get_if<pcapng::GapRecord>(&*rec)) {
        StoredGap sg;
        sg.iface = g->interface_id == pcapng::kAllInterfaces
                       ? "*"
                       : (g->interface_id < ifs.size() ? std::string(ifs[g->interface_id].name)
                                                       : "?");
        sg.rec = *g;
        sg.rec.interface_id = 0;
        cur.gaps.push_back(sg);
      } else if (const auto* s = std::get_if<pcapng::SealRecord>(&*rec)) {
        seg.seal = *s;
        seg.seal_is_last = true;
      }
    }
  }
  seg.trailing_packets = std::move(cur.packets);
  return seg;
}

// This agent's segment files in name (= time) order.
inline std::vector<std::filesystem::path> list_segments(const std::filesystem::path& dir,
                                                        const std::string& agent,
                                                        bool include_parts = true) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    auto parsed = parse_segment_file_name(agent, e.path().filename().string());
    if (parsed && (parsed->sealed || include_parts)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace trawl::store::testing
