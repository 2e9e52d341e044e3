// Subcommands of the `trawl` binary. Each registers its flags on a CLI11
// subcommand and returns the function to run once parsing succeeded.
// Every function returns the process exit code.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "pki/pki.h"

namespace CLI {
class App;
}

namespace trawl::cli {

using Command = std::function<int()>;

// The global flags as given (--log-level X --log-format Y), for commands
// that start trawl child processes.
std::vector<std::string>& global_args();

// Set by SIGINT/SIGTERM.
std::atomic<bool>& stop_requested();
void install_signal_handlers();

class OptionSet;
// --pki, --ca, --cert, --key, --insecure, shared by agent and collector.
void add_credential_options(OptionSet& set, pki::Credentials& c, std::string_view pki_files, std::string_view who);

Command add_agent_command(CLI::App& app);
Command add_collector_command(CLI::App& app);
Command add_pki_command(CLI::App& app);
Command add_up_command(CLI::App& app);
Command add_coverage_command(CLI::App& app);
Command add_status_command(CLI::App& app);
Command add_analyze_command(CLI::App& app);
Command add_tail_command(CLI::App& app);
Command add_query_command(CLI::App& app);
Command add_ls_command(CLI::App& app);

}  // namespace trawl::cli
