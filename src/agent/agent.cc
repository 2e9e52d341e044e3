// The agent's capture loop. One pass:
//   1. source.poll()      -> packets copied once, ring -> batch frame
//   2. batch full or old  -> seal: add interface stats and pending gap records
//   3. spool.append()     -> durable on the edge before it is sent;
//                            a refused/evicted batch becomes a gap record
//   4. sender.notify()    -> the sender thread streams it (sender.cc)
#include "agent/agent.h"

#include <netdb.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/privileges.h"
#include "agent/sender.h"
#include "metrics/exposition.h"
#include "web/http_server.h"
#include "pki/pki.h"
#include "wire/frames.h"
#include "wire/tcp.h"

namespace trawl::agent {
namespace {

// Turns captured packets into batch frames.
class Batcher final : public capture::PacketSink {
 public:
  Batcher(const AgentOptions& opts, std::span<const InterfaceInfo> ifaces, uint64_t spool_id,
          AgentCounters& counters, SharedSpool& shared, const Clock& clock)
      : opts_(opts), ifaces_(ifaces.begin(), ifaces.end()), spool_id_(spool_id), counters_(counters),
        shared_(shared), clock_(clock), batch_iface_packets_(ifaces_.size(), 0), agent_drops_(ifaces_.size(), 0) {
    builder_.reset(spool_id_, ifaces_);
  }

  // Called by the capture source for every packet, inside pcap_dispatch. A
  // full batch is sealed right here, so batches never outgrow their limits
  // however many packets one dispatch delivers.
  void on_packet(uint16_t iface, uint64_t ts_ns, uint32_t orig_len, std::span<const uint8_t> data) override {
    // A batch never spans a wall-clock minute (by packet time), so that the
    // collector's per-minute ledger can place every batch, and the gap
    // record of a dropped one, in exactly one minute.
    if (ts_ns >= minute_end_ns_ && builder_.packets() > 0 && error_.ok()) error_ = seal(shared_, clock_.wall_ns());
    if (builder_.packets() == 0) minute_end_ns_ = (ts_ns / kMinuteNs + 1) * kMinuteNs;
    if (builder_.empty()) opened_mono_ = now_mono_;
    builder_.add_packet(iface, ts_ns, orig_len, data);
    ++batch_iface_packets_[iface];
    // Plain adds, published once per dispatch: a locked add per packet
    // waited for the packet copy's stores to drain (a third of this
    // thread's time at 500k pps of 1500 bytes).
    ++unpublished_packets_;
    unpublished_bytes_ += data.size();
    if (full() && error_.ok()) error_ = seal(shared_, clock_.wall_ns());
  }

  // Adds the packets counted since the last call to the shared counters.
  void publish_counts() {
    if (unpublished_packets_ == 0) return;
    counters_.packets_captured.fetch_add(unpublished_packets_, std::memory_order_relaxed);
    counters_.bytes_captured.fetch_add(unpublished_bytes_, std::memory_order_relaxed);
    unpublished_packets_ = unpublished_bytes_ = 0;
  }

  // A spool failure met while sealing inside on_packet (sticky).
  const Status& error() const { return error_; }

  void set_now(uint64_t mono) { now_mono_ = mono; }
  bool full() const {
    return builder_.frame_bytes() >= opts_.batch_max_bytes || builder_.packets() >= opts_.batch_max_packets;
  }
  bool old(uint64_t mono) const { return !builder_.empty() && mono - opened_mono_ >= opts_.batch_max_age_ns; }
  bool empty() const { return builder_.empty(); }

