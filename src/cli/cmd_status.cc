// `trawl status`: a terminal table of a collector's agents (from its
// /api/v1/agents), once or refreshed with --watch.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "web/http_server.h"

namespace trawl::cli {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f}{}", b, units[u]) : fmt::format("{:.1f}{}", b, units[u]);
}

std::string human_age(double s) {
  if (s < 1) return fmt::format("{:.0f}ms", s * 1000);
  if (s < 120) return fmt::format("{:.1f}s", s);
  if (s < 7200) return fmt::format("{:.0f}m", s / 60);
  if (s < 172800) return fmt::format("{:.1f}h", s / 3600);
  return fmt::format("{:.1f}d", s / 86400);
}

}  // namespace

// The table for one /api/v1/agents document.
std::string status_table(const nlohmann::json& j) {
  std::string out = fmt::format("{:<16} {:<27} {:>10} {:>10} {:>12} {:>12} {:>10} {:>9} {:>10}\n", "AGENT",
                                "STATE (UTC)", "PPS", "MBIT/S", "KERNEL-DROP", "AGENT-DROP", "SPOOL", "LAG", "DISK");
  for (const auto& a : j["agents"]) {
    bool up = a.value("connected", false);
    std::string state = up ? "up " + a.value("connected_since", std::string()).substr(0, 19)
                           : "DOWN " + a.value("disconnected_since", std::string()).substr(0, 19);
    std::string lag = a.contains("lag_seconds") ? human_age(a["lag_seconds"].get<double>()) : "-";
    std::string spool = human_bytes(static_cast<double>(a.value("spool_bytes", uint64_t{0})));
    if (a.value("spool_batches", uint64_t{0}) > 0) {
      spool += fmt::format("/{}", human_age(a.value("spool_oldest_unacked_age_seconds", 0.0)));
    }
    out += fmt::format("{:<16} {:<27} {:>10.0f} {:>10.1f} {:>12} {:>12} {:>10} {:>9} {:>10}\n",
                       a.value("agent", std::string("?")), state, a.value("packets_per_second", 0.0),
                       a.value("bits_per_second", 0.0) / 1e6, a.value("kernel_dropped_packets", uint64_t{0}),
                       a.value("agent_dropped_packets", uint64_t{0}), spool, lag,
                       human_bytes(static_cast<double>(a.value("disk_bytes", uint64_t{0}))));
  }
  if (j["agents"].empty()) out += "(no agent has connected since the collector started)\n";
  if (j.contains("disk_total_bytes") && j["disk_total_bytes"].get<uint64_t>() > 0) {
    out += fmt::format("data file system: {} free of {}\n", human_bytes(static_cast<double>(j["disk_free_bytes"].get<uint64_t>())),
                       human_bytes(static_cast<double>(j["disk_total_bytes"].get<uint64_t>())));
  }
  return out;
}

Command add_status_command(CLI::App& app) {
  auto* sub = app.add_subcommand("status", "Show a collector's agents: state, capture rate, drops, spool, lag, disk");
  sub->footer("The collector must run with --metrics-listen; point --collector at that address.\n"
              "Columns: PPS/MBIT/S stored rate over the last seconds; KERNEL-DROP and AGENT-DROP cumulative since the\n"
              "agent's capture started; SPOOL the agent's unacknowledged spool (bytes/oldest); LAG now minus the newest\n"
              "stored packet.\nExample:\n  trawl status --collector 10.0.0.5:9100 --watch");
  struct State {
    std::string collector = "127.0.0.1:9100";
    double watch = 0;
    uint64_t count = 0;
    bool json = false;
  };
  auto st = std::make_shared<State>();
  sub->add_option("--collector", st->collector, "The collector's --metrics-listen ADDR:PORT")->capture_default_str();
  sub->add_option("--watch", st->watch, "Refresh every SECONDS until interrupted")->expected(0, 1)->default_str("2");
  sub->add_option("--count", st->count, "With --watch: stop after this many refreshes (0 = until interrupted)");
  sub->add_flag("--json", st->json, "Print the JSON document (same as GET /api/v1/agents)");
  return [st, sub]() -> int {
    bool watch = sub->count("--watch") > 0;
    double every = st->watch > 0 ? st->watch : 2.0;
    if (watch) install_signal_handlers();
    for (uint64_t n = 1;; ++n) {
      auto body = web::http_get(st->collector, "/api/v1/agents", 5000);
      std::string text;
      int rc = 0;
      if (!body) {
        text = fmt::format("trawl status: {}\n", body.error().message());
        rc = 1;
      } else {
        auto j = nlohmann::json::parse(*body, nullptr, false);
        if (j.is_discarded() || !j.contains("agents")) {
          text = "trawl status: the collector's answer is not an agents document\n";
          rc = 1;
        } else {
          text = st->json ? j.dump(2) + "\n" : status_table(j);
        }
      }
      if (watch && isatty(STDOUT_FILENO)) std::fputs("\033[H\033[2J", stdout);
      std::fputs(text.c_str(), rc ? stderr : stdout);
      std::fflush(stdout);
      if (!watch) return rc;
      if (st->count && n >= st->count) return rc;
      auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(every * 1000));
      while (std::chrono::steady_clock::now() < until) {
        if (stop_requested().load()) return 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  };
}

}  // namespace trawl::cli
