// `trawl pki init DIR` / `trawl pki issue DIR NAME`.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <memory>

#include "cli/commands.h"
#include "pki/pki.h"

namespace trawl::cli {

Command add_pki_command(CLI::App& app) {
  auto* sub = app.add_subcommand("pki", "Create the CA, collector and agent credentials for mutual TLS");
  sub->require_subcommand(1);
  struct State {
    std::string dir;
    std::string name;
    std::vector<std::string> extra_names;
  };
  auto st = std::make_shared<State>();
  auto* init = sub->add_subcommand("init", "Create a CA and the collector's certificate in DIR");
  init->add_option("dir", st->dir, "PKI directory")->required();
  init->add_option("--collector-name", st->extra_names,
                   "Extra DNS name or IP address for the collector certificate (repeatable)");
  auto* issue = sub->add_subcommand("issue", "Issue an agent certificate (CN = NAME) signed by DIR's CA");
  issue->add_option("dir", st->dir, "PKI directory")->required();
  issue->add_option("name", st->name, "Agent name")->required();
  return [st, init]() -> int {
    if (init->parsed()) {
      if (auto s = pki::init(st->dir, st->extra_names); !s) {
        spdlog::error("trawl pki init: {}", s.error().message());
        return 1;
      }
      spdlog::info("created CA and collector credentials in {}", st->dir);
      return 0;
    }
    if (auto s = pki::issue(st->dir, st->name); !s) {
      spdlog::error("trawl pki issue: {}", s.error().message());
      return 1;
    }
    spdlog::info("issued {}/agents/{}.crt and .key", st->dir, st->name);
    return 0;
  };
}

}  // namespace trawl::cli