  // Adds the interfaces' cumulative counters, and a kernel-drop gap record
  // for every interface whose ring or NIC dropped packets since the last
  // report (the bytes of a kernel drop are unknown, so the gap says 0).
  void add_stats(const std::vector<InterfaceStats>& stats, uint64_t wall_ns) {
    if (builder_.empty()) opened_mono_ = now_mono_;
    if (last_drops_.size() < stats.size()) last_drops_.resize(stats.size(), {0, 0});
    uint64_t kernel_total = 0;
    for (auto s : stats) {
      s.agent_drops = agent_drops_[s.iface];  // so the stored ISB counts spool drops too
      builder_.add_stats(s);
      kernel_total += s.kernel_drops + s.if_drops;
      auto& [drops, since] = last_drops_[s.iface];
      uint64_t now_drops = s.kernel_drops + s.if_drops;
      if (now_drops > drops) {
        Gap g;
        g.iface = s.iface;
        g.reason = GapReason::kKernelDrop;
        g.from_ns = since ? since : wall_ns;
        g.to_ns = wall_ns;
        g.packets = now_drops - drops;
        builder_.add_gap(g);
        spdlog::warn("capture on {}: the kernel dropped {} packets (ring too small or CPU too slow; see --ring-size)",
                     ifaces_[s.iface].name, g.packets);
      }
      drops = now_drops;
      since = wall_ns;
    }
    counters_.packets_dropped_kernel.store(kernel_total, std::memory_order_relaxed);
  }

  // The agent's spool, reported once a second with the stats.
  void add_spool_status(const SpoolStatus& s) {
    if (builder_.empty()) opened_mono_ = now_mono_;
    builder_.add_spool_status(s);
  }

  // Seals the batch into the spool. Returns false on a spool I/O error.
  Status seal(SharedSpool& shared, uint64_t wall_ns) {
    if (builder_.empty()) return ok_status();
    for (const auto& [minute, g] : pending_gaps_) builder_.add_gap(g);
    EntryMeta meta;
    meta.packets = builder_.packets();
    meta.packet_bytes = builder_.packet_bytes();
    meta.first_ts_ns = builder_.first_ts_ns();
    meta.last_ts_ns = builder_.last_ts_ns();
    Result<AppendOutcome> out = Error("");
    {
      std::lock_guard lock(shared.mu);
      meta.seq = shared.spool->last_seq() + 1;
      auto frame = builder_.finish(meta.seq, wall_ns);
      out = shared.spool->append(meta, frame);
      // Hand the frame itself to the sender too: it is on disk for resends,
      // and need not be read back for the first send.
      if (out && out->stored) shared.push_recent(meta.seq, builder_.take_frame(shared.take_buffer()));
    }
    if (!out) return std::move(out).error().with_context("spooling batch");
    counters_.batches_sealed.fetch_add(1, std::memory_order_relaxed);
    bool carried_gap = !pending_gaps_.empty();
    // Forget the gaps of batches the collector has acknowledged.
    uint64_t acked = counters_.acked_seq.load(std::memory_order_relaxed);
    carried_.erase(carried_.begin(), carried_.upper_bound(acked));
    if (out->stored && carried_gap) {
      // Remembered until acked: drop-oldest may evict this batch, and its gap
      // record with it, before it is delivered.
      auto& carried = carried_[meta.seq];
      for (const auto& [minute, g] : pending_gaps_) carried.push_back(g);
      pending_gaps_.clear();
    }
    for (const auto& d : out->dropped) {
      // The refused batch (drop-newest) or evicted ones (drop-oldest): their
      // packets are lost, and so is any gap record the refused one carried,
      // which is why pending_gaps_ are only cleared when a batch is stored.
      record_drop(d);
      // Per-interface counts for the ISBs: known exactly for the batch just
      // refused; an evicted older batch's split is not kept, so it is only
      // attributed when there is a single interface.
      if (d.seq == meta.seq) {
        for (size_t i = 0; i < agent_drops_.size(); ++i) agent_drops_[i] += batch_iface_packets_[i];
      } else if (agent_drops_.size() == 1) {
        agent_drops_[0] += d.packets;
      }
    }
    std::fill(batch_iface_packets_.begin(), batch_iface_packets_.end(), 0);
    shared.notify();
    builder_.reset(spool_id_, ifaces_);
    return ok_status();
  }

