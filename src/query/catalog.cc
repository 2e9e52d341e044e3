#include "query/catalog.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "store/segment_name.h"

namespace trawl::query {
namespace fs = std::filesystem;

std::vector<std::string> list_agents(const fs::path& data_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(data_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec)) continue;
    std::string agent = it->path().filename().string();
    bool any = false;
    std::error_code ec2;
    for (fs::directory_iterator f(it->path(), ec2), e2; !ec2 && f != e2 && !any; f.increment(ec2))
      any = store::parse_segment_file_name(agent, f->path().filename().string()).has_value();
    if (any) out.push_back(std::move(agent));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<SegmentEntry>> list_segments(const fs::path& data_dir, const std::string& agent) {
  std::vector<SegmentEntry> out;
  std::error_code ec;
  const fs::path dir = data_dir / agent;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    auto p = store::parse_segment_file_name(agent, name);
    if (!p) continue;
    SegmentEntry e;
    e.agent = agent;
    e.path = it->path();
    e.start_ns = p->start_ns;
    e.sealed = p->sealed;
    e.compressed = p->compressed;
    std::error_code ec2;
    e.file_bytes = fs::file_size(e.path, ec2);
    out.push_back(std::move(e));
  }
  if (ec) return Error(fmt::format("listing {}: {}", dir.string(), ec.message()));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.start_ns != b.start_ns ? a.start_ns < b.start_ns : a.path < b.path;
  });
  return out;
}

Result<LoadedSegment> load_segment(const SegmentEntry& entry, bool write_back,
                                   const std::function<void(const std::string&)>& log) {
  LoadedSegment seg;
  seg.entry = entry;
  // Index first, then the segment: the segment then covers all the index
  // names (the writer journals a block only once it is durable).
  auto index_path = [](const SegmentEntry& e) {
    return e.path.parent_path() / store::index_file_name(e.path.filename().string());
  };
  auto idx = store::read_index_file(index_path(seg.entry), !seg.entry.sealed);
  auto file = store::pcapng::MappedFile::open(seg.entry.path);
  if (!file.ok() && !seg.entry.sealed) {
    // Sealed since it was listed.
    fs::path sealed = seg.entry.path;
    sealed.replace_extension();
    seg.entry.path = sealed;
    seg.entry.sealed = true;
    idx = store::read_index_file(index_path(seg.entry), false);
    file = store::pcapng::MappedFile::open(sealed);
  }
  if (!file.ok()) return std::move(file).error().with_context("opening segment");
  seg.file = std::move(*file);
  seg.entry.file_bytes = seg.file.bytes().size();
  const uint64_t size = seg.file.bytes().size();

  std::string problem;
  if (!idx.ok()) {
    problem = idx.error().message();
  } else if (idx->compressed != seg.entry.compressed) {
    problem = "index says the segment is " + std::string(idx->compressed ? "compressed" : "plain");
  } else if (idx->covered_end() > size) {
    problem = fmt::format("index covers {} bytes but the segment has {}", idx->covered_end(), size);
  } else if (seg.entry.sealed && (idx->covered_end() != size || idx->segment_size != size)) {
    problem = fmt::format("index covers {} of the segment's {} bytes", idx->covered_end(), size);
  }
  if (problem.empty()) {
    seg.index = std::move(*idx);
  } else {
    seg.index = store::rebuild_index(seg.file.bytes(), seg.entry.compressed);
    seg.index_rebuilt = true;
    seg.index_problem = problem;
    // An open segment has no journal until its first block completes:
    // nothing to report then.
    const bool expected = !seg.entry.sealed && !fs::exists(index_path(seg.entry));
    std::string line = fmt::format("index of {} unusable ({}); rebuilt from the segment",
                                   seg.entry.path.filename().string(), problem);
    if (seg.entry.sealed && write_back && ::access(seg.entry.path.parent_path().c_str(), W_OK) == 0) {
      if (auto st = store::write_index_file(index_path(seg.entry), seg.index, size); st.ok())
        line += " and rewritten";
    }
    if (log && !expected) log(line);
  }
  seg.tail_offset = seg.index.covered_end();
  return seg;
}

}  // namespace trawl::query
