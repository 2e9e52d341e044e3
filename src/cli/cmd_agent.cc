// `trawl agent`: flags and config keys -> AgentOptions -> agent::run_agent.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "agent/agent.h"
#include "cli/commands.h"
#include "cli/options.h"

namespace trawl::cli {

Command add_agent_command(CLI::App& app) {
  auto* sub = app.add_subcommand("agent", "Capture on this host's interfaces and stream to a collector");
  sub->footer(
      "Example:\n  trawl agent --name edge1 --collector center:4430 -i eth0 --pki /etc/trawl/pki udp port 5060\n"
      "Every option can also be a key in the YAML file given with -c (e.g. `ring-size: 128MiB`).");
  struct State {
    agent::AgentOptions opts;
    OptionSet set;
    std::vector<std::string> filter_words;
    bool spool_dir_given = false;
  };
  auto st = std::make_shared<State>();
  auto& o = st->opts;
  auto& s = st->set;
  s.value("name", "Agent name; must match the name in its certificate", [&o](std::string_view v) -> Status {
    o.name = v;
    return ok_status();
  });
  s.list("collector", "Collector HOST:PORT; repeat to list fail-over addresses",
         [&o](std::string_view v) -> Status {
           o.collectors.emplace_back(v);
           return ok_status();
         },
         [&o] { o.collectors.clear(); });
  s.list("interface", "Interface to capture on; repeat for several",
         [&o](std::string_view v) -> Status {
           o.capture.interfaces.emplace_back(v);
           return ok_status();
         },
         [&o] { o.capture.interfaces.clear(); }, "i");
  s.value("snaplen", "Bytes kept per packet (max 262144)", [&o](std::string_view v) -> Status {
    auto n = parse_uint(v, kMaxSnaplen);
    if (!n) return std::move(n).error();
    if (*n == 0) return Error("snaplen must be at least 1");
    o.capture.snaplen = static_cast<uint32_t>(*n);
    return ok_status();
  }, "262144");
  s.value("ring-size", "Kernel capture ring per interface", [&o](std::string_view v) -> Status {
    auto n = parse_size(v);
    if (!n) return std::move(n).error();
    if (*n < (1u << 20)) return Error("ring size must be at least 1MiB");
    o.capture.ring_bytes = *n;
    return ok_status();
  }, "64MiB");
  s.flag("no-promisc", "Do not put interfaces into promiscuous mode", [&o](bool b) { o.capture.promiscuous = !b; });
  s.value("filter", "BPF filter (also accepted as trailing words)", [p = st.get()](std::string_view v) -> Status {
    p->opts.capture.filter = v;
    return ok_status();
  });
  add_credential_options(s, o.credentials, "agents/NAME.crt, agents/NAME.key", "Agent");
  s.value("user", "Drop root to this user after opening the capture (\"\" keeps root)",
          [&o](std::string_view v) -> Status {
            o.user = v;
            return ok_status();
          }, "nobody");
  s.value("spool-dir", "Spool directory for unacknowledged batches", [p = st.get()](std::string_view v) -> Status {
    p->opts.spool.dir = std::string(v);
    p->spool_dir_given = true;
    return ok_status();
  }, "/var/spool/trawl/NAME");
  s.value("spool-size", "Maximum bytes the spool may use on disk", [&o](std::string_view v) -> Status {
    auto n = parse_size(v);
    if (!n) return std::move(n).error();
    if (*n < (4u << 20)) return Error("spool size must be at least 4MiB");
    o.spool.max_bytes = *n;
    return ok_status();
  }, "256MiB");
  s.value("spool-policy", "When the spool is full: drop-newest or drop-oldest", [&o](std::string_view v) -> Status {
    if (v == "drop-newest") {
      o.spool.policy = agent::DropPolicy::kDropNewest;
    } else if (v == "drop-oldest") {
      o.spool.policy = agent::DropPolicy::kDropOldest;
    } else {
      return Error(fmt::format("'{}' is not a policy (drop-newest, drop-oldest)", v));
    }
    return ok_status();
  }, "drop-newest");
  s.flag("spool-fsync", "fdatasync every spooled batch: survives a machine crash, not just a process crash (slower)",
         [&o](bool b) { o.spool.fsync_each_append = b; });
  s.value("batch-size", "Seal a batch at this many bytes", [&o](std::string_view v) -> Status {
    auto n = parse_size(v);
    if (!n) return std::move(n).error();
    if (*n < 4096 || *n > (32u << 20)) return Error("batch size must be between 4KiB and 32MiB");
    o.batch_max_bytes = *n;
    return ok_status();
  }, "1MiB");
  s.value("batch-age", "Seal a batch after this long, so quiet links still deliver", [&o](std::string_view v) -> Status {
    auto n = parse_duration_ns(v);
    if (!n) return std::move(n).error();
    if (*n < 1'000'000 || *n > 10'000'000'000ull) return Error("batch age must be between 1ms and 10s");
    o.batch_max_age_ns = *n;
    return ok_status();
  }, "50ms");
  s.value("stats-every", "How often kernel drop counters are sent", [&o](std::string_view v) -> Status {
    auto n = parse_duration_ns(v);
    if (!n) return std::move(n).error();
    if (*n < 100'000'000) return Error("stats interval must be at least 100ms");
    o.stats_every_ns = *n;
    return ok_status();
  }, "1s");
  s.value("duration", "Stop capturing after this long (0 = run until stopped)", [&o](std::string_view v) -> Status {
    auto n = parse_duration_ns(v);
    if (!n) return std::move(n).error();
    o.max_capture_ns = *n;
    return ok_status();
  }, "0");
  s.value("drain-timeout", "On stop, wait this long for the collector to acknowledge the spool",
          [&o](std::string_view v) -> Status {
            auto n = parse_duration_ns(v);
            if (!n) return std::move(n).error();
            o.drain_timeout_ns = *n;
            return ok_status();
          }, "5s");
  s.value("metrics-listen", "Serve /metrics, /healthz and /readyz on ADDR:PORT (off when empty)",
          [&o](std::string_view v) -> Status {
            o.metrics_listen = v;
            return ok_status();
          });
  s.attach(*sub);
  sub->add_option("bpf", st->filter_words, "BPF filter expression, e.g. `udp port 5060 or sctp`");

  return [st]() -> int {
    if (auto r = st->set.apply(); !r) {
      spdlog::error("trawl agent: {}", r.error().message());
      return 2;
    }
    auto& o = st->opts;
    if (!st->filter_words.empty()) {
      std::string f;
      for (const auto& w : st->filter_words) f += (f.empty() ? "" : " ") + w;
      o.capture.filter = f;
    }
    if (o.name.empty()) {
      spdlog::error("trawl agent: --name is required");
      return 2;
    }
    if (!st->spool_dir_given) o.spool.dir = "/var/spool/trawl/" + o.name;
    install_signal_handlers();
    agent::AgentCounters counters;
    Status s = agent::run_agent(o, stop_requested(), counters);
    if (!s) {
      spdlog::error("trawl agent: {}", s.error().message());
      return 1;
    }
    return 0;
  };
}

}  // namespace trawl::cli