 private:
  void record_drop(const EntryMeta& d) {
    // An evicted batch that carried a gap record takes it along: that loss
    // (already counted) moves into the pending gap, so the stored gap
    // records always add up to packets_dropped_spool.
    if (auto it = carried_.find(d.seq); it != carried_.end()) {
      for (const Gap& g : it->second) add_to_pending_gap(g.packets, g.bytes, g.from_ns, g.to_ns);
      carried_.erase(it);
    }
    if (d.packets == 0) return;
    counters_.packets_dropped_spool.fetch_add(d.packets, std::memory_order_relaxed);
    counters_.bytes_dropped_spool.fetch_add(d.packet_bytes, std::memory_order_relaxed);
    add_to_pending_gap(d.packets, d.packet_bytes, d.first_ts_ns, d.last_ts_ns);
    if (!logged_full_) {
      spdlog::warn("spool full: dropping batches ({} policy); the loss is recorded as a gap",
                   opts_.spool.policy == DropPolicy::kDropNewest ? "drop-newest" : "drop-oldest");
      logged_full_ = true;
    }
  }

  // One pending gap per minute: dropped batches never span a minute, so
  // neither does a gap record.
  void add_to_pending_gap(uint64_t packets, uint64_t bytes, uint64_t from_ns, uint64_t to_ns) {
    if (packets == 0) return;
    Gap& g = pending_gaps_[from_ns / kMinuteNs];
    if (g.packets == 0) {
      g.iface = 0xffff;
      g.reason = GapReason::kSpoolFull;
      g.from_ns = from_ns;
      g.to_ns = to_ns;
    } else {
      g.from_ns = std::min(g.from_ns, from_ns);
      g.to_ns = std::max(g.to_ns, to_ns);
    }
    g.packets += packets;
    g.bytes += bytes;
  }

  const AgentOptions& opts_;
  std::vector<InterfaceInfo> ifaces_;
  uint64_t spool_id_;
  AgentCounters& counters_;
  SharedSpool& shared_;
  const Clock& clock_;
  Status error_;
  wire::BatchBuilder builder_{2 << 20};
  uint64_t now_mono_ = 0;
  uint64_t opened_mono_ = 0;
  static constexpr uint64_t kMinuteNs = 60'000'000'000ull;
  uint64_t minute_end_ns_ = 0;                 // the open batch's packets are before this
  uint64_t unpublished_packets_ = 0;            // counted, not yet in counters_ (publish_counts)
  uint64_t unpublished_bytes_ = 0;
  std::map<uint64_t, Gap> pending_gaps_;       // minute -> spool-full gap not yet in a stored batch
  std::map<uint64_t, std::vector<Gap>> carried_;  // seq -> gap records of a spooled, unacked batch (this run only)
  bool logged_full_ = false;
  std::vector<std::pair<uint64_t, uint64_t>> last_drops_;
  std::vector<uint64_t> batch_iface_packets_;  // packets per interface in the open batch
  std::vector<uint64_t> agent_drops_;          // cumulative spool-policy drops per interface  // per iface: drops reported, when
};

SpoolStatus spool_status(SharedSpool& shared, uint64_t wall_ns) {
  SpoolStatus st;
  st.ts_ns = wall_ns;
  std::lock_guard lock(shared.mu);
  st.bytes = shared.spool->bytes();
  st.batches = shared.spool->entries();
  st.oldest_unacked_ns = shared.spool->oldest_unacked_first_ts().value_or(0);
  return st;
}

Result<std::shared_ptr<wire::TlsContext>> load_credentials(const AgentOptions& opts) {
  if (opts.credentials.insecure) return std::shared_ptr<wire::TlsContext>();
  auto files = pki::resolve(opts.credentials, opts.name);
  if (!files) return std::move(files).error();
  return wire::tls_client_context(*files);
}

// Creates the spool directory and hands it to the unprivileged user, so
// the spool keeps working after the drop.
Status prepare_spool_dir(const AgentOptions& opts) {
  std::error_code ec;
  if (std::filesystem::create_directories(opts.spool.dir, ec) && !ec) {
    std::filesystem::permissions(opts.spool.dir, std::filesystem::perms::owner_all, ec);  // captured traffic
  }
  if (ec) return Error(fmt::format("creating spool directory {}: {}", opts.spool.dir.string(), ec.message()));
  if (geteuid() != 0 || opts.user.empty()) return ok_status();
  auto ids = lookup_user(opts.user);
  if (!ids) return std::move(ids).error();
  auto own = [&](const std::filesystem::path& p) -> Status {
    if (lchown(p.c_str(), ids->uid, ids->gid) != 0) return Error::from_errno("chown " + p.string());
    return ok_status();
  };
  TRAWL_TRY(own(opts.spool.dir), "preparing spool");
  for (const auto& e : std::filesystem::recursive_directory_iterator(opts.spool.dir, ec)) {
    TRAWL_TRY(own(e.path()), "preparing spool");
  }
  return ok_status();
}

}  // namespace

std::vector<uint8_t> SharedSpool::take_buffer() {
  if (free_buffers.empty()) {
    std::vector<uint8_t> b;
    b.reserve(2u << 20);
    return b;
  }
  std::vector<uint8_t> b = std::move(free_buffers.back());
  free_buffers.pop_back();
  b.clear();
  return b;
}

void SharedSpool::give_buffer(std::vector<uint8_t>&& b) {
  if (free_buffers.size() < kMaxFreeBuffers && b.capacity() <= (8u << 20)) free_buffers.push_back(std::move(b));
}

void SharedSpool::push_recent(uint64_t seq, std::vector<uint8_t>&& frame) {
  recent_bytes += frame.size();
  recent.emplace_back(seq, std::move(frame));
  while (recent_bytes > kMaxRecentBytes && !recent.empty()) {
    recent_bytes -= recent.front().second.size();
    give_buffer(std::move(recent.front().second));
    recent.pop_front();
  }
}

void SharedSpool::notify() {
  uint64_t one = 1;
  if (wake_fd >= 0) (void)!write(wake_fd, &one, sizeof one);
}

Result<std::string> own_traffic_filter(const std::vector<std::string>& collectors) {
  std::string out;
  for (const auto& c : collectors) {
    auto hp = wire::parse_host_port(c);
    if (!hp) return std::move(hp).error().with_context("collector address '" + c + "'");
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string host = hp->host.empty() ? "0.0.0.0" : hp->host;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0) return Error(fmt::format("resolving collector '{}': {}", host, gai_strerror(rc)));
    for (addrinfo* a = res; a; a = a->ai_next) {
      char ip[NI_MAXHOST];
      if (getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof ip, nullptr, 0, NI_NUMERICHOST) != 0) continue;
      std::string term = fmt::format("(tcp and host {} and port {})", ip, hp->port);
      if (out.find(term) != std::string::npos) continue;
      if (!out.empty()) out += " or ";
      out += term;
    }
    freeaddrinfo(res);
  }
  return out;
}

