// `trawl up`: the whole pipeline on this machine with no set-up. Creates
// credentials on first run, starts a collector (in this process, on
// loopback) and an agent (a child process, so it drops root like a real
// edge agent) capturing the default-route interface, stores under
// ./trawl-data, and says where the segments are and how to open them.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/options.h"
#include "collector/collector.h"
#include "pki/pki.h"

extern char** environ;

namespace trawl::cli {
namespace fs = std::filesystem;
namespace {

// The interface of the default IPv4 route, from /proc/net/route.
std::string default_route_interface() {
  std::ifstream in("/proc/net/route");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string iface, dest;
    ls >> iface >> dest;
    if (dest == "00000000") return iface;
  }
  return "";
}

std::string agent_name_from_host() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  std::string n;
  for (char c : std::string(buf)) {
    if (c == '.') break;
    n += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '-';
  }
  if (n.empty() || !std::isalnum(static_cast<unsigned char>(n[0]))) n = "local";
  return n.substr(0, 63);
}

struct Segments {
  size_t sealed = 0;
  size_t open = 0;
  uint64_t bytes = 0;
  std::vector<fs::path> paths;
};

Segments list_segments(const fs::path& dir) {
  Segments s;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    auto name = e.path().filename().string();
    if (name.ends_with(".pcapng") || name.ends_with(".pcapng.zst")) {
      ++s.sealed;
      s.paths.push_back(e.path());
    } else if (name.ends_with(".pcapng.part") || name.ends_with(".pcapng.zst.part")) {
      ++s.open;
    } else {
      continue;
    }
    s.bytes += e.file_size(ec);
  }
  std::sort(s.paths.begin(), s.paths.end());
  return s;
}

}  // namespace

Command add_up_command(CLI::App& app) {
  auto* sub = app.add_subcommand("up", "Capture this machine's traffic into ./trawl-data (collector + agent, no set-up)");
  struct State {
    std::string data = "trawl-data";
    std::vector<std::string> interfaces;
    std::string duration = "0";
    std::string rotate_every = "1m";
    std::vector<std::string> filter;
  };
  auto st = std::make_shared<State>();
  sub->add_option("--data", st->data, "Where everything goes: store/, pki/, spool/")->capture_default_str();
  sub->add_option("-i,--interface", st->interfaces, "Interface(s) to capture (default: the default-route interface)");
  sub->add_option("--duration", st->duration, "Stop after this long (0 = until Ctrl-C)")->capture_default_str();
  sub->add_option("--rotate-every", st->rotate_every, "Segment rotation interval")->capture_default_str();
  sub->add_option("bpf", st->filter, "BPF filter expression");

  return [st]() -> int {
    auto dur = parse_duration_ns(st->duration);
    auto rot = parse_duration_ns(st->rotate_every);
    if (!dur || !rot) {
      spdlog::error("trawl up: {}", (!dur ? dur.error() : rot.error()).message());
      return 2;
    }
    fs::path data = fs::absolute(st->data);
    fs::path pki_dir = data / "pki";
    fs::path store = data / "store";
    fs::path spool = data / "spool";
    std::string name = agent_name_from_host();
    std::vector<std::string> ifaces = st->interfaces;
    if (ifaces.empty()) {
      std::string d = default_route_interface();
      if (d.empty()) {
        spdlog::error("trawl up: no default route; name an interface with -i");
        return 2;
      }
      ifaces.push_back(d);
    }
    if (!fs::exists(pki_dir / "ca.crt")) {
      if (auto s = pki::init(pki_dir); !s) {
        spdlog::error("trawl up: {}", s.error().message());
        return 1;
      }
      spdlog::info("created a CA and collector credentials in {}", pki_dir.string());
    }
    if (!fs::exists(pki_dir / "agents" / (name + ".crt"))) {
      if (auto s = pki::issue(pki_dir, name); !s) {
        spdlog::error("trawl up: {}", s.error().message());
        return 1;
      }
    }
    install_signal_handlers();
    collector::CollectorOptions co;
    co.listen = "127.0.0.1:0";
    co.data_dir = store;
    co.credentials.pki_dir = pki_dir.string();
    co.rotate_every_ns = *rot;
    collector::Collector c(co);
    if (auto s = c.start(); !s) {
      spdlog::error("trawl up: {}", s.error().message());
      return 1;
    }
    std::string self = fs::read_symlink("/proc/self/exe").string();
    std::vector<std::string> args = {self};
    args.insert(args.end(), global_args().begin(), global_args().end());
    args.insert(args.end(), {"agent", "--name", name, "--collector",
                                     fmt::format("127.0.0.1:{}", c.port()), "--pki", pki_dir.string(),
                                     "--spool-dir", (spool / name).string()});
    if (geteuid() != 0) args.insert(args.end(), {"--user", ""});
    for (const auto& i : ifaces) args.insert(args.end(), {"-i", i});
    for (const auto& w : st->filter) args.push_back(w);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t child = 0;
    if (int rc = posix_spawn(&child, self.c_str(), nullptr, nullptr, argv.data(), environ); rc != 0) {
      spdlog::error("trawl up: starting the agent: {}", std::strerror(rc));
      c.stop();
      return 1;
    }
    std::string iface_list;
    for (const auto& i : ifaces) iface_list += (iface_list.empty() ? "" : ",") + i;
    fmt::print(stderr,
               "\ntrawl is capturing {} into {}/{}/ (agent '{}', pid {}).\n"
               "Segments are sealed every {}; press Ctrl-C to stop.\n\n",
               iface_list, store.string(), name, name, child, st->rotate_every);
    auto started = std::chrono::steady_clock::now();
    auto last_report = started;
    int status = 0;
    bool agent_exited = false;
    while (!stop_requested().load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (waitpid(child, &status, WNOHANG) == child) {
        agent_exited = true;
        break;
      }
      auto now = std::chrono::steady_clock::now();
      if (now - last_report >= std::chrono::seconds(10)) {
        last_report = now;
        auto segs = list_segments(store);
        spdlog::info("stored {} packets ({} bytes of packets) in {} sealed + {} open segments",
                     c.counters().packets_stored.load(), c.counters().bytes_stored.load(), segs.sealed, segs.open);
      }
      if (*dur && now - started >= std::chrono::nanoseconds(*dur)) break;
    }
    if (!agent_exited) {
      kill(child, SIGTERM);
      waitpid(child, &status, 0);
    }
    c.stop();
    auto segs = list_segments(store);
    fmt::print(stderr, "\nStored {} packets in {} segment(s) under {}/{}/\n", c.counters().packets_stored.load(),
               segs.sealed, store.string(), name);
    for (const auto& p : segs.paths) fmt::print(stderr, "  {}\n", p.string());
    if (!segs.paths.empty()) {
      fmt::print(stderr, "Open one with:\n  tshark -r {}\n  capinfos {}\n", segs.paths.back().string(),
                 segs.paths.back().string());
    }
    if (agent_exited && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      spdlog::error("trawl up: the agent stopped unexpectedly (see its log above)");
      return 1;
    }
    return 0;
  };
}

}  // namespace trawl::cli
