// `trawl pki init DIR` / `trawl pki issue DIR NAME`.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "pki/pki.h"

namespace trawl::cli {

void add_credential_options(OptionSet& s, pki::Credentials& c, std::string_view pki_files, std::string_view who) {
  auto text = [](std::string* field) {
    return [field](std::string_view v) -> Status {
      *field = v;
      return ok_status();
    };
  };
  s.value("pki", fmt::format("PKI directory (ca.crt, {})", pki_files), text(&c.pki_dir));
  s.value("ca", "CA certificate file (overrides --pki)", text(&c.ca_file));
  s.value("cert", fmt::format("{} certificate file (overrides --pki)", who), text(&c.cert_file));
  s.value("key", fmt::format("{} private key file (overrides --pki)", who), text(&c.key_file));
  s.flag("insecure", "Plaintext TCP without authentication (labs only)", [&c](bool b) { c.insecure = b; });
}

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
  auto* revoke = sub->add_subcommand("revoke", "Revoke an agent's certificate (the collector refuses it after a restart)");
  revoke->add_option("dir", st->dir, "PKI directory")->required();
  revoke->add_option("name", st->name, "Agent name")->required();
  auto* reissue = sub->add_subcommand("reissue-collector", "Renew the collector certificate, optionally adding names");
  reissue->add_option("dir", st->dir, "PKI directory")->required();
  reissue->add_option("--collector-name", st->extra_names, "Extra DNS name or IP address (repeatable)");
  return [st, init, revoke, reissue]() -> int {
    if (revoke->parsed()) {
      if (auto s = pki::revoke(st->dir, st->name); !s) {
        spdlog::error("trawl pki revoke: {}", s.error().message());
        return 1;
      }
      spdlog::info("revoked {}; restart the collector to apply {}/ca.crl", st->name, st->dir);
      return 0;
    }
    if (reissue->parsed()) {
      if (auto s = pki::reissue_collector(st->dir, st->extra_names); !s) {
        spdlog::error("trawl pki reissue-collector: {}", s.error().message());
        return 1;
      }
      spdlog::info("renewed {}/collector.crt", st->dir);
      return 0;
    }
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
