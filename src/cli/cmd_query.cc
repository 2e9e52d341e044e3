// `trawl query`: stored packets -> one pcapng on stdout or -w FILE.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "query/query.h"
#include "core/time_parse.h"

namespace trawl::cli {

namespace {

uint64_t wall_now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Status write_fd(int fd, std::span<const uint8_t> b) {
  size_t done = 0;
  while (done < b.size()) {
    ssize_t n = ::write(fd, b.data() + done, b.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("write");
    done += static_cast<size_t>(n);
  }
  return ok_status();
}

}  // namespace

Command add_query_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "query", "Write the stored packets that match a time window and a BPF filter as one pcapng");
  sub->footer(
      "Times: RFC 3339 (2026-11-22T10:30:00Z, 2026-11-22T11:30:00.5+01:00), relative (-15m, -2h, -1d),\n"
      "now, or epoch seconds. The filter is libpcap syntax (as for tcpdump).\n"
      "Exit status: 0 ok, 1 error, 2 usage, 3 done but some blocks were damaged (reported on stderr).\n"
      "Examples:\n"
      "  trawl query --data /srv/trawl --from -15m host 10.1.2.3 and port 5060 | wireshark -k -i -\n"
      "  trawl query --data /srv/trawl --agent edge1 --from 2026-11-22T10:00:00Z --to 2026-11-22T10:05:00Z -w out.pcapng");
  struct State {
    std::string data = "./trawl-data";
    std::vector<std::string> agents;
    std::string from, to, out;
    std::vector<std::string> filter;
    bool quiet = false;
    bool stats = false;
  };
  auto st = std::make_shared<State>();
  sub->add_option("--data", st->data, "Data directory of the collector")->capture_default_str();
  sub->add_option("--agent", st->agents, "Only this agent (repeatable; default all)");
  sub->add_option("--from", st->from, "Start of the time window (inclusive)");
  sub->add_option("--to", st->to, "End of the time window (inclusive)");
  sub->add_option("-w,--write", st->out, "Write to this file instead of stdout");
  sub->add_flag("-q,--quiet", st->quiet, "No progress line");
  sub->add_flag("--stats", st->stats, "Print what the query read (segments, blocks, packets) on stderr");
  sub->add_option("filter", st->filter, "BPF filter expression (libpcap syntax)");

  return [st]() -> int {
    query::QueryOptions o;
    o.data_dir = st->data;
    o.agents = st->agents;
    const uint64_t now = wall_now_ns();
    if (!st->from.empty()) {
      auto t = parse_time(st->from, now);
      if (!t) {
        fmt::print(stderr, "trawl query: --from: {}\n", t.error().message());
        return 2;
      }
      o.from_ns = *t;
    }
    if (!st->to.empty()) {
      auto t = parse_time(st->to, now);
      if (!t) {
        fmt::print(stderr, "trawl query: --to: {}\n", t.error().message());
        return 2;
      }
      o.to_ns = *t;
    }
    for (size_t i = 0; i < st->filter.size(); ++i) o.filter += (i ? " " : "") + st->filter[i];

    int fd = STDOUT_FILENO;
    if (!st->out.empty()) {
      fd = ::open(st->out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) {
        fmt::print(stderr, "trawl query: {}: {}\n", st->out, std::strerror(errno));
        return 1;
      }
    } else if (::isatty(STDOUT_FILENO)) {
      fmt::print(stderr, "trawl query: not writing pcapng to a terminal; use -w FILE or a pipe\n");
      return 2;
    }
    ::signal(SIGPIPE, SIG_IGN);  // a reader that goes away is an EPIPE error
    const bool tty = ::isatty(STDERR_FILENO) && !st->quiet;
    const auto t0 = std::chrono::steady_clock::now();
    auto last = t0;
    bool progress_shown = false;
    query::QueryCallbacks cb;
    cb.write = [fd](std::span<const uint8_t> b) { return write_fd(fd, b); };
    cb.on_error = [&](const std::string& m) {
      if (progress_shown) fmt::print(stderr, "\r\033[K");
      fmt::print(stderr, "trawl query: {}\n", m);
    };
    cb.on_notice = cb.on_error;
    cb.on_progress = [&](const query::QueryStats& s) {
      if (!tty) return;
      auto now_t = std::chrono::steady_clock::now();
      if (now_t - t0 < std::chrono::seconds(1) || now_t - last < std::chrono::milliseconds(200)) return;
      last = now_t;
      progress_shown = true;
      fmt::print(stderr, "\r\033[Ktrawl query: {} of {} blocks read, {} packets out, {:.1f} MiB decoded",
                 s.candidate_blocks, s.blocks, s.packets_out, static_cast<double>(s.raw_bytes_decoded) / (1 << 20));
    };
    auto r = query::run_query(o, cb);
    if (progress_shown) fmt::print(stderr, "\r\033[K");
    if (fd != STDOUT_FILENO) ::close(fd);
    if (!r) {
      fmt::print(stderr, "trawl query: {}\n", r.error().message());
      return 1;
    }
    if (st->stats)
      fmt::print(stderr,
                 "trawl query: {} segments, {} blocks in the window, {} read ({:.1f} MiB decoded), {} packets "
                 "scanned, {} written, {} indexes rebuilt, {:.3f} s\n",
                 r->segments, r->blocks, r->candidate_blocks, static_cast<double>(r->raw_bytes_decoded) / (1 << 20),
                 r->packets_scanned, r->packets_out, r->indexes_rebuilt,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (r->damaged_blocks) {
      fmt::print(stderr, "trawl query: {} packets written; {} damaged block(s) skipped\n", r->packets_out,
                 r->damaged_blocks);
      return 3;
    }
    return 0;
  };
}

}  // namespace trawl::cli