Status run_agent(const AgentOptions& opts, std::atomic<bool>& stop, AgentCounters& counters) {
  const Clock& clock = SystemClock::instance();
  if (opts.name.empty()) return Error("the agent needs a --name");
  if (opts.collectors.empty()) return Error("the agent needs at least one --collector HOST:PORT");
  wire::ignore_sigpipe();

  capture::CaptureOptions copts = opts.capture;
  auto exclude = own_traffic_filter(opts.collectors);
  if (!exclude) return std::move(exclude).error();
  copts.exclude_filter = *exclude;
  auto source = capture::PcapSource::open(copts);
  if (!source) return std::move(source).error();
  auto tls = load_credentials(opts);
  if (!tls) return std::move(tls).error().with_context("loading agent credentials");
  TRAWL_TRY(prepare_spool_dir(opts), "agent");
  if (!opts.user.empty()) TRAWL_TRY(drop_privileges(opts.user), "agent");

  SharedSpool shared;
  auto spool = Spool::open(opts.spool);
  if (!spool) return std::move(spool).error().with_context("opening spool");
  shared.spool = std::move(*spool);
  shared.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (shared.wake_fd < 0) return Error::from_errno("eventfd");

  const auto& ifaces = (*source)->interfaces();
  std::string names;
  for (const auto& i : ifaces) names += (names.empty() ? "" : ",") + i.name;
  spdlog::info("agent {}: capturing on {} (snaplen {}, filter '{}'), spool {} ({} batches pending), running as uid {}",
               opts.name, names, copts.snaplen, copts.filter, opts.spool.dir.string(),
               shared.spool->entries(), geteuid());

  // Per-interface counters as last read from pcap_stats, for /metrics.
  std::mutex iface_stats_mu;
  std::vector<InterfaceStats> iface_stats;
  // The registry before the server that reads it: locals are destroyed in
  // reverse order, and the server's thread may be serving a scrape until
  // the server is gone (ASan caught a scrape reading a destroyed registry).
  metrics::MetricsRegistry registry;
  std::unique_ptr<web::HttpServer> http;
  if (!opts.metrics_listen.empty()) {
    registry.add([&](metrics::Exposition& e) {
      const metrics::Labels a{{"agent", opts.name}};
      metrics::write_build_info(e, "agent");
      e.counter("trawl_agent_captured_packets_total", "Packets captured (all interfaces)",
                counters.packets_captured.load(), a);
      e.counter("trawl_agent_captured_bytes_total", "Captured bytes (all interfaces)", counters.bytes_captured.load(), a);
      {
        std::lock_guard lock(iface_stats_mu);
        auto per_iface = [&](const char* name, const char* help, auto field) {
          for (const auto& s : iface_stats) {
            e.counter(name, help, static_cast<double>(field(s)), {{"agent", opts.name}, {"interface", ifaces[s.iface].name}});
          }
        };
        per_iface("trawl_agent_interface_received_packets_total", "Packets the kernel passed to the capture (pcap_stats ps_recv)",
                  [](const InterfaceStats& s) { return s.received; });
        per_iface("trawl_agent_interface_kernel_dropped_packets_total", "Packets dropped because the capture ring was full",
                  [](const InterfaceStats& s) { return s.kernel_drops; });
        per_iface("trawl_agent_interface_dropped_packets_total", "Packets dropped by the interface or driver",
                  [](const InterfaceStats& s) { return s.if_drops; });
      }
      e.counter("trawl_agent_spool_dropped_packets_total", "Packets dropped by the spool policy (recorded as gaps)",
                counters.packets_dropped_spool.load(), a);
      e.counter("trawl_agent_spool_dropped_bytes_total", "Bytes dropped by the spool policy",
                counters.bytes_dropped_spool.load(), a);
      e.counter("trawl_agent_batches_sealed_total", "Batches sealed into the spool", counters.batches_sealed.load(), a);
      e.counter("trawl_agent_batches_sent_total", "Batches sent (first sends and re-sends)", counters.batches_sent.load(), a);
      e.counter("trawl_agent_batches_resent_total", "Batches sent again after a reconnect", counters.batches_resent.load(), a);
      e.counter("trawl_agent_batches_acked_total", "Batches the collector acknowledged as durable",
                counters.batches_acked.load(), a);
      e.counter("trawl_agent_connects_total", "Sessions established with a collector", counters.connects.load(), a);
      e.counter("trawl_agent_connect_failures_total", "Failed connection or TLS attempts",
                counters.connect_failures.load(), a);
      std::lock_guard lock(shared.mu);
      e.gauge("trawl_agent_spool_bytes", "Bytes of spool records on disk, headers included",
              static_cast<double>(shared.spool->bytes()), a);
      e.gauge("trawl_agent_spool_disk_bytes",
              "Disk the spool's files take: records plus spare files kept for reuse (at most --spool-size)",
              static_cast<double>(shared.spool->disk_bytes()), a);
      e.gauge("trawl_agent_spool_batches", "Unacknowledged batches in the spool",
              static_cast<double>(shared.spool->entries()), a);
      auto oldest = shared.spool->oldest_unacked_first_ts();
      double age = oldest ? static_cast<double>(clock.wall_ns() - std::min(*oldest, clock.wall_ns())) / 1e9 : 0;
      e.gauge("trawl_agent_spool_oldest_unacked_age_seconds", "Age of the oldest unacknowledged packet", age, a);
      e.gauge("trawl_agent_acked_seq", "Highest batch sequence number acknowledged", counters.acked_seq.load(), a);
    });
    auto srv = web::HttpServer::start(opts.metrics_listen, [&registry](std::string_view target) {
      std::string_view path = web::path_of(target);
      if (path == "/metrics") return web::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", registry.scrape()};
      if (path == "/healthz" || path == "/readyz") return web::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
      return web::HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
    });
    if (!srv) return std::move(srv).error().with_context("agent");
    http = std::move(*srv);
    spdlog::info("agent {}: metrics on port {} (/metrics, /healthz, /readyz)", opts.name, http->port());
  }

  std::atomic<bool> sender_stop{false};
  Sender sender(opts, *tls, shared, counters, clock);
  std::thread sender_thread([&] { sender.run(sender_stop); });

  Batcher batcher(opts, ifaces, shared.spool->spool_id(), counters, shared, clock);
  uint64_t next_stats = clock.mono_ns();
  uint64_t started = clock.mono_ns();
  Status result;
  while (!stop.load(std::memory_order_relaxed)) {
    uint64_t now = clock.mono_ns();
    batcher.set_now(now);
    // 1. capture
    auto got = (*source)->poll(10, opts.batch_max_packets, batcher);
    batcher.publish_counts();
    if (!got) {
      result = std::move(got).error();
      break;
    }
    if (!batcher.error().ok()) {
      result = batcher.error();
      break;
    }
    now = clock.mono_ns();
    batcher.set_now(now);
    // 2. stats ride with the batches, so they are stored in order with them
    if (now >= next_stats) {
      auto stats = (*source)->stats();
      uint64_t wall = clock.wall_ns();
      for (auto& s : stats) s.ts_ns = wall;
      batcher.add_stats(stats, wall);
      batcher.add_spool_status(spool_status(shared, wall));
      if (http) {
        std::lock_guard lock(iface_stats_mu);
        iface_stats = stats;
      }
      next_stats = now + opts.stats_every_ns;
    }
    // 3. seal into the spool
    if (batcher.full() || batcher.old(now)) {
      if (auto s = batcher.seal(shared, clock.wall_ns()); !s) {
        spdlog::error("agent {}: {}", opts.name, s.error().message());
        result = std::move(s);
        break;
      }
    }
    if (opts.max_capture_ns && now - started >= opts.max_capture_ns) break;
  }
  // Drain the kernel ring: packets can sit in a not-yet-retired TPACKET_V3
  // block for up to the block timeout, and a stop must not lose them.
  if (result.ok()) {
    int quiet_polls = 0;
    uint64_t drain_deadline = clock.mono_ns() + 2'000'000'000ull;
    while (quiet_polls < 2 && clock.mono_ns() < drain_deadline) {
      auto got = (*source)->poll(2 * copts.block_timeout_ms + 10, opts.batch_max_packets, batcher);
      if (!got) break;
      quiet_polls = *got == 0 ? quiet_polls + 1 : 0;
      if (batcher.full()) {
        if (auto s = batcher.seal(shared, clock.wall_ns()); !s) {
          result = std::move(s);
          break;
        }
      }
    }
  }
  // Flush what was captured (with final stats) before stopping the sender.
  if (result.ok()) {
    auto stats = (*source)->stats();
    uint64_t wall = clock.wall_ns();
    for (auto& s : stats) s.ts_ns = wall;
    batcher.add_stats(stats, wall);
    batcher.add_spool_status(spool_status(shared, wall));
    if (auto s = batcher.seal(shared, clock.wall_ns()); !s) result = std::move(s);
  }
  // Give the sender a bounded time to get the spool acknowledged; whatever
  // is left stays in the spool and is sent by the next run.
  uint64_t drain_until = clock.mono_ns() + opts.drain_timeout_ns;
  while (clock.mono_ns() < drain_until) {
    {
      std::lock_guard lock(shared.mu);
      if (shared.spool->entries() == 0) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sender_stop = true;
  shared.notify();
  sender_thread.join();
  http.reset();  // no scrape from here on
  close(shared.wake_fd);
  spdlog::info(
      "agent {}: stopped; {} packets captured, {} dropped by the kernel, {} dropped by spool policy, {} batches "
      "unacknowledged in spool",
      opts.name, counters.packets_captured.load(), counters.packets_dropped_kernel.load(),
      counters.packets_dropped_spool.load(), shared.spool->entries());
  return result;
}

}  // namespace trawl::agent
