// `trawl coverage`: was everything captured for this agent and window? Reads
// the completeness ledger from the data directory, or asks a collector's API.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "collector/ledger.h"
#include "core/clock.h"
#include "core/time_parse.h"
#include "web/http_server.h"

namespace trawl::cli {

Command add_coverage_command(CLI::App& app) {
  auto* sub = app.add_subcommand("coverage", "Was everything captured? Per-minute completeness of one agent's capture");
  sub->footer(
      "Each minute is complete (the agent reported and nothing was lost), loss (packets dropped by the kernel\n"
      "ring, the agent's spool policy, or otherwise), no-reports (no evidence either way: agent down or not\n"
      "connected), or uncertain. Exit status: 0 complete, 3 incomplete, 1 error.\n"
      "Examples:\n  trawl coverage --data /srv/trawl --agent edge1 --from -2h\n"
      "  trawl coverage --collector 10.0.0.5:9100 --agent edge1 --from 2026-11-22T10:00:00Z --to 2026-11-22T11:00:00Z --json");
  struct State {
    std::string data, collector, agent, from = "-1h", to = "now";
    bool json = false;
  };
  auto st = std::make_shared<State>();
  sub->add_option("--agent", st->agent, "Agent name")->required();
  sub->add_option("--data", st->data, "The collector's data directory (read the ledger directly)");
  sub->add_option("--collector", st->collector, "Ask this collector's API instead (its --metrics-listen ADDR:PORT)");
  sub->add_option("--from", st->from, "Window start: RFC 3339, -15m, now or epoch seconds")->capture_default_str();
  sub->add_option("--to", st->to, "Window end (same forms)")->capture_default_str();
  sub->add_flag("--json", st->json, "Print the JSON document (same as GET /api/v1/coverage)");
  return [st]() -> int {
    if (st->data.empty() == st->collector.empty()) {
      spdlog::error("trawl coverage: give exactly one of --data DIR or --collector ADDR:PORT");
      return 2;
    }
    std::string json;
    if (!st->collector.empty()) {
      auto body = web::http_get(st->collector, fmt::format("/api/v1/coverage?agent={}&from={}&to={}", web::url_encode(st->agent),
                                                           web::url_encode(st->from), web::url_encode(st->to)));
      if (!body) {
        spdlog::error("trawl coverage: {}", body.error().message());
        return 1;
      }
      json = *body;
    } else {
      uint64_t now = SystemClock::instance().wall_ns();
      auto from = parse_time(st->from, now);
      auto to = parse_time(st->to, now);
      if (!from || !to) {
        spdlog::error("trawl coverage: {}", (!from ? from.error() : to.error()).message());
        return 2;
      }
      if (*to < *from) {
        spdlog::error("trawl coverage: --to is before --from");
        return 2;
      }
      auto dir = std::filesystem::path(st->data) / st->agent;
      if (!std::filesystem::is_directory(dir)) {
        spdlog::error("trawl coverage: no agent {} in {}", st->agent, st->data);
        return 1;
      }
      auto t = collector::read_ledger(dir / collector::kLedgerFileName);
      if (!t) {
        spdlog::error("trawl coverage: {}", t.error().message());
        return 1;
      }
      json = collector::coverage_json(collector::coverage(*t, st->agent, *from, *to));
    }
    auto j = nlohmann::json::parse(json, nullptr, false);
    if (j.is_discarded() || !j.contains("complete")) {
      spdlog::error("trawl coverage: the collector's answer is not a coverage document");
      return 1;
    }
    if (st->json) {
      std::fputs(j.dump(2).c_str(), stdout);
      std::fputc('\n', stdout);
    } else {
      std::fputs(collector::coverage_table(json).c_str(), stdout);
    }
    return j["complete"].get<bool>() ? 0 : 3;
  };
}

}  // namespace trawl::cli
