// `trawl ls`: agents, segments, time ranges, packet counts and sizes.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "query/catalog.h"
#include "store/segment_name.h"

namespace trawl::cli {

Command add_ls_command(CLI::App& app) {
  auto* sub = app.add_subcommand("ls", "List agents and their stored segments (time range, packets, sizes)");
  struct State {
    std::string data = "./trawl-data";
    std::vector<std::string> agents;
    bool summary = false;
  };
  auto st = std::make_shared<State>();
  sub->add_option("--data", st->data, "Data directory of the collector")->capture_default_str();
  sub->add_option("--agent", st->agents, "Only this agent (repeatable; default all)");
  sub->add_flag("-s,--summary", st->summary, "One line per agent, no segment lines");

  return [st]() -> int {
    auto agents = st->agents.empty() ? query::list_agents(st->data) : st->agents;
    if (agents.empty()) {
      fmt::print(stderr, "trawl ls: no agents with segments in {}\n", st->data);
      return 1;
    }
    auto ts = [](uint64_t ns) { return ns ? store::format_utc_ns(ns) : std::string("-"); };
    int rc = 0;
    for (const auto& agent : agents) {
      auto list = query::list_segments(st->data, agent);
      if (!list) {
        fmt::print(stderr, "trawl ls: {}\n", list.error().message());
        rc = 1;
        continue;
      }
      uint64_t packets = 0, bytes = 0, raw = 0, first = 0, last = 0;
      std::vector<std::string> lines;
      for (const auto& e : *list) {
        auto seg = query::load_segment(e, false, [](const std::string& m) { fmt::print(stderr, "trawl ls: {}\n", m); });
        if (!seg) {
          fmt::print(stderr, "trawl ls: {}: {}\n", e.path.filename().string(), seg.error().message());
          rc = 1;
          continue;
        }
        uint64_t p = 0, r = 0, f = 0, l = 0;
        for (const auto& b : seg->index.blocks) {
          p += b.packets;
          r += b.raw_size;
          if (b.packets && (!f || b.first_ts < f)) f = b.first_ts;
          if (b.packets) l = std::max(l, b.last_ts);
        }
        uint64_t size = seg->bytes().size();
        packets += p;
        bytes += size;
        raw += r;
        if (f && (!first || f < first)) first = f;
        last = std::max(last, l);
        lines.push_back(fmt::format("  {:<58} {:<6} {} .. {} {:>10} pkts {:>10}{}", e.path.filename().string(),
                                    seg->entry.sealed ? "sealed" : "open", ts(f), ts(l), p, format_size(size),
                                    seg->entry.sealed ? "" : " (indexed part)"));
      }
      fmt::print("{}: {} segments, {} .. {}, {} packets, {} on disk ({} pcapng)\n", agent, list->size(), ts(first),
                 ts(last), packets, format_size(bytes), format_size(raw));
      if (!st->summary)
        for (const auto& l : lines) fmt::print("{}\n", l);
    }
    return rc;
  };
}

}  // namespace trawl::cli
