// `trawl tail`: follow live traffic from a collector's ZeroMQ feed (v2
// topics): one summary line per packet, or pcapng on stdout (-w -).
//   1. SUB socket -> subscribe data.v2.<agent> (or data.v2.) and event.v2.
//   2. receive [topic, metadata, bytes] -> BPF filter (per link type)
//   3. print a summary line, or append IDB (first time) + EPB to stdout
//   4. stop at --count packets, after --duration, or on SIGINT/SIGTERM
#include <pcap/pcap.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/options.h"
#include "live/formats.h"
#include "live/packet_summary.h"
#include "live/zmtp_subscriber.h"
#include "store/pcapng.h"

namespace trawl::cli {
namespace {

struct TailOptions {
  std::string zmq;
  std::string agent;
  std::string write;
  std::vector<std::string> filter_words;
  uint64_t count = 0;
  std::string duration;
  bool events = true;
};

std::string format_time(uint64_t ts_ns) {
  time_t sec = static_cast<time_t>(ts_ns / 1'000'000'000ull);
  tm t{};
  gmtime_r(&sec, &t);
  return fmt::format("{:02}:{:02}:{:02}.{:09}", t.tm_hour, t.tm_min, t.tm_sec, ts_ns % 1'000'000'000ull);
}

class Filter {
 public:
  explicit Filter(std::string expr) : expr_(std::move(expr)) {}
  ~Filter() {
    for (auto& [lt, p] : progs_) {
      if (p.first) pcap_freecode(&p.second);
    }
  }
  // Checks the expression once, for Ethernet, so a typo fails at start-up.
  Status check() {
    if (expr_.empty() || program(1)) return ok_status();
    return Error(fmt::format("filter '{}': {}", expr_, last_error_));
  }
  bool match(uint16_t lt, std::span<const uint8_t> data, uint32_t orig_len) {
    if (expr_.empty()) return true;
    const bpf_program* p = program(lt);
    if (!p) return false;
    pcap_pkthdr h{};
    h.caplen = static_cast<uint32_t>(data.size());
    h.len = orig_len;
    return pcap_offline_filter(p, &h, data.data()) != 0;
  }

 private:
  const bpf_program* program(uint16_t lt) {
    auto it = progs_.find(lt);
    if (it == progs_.end()) {
      bpf_program prog{};
      bool ok = false;
      if (pcap_t* dead = pcap_open_dead(lt, kMaxSnaplen)) {
        ok = pcap_compile(dead, &prog, expr_.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0;
        if (!ok) last_error_ = pcap_geterr(dead);
        pcap_close(dead);
      }
      it = progs_.emplace(lt, std::make_pair(ok, prog)).first;
    }
    return it->second.first ? &it->second.second : nullptr;
  }
  std::string expr_;
  std::string last_error_;
  std::map<uint16_t, std::pair<bool, bpf_program>> progs_;
};

int run_tail(const TailOptions& o) {
  uint64_t duration_ns = 0;
  if (!o.duration.empty()) {
    auto d = parse_duration_ns(o.duration);
    if (!d) {
      fmt::print(stderr, "trawl tail: --duration: {}\n", d.error().message());
      return 2;
    }
    duration_ns = *d;
  }
  bool pcapng_out = !o.write.empty();
  if (pcapng_out && o.write != "-") {
    fmt::print(stderr, "trawl tail: -w only writes to stdout (-w -)\n");
    return 2;
  }
  std::string expr;
  for (const auto& w : o.filter_words) expr += (expr.empty() ? "" : " ") + w;
  Filter filter(expr);
  if (auto s = filter.check(); !s) {
    fmt::print(stderr, "trawl tail: {}\n", s.error().message());
    return 2;
  }
  std::string endpoint = o.zmq.find("://") == std::string::npos ? "tcp://" + o.zmq : o.zmq;

  std::vector<std::string> prefixes{o.agent.empty() ? "data.v2." : live::data_topic(2, o.agent)};
  if (o.events) prefixes.emplace_back("event.v2.");
  auto sub = live::zmtp::Subscriber::create(endpoint, std::move(prefixes));
  if (!sub.ok()) {
    fmt::print(stderr, "trawl tail: {}\n", sub.error().message());
    return 2;
  }
  install_signal_handlers();

  std::vector<uint8_t> out;
  std::map<std::string, uint32_t> idbs;
  if (pcapng_out) {
    store::pcapng::encode_shb(out, {.hardware = {}, .os = {}, .userappl = "trawl tail", .comment = {}});
  }
  uint64_t packets = 0;
  auto start = std::chrono::steady_clock::now();
  live::zmtp::Subscriber::Parts parts;
  std::string reported;  // the connection problem last shown: once per streak, not every 100 ms retry
  while (!stop_requested().load()) {
    if (o.count && packets >= o.count) break;
    if (duration_ns && static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                   std::chrono::steady_clock::now() - start)
                                                   .count()) >= duration_ns) {
      break;
    }
    if (!(*sub)->receive(parts, 100)) {
      if ((*sub)->connected()) {
        reported.clear();
      } else if (!(*sub)->last_error().empty() && (*sub)->last_error() != reported) {
        reported = (*sub)->last_error();
        fmt::print(stderr, "trawl tail: {} (retrying)\n", reported);
      }
      if (!out.empty()) {
        if (fwrite(out.data(), 1, out.size(), stdout) != out.size()) break;  // reader went away
        fflush(stdout);
        out.clear();
      }
      continue;
    }
    std::string_view topic(reinterpret_cast<const char*>(parts[0].data()), parts[0].size());
    if (topic.starts_with("event.v2.")) {
      // event.v2.<name>.<agent>
      std::string_view rest = topic.substr(9);
      std::string_view agent = rest.substr(rest.find('.') + 1);
      if (!o.agent.empty() && agent != o.agent) continue;
      std::string text = parts.size() > 1 ? std::string(reinterpret_cast<const char*>(parts[1].data()), parts[1].size()) : "";
      // With -w - stdout carries pcapng only (the default logger writes to stdout too).
      fmt::print(pcapng_out ? stderr : stdout, "-- event {} {}\n", rest, text);
      continue;
    }
    if (parts.size() != 3) continue;
    live::V2Meta meta;
    if (!live::parse_v2_meta(parts[1], meta)) continue;
    auto data = parts[2];
    if (!filter.match(meta.link_type, data, meta.orig_len)) continue;
    std::string_view agent = topic.substr(8);
    ++packets;
    if (!pcapng_out) {
      fmt::print("{} {}/{} {}\n", format_time(meta.ts_ns), agent, meta.iface_name,
                 live::summarize_packet(meta.link_type, data, meta.orig_len));
      continue;
    }
    std::string key = fmt::format("{}/{}/{}", agent, meta.iface_name, meta.link_type);
    auto it = idbs.find(key);
    if (it == idbs.end()) {
      it = idbs.emplace(key, static_cast<uint32_t>(idbs.size())).first;
      store::pcapng::encode_idb(
          out, InterfaceInfo{fmt::format("{}/{}", agent, meta.iface_name), meta.link_type, meta.snaplen ? meta.snaplen : kMaxSnaplen});
    }
    PacketView p;
    p.ts_ns = meta.ts_ns;
    p.orig_len = meta.orig_len;
    p.data = data;
    store::pcapng::encode_epb(out, it->second, p);
    if (out.size() >= (1u << 20)) {
      if (fwrite(out.data(), 1, out.size(), stdout) != out.size()) break;
      out.clear();
    }
  }
  if (!out.empty() && fwrite(out.data(), 1, out.size(), stdout) == out.size()) fflush(stdout);
  if (!pcapng_out) fflush(stdout);
  return 0;
}

}  // namespace

Command add_tail_command(CLI::App& app) {
  auto* sub = app.add_subcommand("tail", "Follow live traffic from a collector (its --zmq feed)");
  sub->footer(
      "Examples:\n"
      "  trawl tail --zmq tcp://collector:5555\n"
      "  trawl tail --zmq tcp://collector:5555 --agent edge1 udp port 5060\n"
      "  trawl tail --zmq tcp://collector:5555 -w - | wireshark -k -i -");
  auto o = std::make_shared<TailOptions>();
  sub->add_option("--zmq", o->zmq, "Collector's ZeroMQ endpoint (tcp://HOST:PORT)")->required();
  sub->add_option("--agent", o->agent, "Only this agent's packets and events");
  sub->add_option("-w", o->write, "Write pcapng to stdout (-w -) instead of summary lines");
  sub->add_option("-c,--count", o->count, "Stop after this many packets");
  sub->add_option("--duration", o->duration, "Stop after this long (e.g. 30s)");
  sub->add_flag("!--no-events", o->events, "Do not show events (connect, gap, drop, ...)");
  sub->add_option("filter", o->filter_words, "BPF filter expression (like tcpdump's)");
  return [o]() -> int { return run_tail(*o); };
}

}  // namespace trawl::cli
