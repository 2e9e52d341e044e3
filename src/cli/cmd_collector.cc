// `trawl collector`: flags and config keys -> CollectorOptions -> Collector.
#include <arpa/inet.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <thread>

#include "cli/commands.h"
#include "cli/options.h"
#include "collector/collector.h"
#include "wire/tcp.h"

namespace trawl::cli {

Command add_collector_command(CLI::App& app) {
  auto* sub = app.add_subcommand("collector", "Receive agents' packets and store them as pcapng segments");
  sub->footer("Example:\n  trawl collector --listen 0.0.0.0:4430 --data /srv/trawl --pki /etc/trawl/pki --rotate-every 5m");
  struct State {
    collector::CollectorOptions opts;
    OptionSet set;
  };
  auto st = std::make_shared<State>();
  auto& o = st->opts;
  auto& s = st->set;
  s.value("listen", "Address to accept agents on (ADDR:PORT; port 0 picks one)", [&o](std::string_view v) -> Status {
    o.listen = v;
    return ok_status();
  }, "0.0.0.0:4430");
  s.value("data", "Directory for the agents' segments", [&o](std::string_view v) -> Status {
    o.data_dir = std::string(v);
    return ok_status();
  }, "./trawl-data");
  add_credential_options(s, o.credentials, "collector.crt, collector.key", "Collector");
  s.list("allow-agent", "Only accept these agent names (default: any agent the CA vouches for)",
         [&o](std::string_view v) -> Status {
           o.allow_agents.emplace_back(v);
           return ok_status();
         },
         [&o] { o.allow_agents.clear(); });
  s.value("rotate-size", "Seal a segment when it reaches this size", [&o](std::string_view v) -> Status {
    auto n = parse_size(v);
    if (!n) return std::move(n).error();
    if (*n < (64u << 10)) return Error("rotate size must be at least 64KiB");
    o.rotate_bytes = *n;
    return ok_status();
  }, "1GiB");
  s.value("rotate-every", "Seal segments on wall-clock boundaries of this interval (0 = only by size)",
          [&o](std::string_view v) -> Status {
            auto n = parse_duration_ns(v);
            if (!n) return std::move(n).error();
            if (*n != 0 && *n < 1'000'000'000) return Error("rotation interval must be at least 1s");
            o.rotate_every_ns = *n;
            return ok_status();
          }, "5m");
  s.value("compression",
          "Segment compression: zstd:LEVEL (1..19; -1..-99 are zstd's fast levels) or none (plain .pcapng)",
          [&o](std::string_view v) -> Status {
            auto level = parse_compression(v);
            if (!level) return std::move(level).error();
            o.zstd_level = *level;
            return ok_status();
          }, "zstd:-1");
  s.value("frame-size", "Uncompressed bytes per zstd frame / index block (1MiB..4MiB is the sweet spot)",
          [&o](std::string_view v) -> Status {
            auto n = parse_size(v);
            if (!n) return std::move(n).error();
            if (*n < (64u << 10) || *n > (64u << 20)) return Error("frame size must be 64KiB..64MiB");
            o.block_bytes = *n;
            return ok_status();
          }, "1MiB");
  s.flag("no-fsync", "Acknowledge batches once written, without waiting for fdatasync (faster, not crash-safe)",
         [&o](bool b) { o.fsync = !b; });
  s.value("group-commit", "At most one fsync per agent per this interval", [&o](std::string_view v) -> Status {
    auto n = parse_duration_ns(v);
    if (!n) return std::move(n).error();
    if (*n > 1'000'000'000) return Error("group commit interval must be at most 1s");
    o.group_commit_ns = *n;
    return ok_status();
  }, "5ms");
  s.value("max-connections", "Refuse connections beyond this many", [&o](std::string_view v) -> Status {
    auto n = parse_uint(v, 100000);
    if (!n) return std::move(n).error();
    o.max_connections = *n;
    return ok_status();
  }, "1024");
  s.value("metrics-listen", "Serve /metrics, /healthz, /readyz (503 when storage is not writable) and the /api/v1 JSON API on ADDR:PORT",
          [&o](std::string_view v) -> Status {
            o.metrics_listen = v;
            return ok_status();
          });
  s.value("retain-per-agent", "Delete an agent's oldest sealed segments beyond this many bytes (0 = no cap)",
          [&o](std::string_view v) -> Status {
            auto n = parse_size(v);
            if (!n) return std::move(n).error();
            o.retain_bytes_per_agent = *n;
            return ok_status();
          }, "0");
  s.value("retain-total", "Delete the oldest sealed segments of all agents beyond this many bytes (0 = no cap)",
          [&o](std::string_view v) -> Status {
            auto n = parse_size(v);
            if (!n) return std::move(n).error();
            o.retain_bytes_total = *n;
            return ok_status();
          }, "0");
  s.value("retain-age", "Delete sealed segments older than this (e.g. 7d; 0 = keep)", [&o](std::string_view v) -> Status {
    auto n = parse_duration_ns(v);
    if (!n) return std::move(n).error();
    o.retain_age_ns = *n;
    return ok_status();
  }, "0");
  s.value("min-free", "Keep this much of the data file system free, deleting the oldest segments (SIZE or N%)",
          [&o](std::string_view v) -> Status {
            if (!v.empty() && v.back() == '%') {
              auto n = parse_uint(v.substr(0, v.size() - 1), 99);
              if (!n) return std::move(n).error();
              o.min_free_percent = static_cast<double>(*n);
              o.min_free_bytes = 0;
              return ok_status();
            }
            auto n = parse_size(v);
            if (!n) return std::move(n).error();
            o.min_free_bytes = *n;
            o.min_free_percent = 0;
            return ok_status();
          }, "5%");
  // --- live channel and osmo-pcap compatibility (docs/live.md, docs/osmo-migration.md)
  s.value("zmq", "Publish live packets and events over ZeroMQ (PUB) on tcp://ADDR:PORT: osmo-pcap v1 and trawl v2 topics",
          [&o](std::string_view v) -> Status {
            if (auto hp = live::parse_zmq_endpoint(v); !hp) return std::move(hp).error();
            o.live.zmq_listen = v;
            return ok_status();
          });
  s.list("pcap-listen",
         "PCAP-over-IP listener: ADDR:PORT[,agent=NAME][,format=pcap|pcapng][,linktype=N][,filter=BPF] (filter last)",
         [&o](std::string_view v) -> Status {
           auto l = live::parse_pcap_listener(v);
           if (!l) return std::move(l).error();
           o.live.pcap_listeners.push_back(std::move(*l));
           return ok_status();
         },
         [&o] { o.live.pcap_listeners.clear(); });
  s.value("live-queue", "Bytes queued per live subscriber before its packets are dropped (counted)",
          [&o](std::string_view v) -> Status {
            auto n = parse_size(v);
            if (!n) return std::move(n).error();
            if (*n < (64u << 10)) return Error("live queue must be at least 64KiB");
            o.live.subscriber_queue_bytes = *n;
            return ok_status();
          }, "32MiB");
  s.value("live-nice",
          "How much lower than storage the live publishing threads run (nice increment 0..19): under CPU "
          "contention stored packets win and live subscribers see counted drops",
          [&o](std::string_view v) -> Status {
            auto n = parse_uint(v, 19);
            if (!n) return std::move(n).error();
            o.live.nice = static_cast<int>(*n);
            return ok_status();
          }, "10");
  s.list("stream-only", "Publish this agent's packets live but do not store them (acked once published)",
         [&o](std::string_view v) -> Status {
           o.stream_only.emplace_back(v);
           return ok_status();
         },
         [&o] { o.stream_only.clear(); });
  s.value("osmo-listen", "Accept osmo-pcap clients (osmo-pcap-client) on ADDR:PORT", [&o](std::string_view v) -> Status {
    if (auto hp = wire::parse_host_port(v); !hp) return std::move(hp).error();
    o.osmo_listen = v;
    return ok_status();
  });
  s.list("osmo-client", "Map an osmo-pcap client's source address to an agent name: IP=NAME (others are refused)",
         [&o](std::string_view v) -> Status {
           size_t eq = v.find('=');
           if (eq == std::string_view::npos || eq == 0 || eq + 1 == v.size()) {
             return Error(fmt::format("'{}': expected IP=NAME", v));
           }
           std::string ip(v.substr(0, eq));
           in6_addr a6;
           if (inet_pton(AF_INET, ip.c_str(), &a6) != 1 && inet_pton(AF_INET6, ip.c_str(), &a6) != 1) {
             return Error(fmt::format("'{}' is not an IP address", ip));
           }
           o.osmo_clients[ip] = std::string(v.substr(eq + 1));
           return ok_status();
         },
         [&o] { o.osmo_clients.clear(); });
  s.value("osmo-max-caplen", "Close an osmo-pcap connection that sends a record larger than this (bytes)",
          [&o](std::string_view v) -> Status {
            auto n = parse_uint(v, 65535 - 16);
            if (!n) return std::move(n).error();
            if (*n < 64) return Error("osmo-max-caplen must be at least 64");
            o.osmo_max_caplen = static_cast<uint32_t>(*n);
            return ok_status();
          }, "65519");
  s.flag("osmo-tls", "osmo-pcap clients connect over TLS (the collector's certificate; clients need one from its CA)",
         [&o](bool b) { o.osmo_tls = b; });
  s.attach(*sub);
  auto port_file = std::make_shared<std::string>();
  sub->add_option("--port-file", *port_file, "Write the bound port to this file once listening (for scripts)");

  return [st, port_file]() -> int {
    if (auto r = st->set.apply(); !r) {
      spdlog::error("trawl collector: {}", r.error().message());
      return 2;
    }
    install_signal_handlers();
    collector::Collector c(st->opts);
    if (auto s = c.start(); !s) {
      spdlog::error("trawl collector: {}", s.error().message());
      return 1;
    }
    if (!port_file->empty()) {
      std::string tmp = *port_file + ".tmp";
      if (FILE* f = fopen(tmp.c_str(), "w")) {
        fprintf(f, "%u\n", c.port());
        fclose(f);
        rename(tmp.c_str(), port_file->c_str());
      }
    }
    while (!stop_requested().load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spdlog::info("collector: stopping; sealing open segments");
    c.stop();
    return 0;
  };
}

}  // namespace trawl::cli
