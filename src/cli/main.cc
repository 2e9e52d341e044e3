// trawl: one binary, subcommands. This file only parses flags and hands
// over to the modules.
#include <CLI/CLI.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>

#include "cli/commands.h"

namespace trawl::cli {

std::vector<std::string>& global_args() {
  static std::vector<std::string> args;
  return args;
}

std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace {
void on_signal(int) { stop_requested().store(true); }

// %j: the log message as the inside of a JSON string.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            int n = std::snprintf(buf, sizeof buf, "\\u%04x", c);
            dest.append(std::string_view(buf, static_cast<size_t>(n)));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

// One line per event: human-readable by default, JSON objects with
// --log-format json (for log shippers).
void configure_logging(const std::string& format) {
  // Logs go to stderr: stdout belongs to data (trawl query, analyze, tail -w -).
  spdlog::set_default_logger(spdlog::stderr_color_mt("trawl"));
  if (format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonMessageFlag>('j').set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","pid":%P,"msg":"%j"})");
    spdlog::set_formatter(std::move(f));
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
}
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace trawl::cli

int main(int argc, char** argv) {
  using namespace trawl::cli;
  CLI::App app{"trawl: capture at the edge, store in the center, find any packet again.\n"
               "Run `trawl up` to capture this machine's traffic into ./trawl-data."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "trawl " TRAWL_VERSION);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text or json (one JSON object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  // Building every subcommand's flags costs more than a millisecond, most of
  // a short command's run time (`trawl query` for one conversation takes a
  // few ms), so only the subcommand named on the command line is built. With
  // none recognised (`trawl --help`, a typo) all are, for the listing and
  // CLI11's error.
  using Factory = Command (*)(CLI::App&);
  static constexpr std::pair<std::string_view, Factory> factories[] = {
      {"up", add_up_command},         {"agent", add_agent_command},       {"collector", add_collector_command},
      {"pki", add_pki_command},       {"coverage", add_coverage_command}, {"status", add_status_command},
      {"analyze", add_analyze_command}, {"tail", add_tail_command},       {"query", add_query_command},
      {"ls", add_ls_command},
  };
  std::string_view named;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--log-level" || arg == "--log-format") {
      ++i;  // its value
      continue;
    }
    if (arg.starts_with("-")) continue;
    for (const auto& f : factories) {
      if (f.first == arg) named = arg;
    }
    break;  // the first positional argument is the subcommand, or nothing is
  }
  std::vector<std::pair<std::string_view, Command>> commands;
  for (const auto& [name, factory] : factories) {
    if (named.empty() || name == named) commands.emplace_back(name, factory(app));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  configure_logging(log_format);
  global_args() = {"--log-level", log_level, "--log-format", log_format};
  spdlog::set_level(spdlog::level::from_str(log_level));
  for (const auto& [name, cmd] : commands) {
    if (app.got_subcommand(std::string(name))) return cmd();
  }
  return 2;
}
