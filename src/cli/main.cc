// trawl: one binary, subcommands. This file only parses flags and hands
// over to the modules.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <csignal>

#include "cli/commands.h"

namespace trawl::cli {

std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace {
void on_signal(int) { stop_requested().store(true); }
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

  const std::pair<const char*, Command> commands[] = {
      {"up", add_up_command(app)},
      {"agent", add_agent_command(app)},
      {"collector", add_collector_command(app)},
      {"pki", add_pki_command(app)},
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(log_level));
  for (const auto& [name, cmd] : commands) {
    if (app.got_subcommand(name)) return cmd();
  }
  return 2;
}
