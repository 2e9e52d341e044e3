// `trawl analyze`: decoders over stored captures, query output on stdin or
// the collector's live feed; JSON lines (or Elasticsearch bulk) out.
// Runs unprivileged: it only reads files, stdin and a ZeroMQ socket.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "decode/analyzer.h"
#include "decode/live_source.h"
#include "decode/record_writer.h"

namespace trawl::cli {

Command add_analyze_command(CLI::App& app) {
  std::string names;
  for (const auto& row : decode::decoder_registry()) names += std::string("  ") + row.name + ": " + row.summary + "\n";
  auto* sub = app.add_subcommand(
      "analyze",
      "Analyse captures (files, `trawl query` output on stdin, or the live feed): one JSON record per stream or "
      "transaction.\nDecoders:\n" + names + "  all: every decoder");
  struct State {
    std::vector<std::string> selectors;
    std::vector<std::string> reads;
    std::string live;
    std::string agent;
    std::string duration = "0";
    uint64_t count = 0;
    std::string output = "-";
    std::string format = "json";
    bool no_rtp_heuristic = false;
    bool no_gsmtap_frames = false;
  };
  auto st = std::make_shared<State>();
  sub->add_option("decoder", st->selectors, "Decoders to run: rtp, diameter, dns, gsmtap, ... or all")->required();
  sub->add_option("-r,--read", st->reads,
                  "Capture file (pcap/pcapng, optionally .gz/.zst; - = stdin); repeatable. Default: stdin if it "
                  "is not a terminal")
      ->allow_extra_args(false);
  sub->add_option("--live", st->live, "Subscribe to the collector's live feed, e.g. tcp://collector:5555");
  sub->add_option("--agent", st->agent, "With --live: only this agent's packets");
  sub->add_option("--duration", st->duration, "With --live: stop after this long (0 = until Ctrl-C)")
      ->capture_default_str();
  sub->add_option("--count", st->count, "With --live: stop after this many frames (0 = no limit)");
  sub->add_option("-o,--output", st->output, "Output file (- = stdout)")->capture_default_str();
  sub->add_option("--format", st->format, "json (JSON lines) or es-bulk (Elasticsearch bulk API)")
      ->check(CLI::IsMember({"json", "es-bulk"}))
      ->capture_default_str();
  sub->add_flag("--no-rtp-heuristic", st->no_rtp_heuristic, "RTP only where SIP/SDP announced it");
  sub->add_flag("--no-gsmtap-frames", st->no_gsmtap_frames, "GSMTAP: only the counts, no record per frame");

  return [st]() -> int {
    // Records own stdout; anything else a library might print goes to stderr.
    std::fflush(stdout);
    int stdout_fd = ::dup(1);
    if (stdout_fd < 0 || ::dup2(2, 1) < 0) {
      spdlog::error("trawl analyze: dup stdout: {}", std::strerror(errno));
      return 1;
    }
    std::unique_ptr<FILE, int (*)(FILE*)> owned(nullptr, fclose);
    if (st->output == "-") {
      owned.reset(::fdopen(stdout_fd, "w"));
    } else {
      ::close(stdout_fd);
      owned.reset(std::fopen(st->output.c_str(), "w"));
      if (!owned) {
        spdlog::error("trawl analyze: cannot write {}: {}", st->output, std::strerror(errno));
        return 1;
      }
    }
    FILE* out = owned.get();
    decode::RecordWriter writer(
        out, st->format == "es-bulk" ? decode::RecordWriter::Format::kEsBulk : decode::RecordWriter::Format::kJsonLines);
    decode::AnalyzeOptions opt;
    opt.rtp_heuristic = !st->no_rtp_heuristic;
    opt.gsmtap_per_frame = !st->no_gsmtap_frames;
    // A live run has no end of input: streams silent for 5 minutes are
    // reported then (and memory stays bounded).
    if (!st->live.empty()) opt.rtp_idle_timeout_ns = 300ull * 1000000000ull;
    auto an = decode::Analyzer::create(st->selectors, [&writer](nlohmann::json&& j) { writer.write(j); }, opt);
    if (!an) {
      spdlog::error("trawl analyze: {}", an.error().message());
      return 2;
    }
    auto& analyzer = **an;
    install_signal_handlers();
    int rc = 0;
    if (!st->live.empty()) {
      if (!st->reads.empty()) {
        spdlog::error("trawl analyze: give either -r or --live, not both");
        return 2;
      }
      auto dur = parse_duration_ns(st->duration);
      if (!dur) {
        spdlog::error("trawl analyze: --duration: {}", dur.error().message());
        return 2;
      }
      auto src = decode::LiveSource::connect(st->live, st->agent);
      if (!src) {
        spdlog::error("trawl analyze: {}", src.error().message());
        return 1;
      }
      auto start = std::chrono::steady_clock::now();
      uint64_t frames = 0;
      decode::Frame f;
      while (!stop_requested().load()) {
        if (*dur && static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               std::chrono::steady_clock::now() - start)
                                               .count()) >= *dur)
          break;
        if (st->count && frames >= st->count) break;
        auto n = (*src)->next(f, 100);
        if (!n) {
          spdlog::error("trawl analyze: {}", n.error().message());
          rc = 1;
          break;
        }
        if (*n == decode::LiveSource::Next::kFrame) {
          analyzer.frame(f);
          ++frames;
        }
      }
      for (const auto& [k, v] : (*src)->anomalies().list()) spdlog::warn("live feed: {} x{}", k, v);
    } else {
      std::vector<std::string> reads = st->reads;
      if (reads.empty()) {
        if (isatty(0)) {
          spdlog::error("trawl analyze: give -r FILE, pipe a capture into stdin, or use --live");
          return 2;
        }
        reads.push_back("-");
      }
      for (const auto& path : reads) {
        auto r = decode::CaptureReader::open(path);
        if (!r) {
          spdlog::error("trawl analyze: {}", r.error().message());
          rc = 1;
          continue;
        }
        while (!stop_requested().load()) {
          auto n = (*r)->next();
          if (n == decode::CaptureReader::Next::kFrame) {
            analyzer.frame((*r)->frame());
            continue;
          }
          if (n == decode::CaptureReader::Next::kCorrupt) {
            spdlog::warn("trawl analyze: {} (analysed the {} frames before it)", (*r)->error(), (*r)->frames_read());
            rc = 1;
          }
          break;
        }
      }
    }
    analyzer.finish();
    if (auto s = writer.flush(); !s) {
      spdlog::error("trawl analyze: {}", s.error().message());
      return 1;
    }
    return rc;
  };
}

}  // namespace trawl::cli
