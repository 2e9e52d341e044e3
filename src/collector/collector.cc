// The collector's accept and housekeeping threads, and the per-connection
// session loop. One session:
//   1. TLS handshake -> the agent's name comes from its certificate
//   2. HELLO -> storage slot (taking over from a stale connection) -> WELCOME
//   3. receive -> verify (BatchView::parse) -> accept_batch: dedupe (spool
//      id, seq) -> publish live (LiveBus, never blocks) -> writer.append
//      (begin_batch / packet / end_batch; may rotate; skipped for
//      stream-only agents) -> ledger (per-minute completeness counts)
//   4. group commit: fdatasync at most every group_commit_ns -> ledger -> ACK
#include "collector/collector.h"
#include "query/http_query.h"  // wt/store

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>


#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "collector/osmo_listener.h"
#include "core/time_parse.h"
#include "pki/pki.h"
#include "store/segment_name.h"
#include "wire/frames.h"
#include "wire/tcp.h"

namespace trawl::collector {
namespace {

bool valid_agent_name(std::string_view n) {
  if (n.empty() || n.size() > 63) return false;
  auto ok = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  };
  if (n[0] == '.' || n[0] == '-') return false;
  for (char c : n) {
    if (!ok(c)) return false;
  }
  return true;
}

}  // namespace

class Session {
 public:
  Session(Collector& c, std::unique_ptr<wire::Connection> conn) : c_(c), conn_(std::move(conn)) {}

  // Runs until the peer goes, misbehaves, is superseded, or the collector stops.
  void run() {
    Status s = loop();
    if (slot_) {
      // Make what we appended durable even if we are not going to ack it:
      // the agent will resend and the dedupe will recognise it.
      std::lock_guard lock(slot_->mu);
      if (slot_->writer->sync().ok()) {
        c_.ledger_commit(*slot_, agent_, true);
      } else {
        slot_->ledger->rollback();
      }
      if (slot_->generation.load() == generation_) {
        slot_->connected = false;
        slot_->connected_since_ns = c_.clock_.wall_ns();
        slot_->disconnect_reason = s.ok() ? "agent closed the connection" : s.error().message();
      }
    }
    if (!s.ok()) {
      // Tell the peer why, best effort, then close.
      std::vector<uint8_t> err;
      wire::encode(err, wire::ErrorMsg{error_code_, s.error().message()});
      (void)conn_->write(err);
      spdlog::warn("collector: closing connection from {}{}: {}", conn_->peer_address(),
                   agent_.empty() ? "" : " (agent " + agent_ + ")", s.error().message());
    } else if (!agent_.empty()) {
      spdlog::info("collector: agent {} ({}) disconnected", agent_, conn_->peer_address());
    }
    if (slot_ && c_.live_) c_.live_->publish_event(agent_, "disconnect", conn_->peer_address());
    conn_->shutdown();
  }

 private:
  Status protocol_error(MalformedReason reason, std::string why) {
    c_.counters_.malformed_frames.fetch_add(1);
    c_.counters_.malformed_by_reason[static_cast<size_t>(reason)].fetch_add(1);
    error_code_ = wire::ErrorCode::kProtocol;
    return Error(std::move(why));
  }

  Status on_hello(std::span<const uint8_t> body) {
    auto h = wire::decode_hello(body);
    if (!h) return protocol_error(MalformedReason::kBadHello, h.error().message());
    if (h->version != wire::kProtocolVersion) {
      error_code_ = wire::ErrorCode::kVersion;
      return Error(fmt::format("agent speaks protocol v{}, this collector v{}", h->version, wire::kProtocolVersion));
    }
    // The certificate names the agent; the HELLO's name is only checked.
    agent_ = conn_->identity().empty() ? h->agent_name : conn_->identity();
    if (!conn_->identity().empty() && h->agent_name != conn_->identity()) {
      spdlog::warn("collector: {} claims to be '{}' but its certificate says '{}'; using the certificate",
                   conn_->peer_address(), h->agent_name, conn_->identity());
    }
    if (!valid_agent_name(agent_)) {
      c_.counters_.connections_refused.fetch_add(1);
      error_code_ = wire::ErrorCode::kRefused;
      return Error(fmt::format("refused: '{}' is not a valid agent name", agent_));
    }
    const auto& allow = c_.opts_.allow_agents;
    if (!allow.empty() && std::find(allow.begin(), allow.end(), agent_) == allow.end()) {
      c_.counters_.connections_refused.fetch_add(1);
      error_code_ = wire::ErrorCode::kRefused;
      return Error(fmt::format("refused: agent '{}' is not in the allowed list", agent_));
    }
    auto slot = c_.slot_for(agent_, h->hostname);
    if (!slot) {
      error_code_ = wire::ErrorCode::kUnavailable;
      return std::move(slot).error();
    }
    slot_ = *slot;
    generation_ = slot_->generation.fetch_add(1) + 1;  // supersedes any older session
    wire::Welcome w;
    {
      std::lock_guard lock(slot_->mu);
      slot_->host = h->hostname;
      slot_->connected = true;
      slot_->peer = conn_->peer_address();
      slot_->connected_since_ns = c_.clock_.wall_ns();
      slot_->disconnect_reason.clear();
      TRAWL_TRY(slot_->writer->sync(), "syncing before WELCOME");
      if (slot_->spool_id() == h->spool_id) w.durable_seq = slot_->last_seq();
    }
    if (c_.live_) c_.live_->publish_event(agent_, "connect", conn_->peer_address());
    wire::encode(out_, w);
    spdlog::info("collector: agent {} connected from {} (host {}, {}; resuming after seq {})", agent_,
                 conn_->peer_address(), h->hostname, h->software, w.durable_seq);
    return ok_status();
  }

  Status on_batch(std::span<const uint8_t> body) {
    auto b = wire::BatchView::parse(body);
    if (!b) return protocol_error(MalformedReason::kBadBatch, b.error().message());
    if (b->seq() <= last_seq_in_session_) {
      return protocol_error(MalformedReason::kOutOfOrder, fmt::format("BATCH seq {} out of order (after {})", b->seq(), last_seq_in_session_));
    }
    last_seq_in_session_ = b->seq();
    std::lock_guard lock(slot_->mu);
    auto accepted = c_.accept_batch(*slot_, agent_, body, *b);
    if (!accepted) return storage_error(std::move(accepted).error());
    need_ack_ = true;
    return ok_status();
  }

  Status storage_error(Status s) {
    c_.counters_.storage_errors.fetch_add(1);
    error_code_ = wire::ErrorCode::kUnavailable;
    return std::move(s).error().with_context("storage unavailable");
  }

  // fsync (if due) and ACK everything it covered.
  Status commit(uint64_t now, bool force) {
    if (!need_ack_) return ok_status();
    if (!force && now - last_commit_ < c_.opts_.group_commit_ns) return ok_status();
    uint64_t seq = 0;
    {
      std::lock_guard lock(slot_->mu);
      // With --no-fsync the writer's sync() writes without fdatasync; it
      // still has to run, so an acked batch is never rolled back.
      uint64_t t0 = c_.clock_.mono_ns();
      Status s = slot_->writer->sync();
      if (!s) {
        slot_->ledger->rollback();
        return storage_error(std::move(s));
      }
      slot_->sync_latency.observe(c_.clock_.mono_ns() - t0);
      if (c_.opts_.fsync) c_.counters_.fsyncs.fetch_add(1, std::memory_order_relaxed);
      c_.ledger_commit(*slot_, agent_, false);
      seq = slot_->last_seq();
    }
    last_commit_ = now;
    need_ack_ = false;
    wire::encode(out_, wire::Ack{std::min(seq, last_seq_in_session_)});
    return ok_status();
  }

  Status flush_out() {
    while (out_pos_ < out_.size()) {
      auto n = conn_->write({out_.data() + out_pos_, out_.size() - out_pos_});
      if (!n) return std::move(n).error();
      if (*n == 0) return ok_status();
      out_pos_ += *n;
    }
    out_.clear();
    out_pos_ = 0;
    return ok_status();
  }

  Status loop() {
    const Clock& clock = c_.clock_;
    uint64_t hello_deadline = clock.mono_ns() + 10'000'000'000ull;
    for (;;) {
      if (c_.stopping_.load()) {
        error_code_ = wire::ErrorCode::kShutdown;
        TRAWL_TRY(commit(clock.mono_ns(), true), "shutdown");
        (void)flush_out();
        return Error("collector shutting down");
      }
      if (slot_ && slot_->generation.load() != generation_) {
        error_code_ = wire::ErrorCode::kRefused;
        return Error("superseded by a newer connection from the same agent");
      }
      if (!slot_ && clock.mono_ns() > hello_deadline) return protocol_error(MalformedReason::kNoHello, "no HELLO within 10 s");
      // 3. receive a burst: until the socket is drained, or 8 MiB / 20 ms.
      uint64_t burst_start = clock.mono_ns();
      size_t burst_bytes = 0;
      bool drained = false;
      while (burst_bytes < (8u << 20) && clock.mono_ns() - burst_start < 20'000'000) {
        auto span = in_.writable(256 << 10);
        auto n = conn_->read(span);
        if (!n) {
          // Peer gone: make what we have durable, no ack possible.
          if (wire::is_peer_closed(n.error())) return ok_status();
          return std::move(n).error();
        }
        if (*n == 0) {
          drained = true;
          break;
        }
        in_.commit(*n);
        burst_bytes += *n;
        for (;;) {
          auto f = in_.next();
          if (!f) return protocol_error(MalformedReason::kBadHeader, f.error().message());
          if (!f->has_value()) break;
          const auto& frame = **f;
          if (!slot_) {
            if (frame.type != wire::FrameType::kHello) {
              return protocol_error(MalformedReason::kUnexpectedFrame, fmt::format("expected HELLO, got {}", wire::to_string(frame.type)));
            }
            TRAWL_TRY(on_hello(frame.body), "HELLO");
            continue;
          }
          switch (frame.type) {
            case wire::FrameType::kBatch:
              TRAWL_TRY(on_batch(frame.body), "BATCH");
              break;
            case wire::FrameType::kPing:
              wire::encode_ping(out_);
              break;
            case wire::FrameType::kError: {
              auto e = wire::decode_error(frame.body);
              return Error(fmt::format("agent reported: {}", e ? e->text : "malformed ERROR"));
            }
            default:
              return protocol_error(MalformedReason::kUnexpectedFrame, fmt::format("unexpected {} frame", wire::to_string(frame.type)));
          }
        }
      }
      // 4. group commit
      TRAWL_TRY(commit(clock.mono_ns(), drained), "commit");
      TRAWL_TRY(flush_out(), "sending");
      if (!drained || conn_->has_buffered_read()) continue;
      short events = POLLIN;
      if (out_pos_ < out_.size() || conn_->want_write()) events |= POLLOUT;
      pollfd pfd{conn_->fd(), events, 0};
      int timeout = need_ack_ ? 1 : 200;
      if (::poll(&pfd, 1, timeout) < 0 && errno != EINTR) return Error::from_errno("poll");
    }
  }

  Collector& c_;
  std::unique_ptr<wire::Connection> conn_;
  std::string agent_;
  std::shared_ptr<AgentSlot> slot_;
  uint64_t generation_ = 0;
  wire::FrameDecoder in_{8u << 20};  // room for several 1 MiB batches: rare, short compactions
  std::vector<uint8_t> out_;
  size_t out_pos_ = 0;
  uint64_t last_seq_in_session_ = 0;
  uint64_t last_commit_ = 0;
  bool need_ack_ = false;
  wire::ErrorCode error_code_ = wire::ErrorCode::kProtocol;
};

std::string_view to_string(MalformedReason r) {
  switch (r) {
    case MalformedReason::kBadHeader: return "bad_header";
    case MalformedReason::kBadHello: return "bad_hello";
    case MalformedReason::kBadBatch: return "bad_batch";
    case MalformedReason::kOutOfOrder: return "out_of_order";
    case MalformedReason::kUnexpectedFrame: return "unexpected_frame";
    case MalformedReason::kNoHello: return "no_hello";
    case MalformedReason::kCount: break;
  }
  return "unknown";
}

std::string_view to_string(TlsFailure r) {
  switch (r) {
    case TlsFailure::kUntrustedCertificate: return "untrusted_certificate";
    case TlsFailure::kNoCertificate: return "no_certificate";
    case TlsFailure::kTimeout: return "timeout";
    case TlsFailure::kNotTls: return "not_tls";
    case TlsFailure::kOther: return "other";
    case TlsFailure::kCount: break;
  }
  return "other";
}

TlsFailure classify_tls_failure(std::string_view m) {
  auto has = [m](std::string_view s) { return m.find(s) != std::string_view::npos; };
  if (has("timed out")) return TlsFailure::kTimeout;
  if (has("certificate verify failed") || has("unknown ca") || has("unsuitable certificate purpose") ||
      has("certificate revoked") || has("not a valid agent name") || has("bad certificate")) {
    return TlsFailure::kUntrustedCertificate;
  }
  if (has("no client certificate") || has("did not return a certificate") || has("certificate required")) {
    return TlsFailure::kNoCertificate;
  }
  if (has("wrong version number") || has("http request") || has("unexpected eof") || has("packet length too long") ||
      has("record layer failure")) {
    return TlsFailure::kNotTls;
  }
  return TlsFailure::kOther;
}

Collector::Collector(CollectorOptions opts, const Clock& clock) : opts_(std::move(opts)), clock_(clock) {}

Collector::~Collector() { stop(); }

Result<bool> Collector::accept_batch(AgentSlot& slot, const std::string& agent, std::span<const uint8_t> body,
                                     const wire::BatchView& b, std::vector<uint8_t>* storage) {
  if (b.spool_id() == slot.spool_id() && b.seq() <= slot.last_seq()) {
    counters_.batches_duplicate.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // Live first: subscribers see the batch while it is being written.
  // `hold` keeps an adopted buffer (body) alive until the store step is done.
  live::LiveItemPtr hold;
  if (live_ && storage) hold = live_->publish_batch_adopt(agent, *storage, body, b);
  else if (live_) live_->publish_batch(agent, body, b);
  if (slot.stream_only) {
    slot.live_spool_id = b.spool_id();
    slot.live_last_seq = b.seq();
    counters_.batches_streamed.fetch_add(1, std::memory_order_relaxed);
    counters_.packets_streamed.fetch_add(b.packets(), std::memory_order_relaxed);
    // Not stored, but `trawl status` still shows its capture counters,
    // spool and freshness.
    uint64_t newest = slot.newest_packet_ns;
    b.for_each([&](const PacketView& p) { newest = std::max(newest, p.ts_ns); },
               [&](const InterfaceStats& st) { note_stats(slot, b.interfaces(), st); }, [](const Gap&) {},
               [&](const SpoolStatus& sp) { slot.spool = sp; });
    slot.newest_packet_ns = newest;
    slot.last_batch_wall_ns = clock_.wall_ns();
    return true;
  }
  auto& w = *slot.writer;
  if (b.spool_id() != w.spool_id() && w.spool_id() != 0) {
    spdlog::info("collector: agent {} starts a new sequence space (spool id {:016x}, was {:016x})", agent,
                 b.spool_id(), w.spool_id());
  }
  auto& ledger = *slot.ledger;
  uint64_t t0 = clock_.mono_ns();
  if (Status s = w.begin_batch(b.spool_id(), b.seq(), b.interfaces()); !s) {
    ledger.rollback();
    return std::move(s).error().with_context("storing batch");
  }
  ledger.begin_batch(b.interfaces());
  uint64_t newest = slot.newest_packet_ns;
  b.for_each(
      [&](const PacketView& p) {
        w.packet(p);
        ledger.packet(p.iface, p.ts_ns, static_cast<uint32_t>(p.data.size()));
        newest = std::max(newest, p.ts_ns);
      },
      [&](const InterfaceStats& st) {
        w.stats(st);
        ledger.stats(st);
        note_stats(slot, b.interfaces(), st);
      },
      [&](const Gap& g) {
        spdlog::warn("collector: agent {} reports a gap: {} packets, {} bytes lost ({})", agent, g.packets, g.bytes,
                     to_string(g.reason));
        w.gap(g);
        ledger.gap(g);
      },
      [&](const SpoolStatus& sp) { slot.spool = sp; });
  ledger.end_batch();
  if (Status s = w.end_batch(); !s) {
    ledger.rollback();
    return std::move(s).error().with_context("storing batch");
  }
  slot.newest_packet_ns = newest;
  slot.last_batch_wall_ns = clock_.wall_ns();
  slot.write_latency.observe(clock_.mono_ns() - t0);
  counters_.batches_stored.fetch_add(1, std::memory_order_relaxed);
  counters_.packets_stored.fetch_add(b.packets(), std::memory_order_relaxed);
  counters_.bytes_stored.fetch_add(b.packet_bytes(), std::memory_order_relaxed);
  return true;
}

// Keeps the last cumulative STATS per interface for `trawl status`.
void Collector::note_stats(AgentSlot& slot, const std::vector<InterfaceInfo>& ifaces, const InterfaceStats& st) {
  const std::string& name = ifaces[st.iface].name;
  auto& names = slot.iface_names;
  size_t i = std::find(names.begin(), names.end(), name) - names.begin();
  if (i == names.size()) {
    names.push_back(name);
    slot.iface_stats.emplace_back();
  }
  slot.iface_stats[i] = st;
}

uint16_t Collector::osmo_port() const { return osmo_ ? osmo_->port() : 0; }

Status Collector::start() {
  started_wall_ns_ = clock_.wall_ns();
  wire::ignore_sigpipe();
  if (!opts_.credentials.insecure) {
    auto files = pki::resolve(opts_.credentials);
    if (!files) return std::move(files).error();
    auto ctx = wire::tls_server_context(*files);
    if (!ctx) return std::move(ctx).error().with_context("loading collector credentials");
    tls_ = *ctx;
  }
  std::error_code ec;
  std::filesystem::create_directories(opts_.data_dir, ec);
  if (ec) return Error(fmt::format("creating data directory {}: {}", opts_.data_dir.string(), ec.message()));
  recover_unsealed();
  if (opts_.live.enabled()) {
    auto bus = live::LiveBus::start(opts_.live);
    if (!bus) return std::move(bus).error();
    live_ = std::move(*bus);
  }
  if (!opts_.osmo_listen.empty()) {
    osmo_ = std::make_unique<OsmoListener>(*this);
    TRAWL_TRY(osmo_->start(), "--osmo-listen " + opts_.osmo_listen);
  }
  auto hp = wire::parse_host_port(opts_.listen);
  if (!hp) return std::move(hp).error().with_context("--listen");
  auto fd = wire::tcp_listen(*hp);
  if (!fd) return std::move(fd).error().with_context("listening on " + opts_.listen);
  listen_fd_ = *fd;
  auto port = wire::bound_port(listen_fd_);
  if (!port) return std::move(port).error();
  port_ = *port;
  spdlog::info("collector: listening on {}:{} ({}), storing under {}", hp->host.empty() ? "*" : hp->host, port_,
               opts_.credentials.insecure ? "PLAINTEXT, --insecure" : "mutual TLS", opts_.data_dir.string());
  if (!opts_.metrics_listen.empty()) {
    registry_.add([this](metrics::Exposition& e) { write_metrics(e); });
    auto srv = web::HttpServer::start(opts_.metrics_listen, [this](std::string_view target) {
      std::string_view path = web::path_of(target);
      if (path == "/api/v1/agents") return api_agents();
      if (path == "/api/v1/coverage") return api_coverage(target);
      if (path == "/metrics") {
        return web::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", registry_.scrape()};
      }
      if (path == "/healthz") return web::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
      if (path == "/readyz") {
        if (storage_writable()) return web::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
        return web::HttpResponse{503, "text/plain; charset=utf-8", "storage not writable\n"};
      }
      return web::HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
    },
    // wt/store: the query API streams pcapng on threads of its own.
    {{"/api/v1/query", [dir = opts_.data_dir](std::string_view q, web::HttpStream& out) {
        query::serve_http_query(q, dir, out);
      }}});
    if (!srv) return std::move(srv).error();
    http_ = std::move(*srv);
    spdlog::info("collector: metrics on port {} (/metrics, /healthz, /readyz, /api/v1/query)", http_->port());
  }
  accept_thread_ = std::thread([this] { accept_loop(); });
  housekeeping_thread_ = std::thread([this] { housekeeping_loop(); });
  return ok_status();
}

void Collector::stop() {
  if (stopping_.exchange(true)) return;
  http_.reset();
  if (osmo_) osmo_->stop();
  if (accept_thread_.joinable()) accept_thread_.join();
  {
    std::unique_lock lock(sessions_mu_);
    sessions_cv_.wait(lock, [this] { return live_sessions_.load() == 0; });
  }
  if (housekeeping_thread_.joinable()) housekeeping_thread_.join();
  std::lock_guard lock(mu_);
  for (auto& [name, slot] : slots_) {
    std::lock_guard slot_lock(slot->mu);
    if (slot->writer) {
      if (auto s = slot->writer->close(); !s) {
        spdlog::error("collector: sealing segment of agent {}: {}", name, s.error().message());
      }
    }
  }
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
  if (live_) live_->stop();  // after sealing: closingtracefile events go out first
}

// Ready means a new file can be created and written in the data directory.
bool Collector::storage_writable() const {
  auto probe = opts_.data_dir / ".trawl-ready-probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ::write(fd, "ok", 2) == 2;
  ::close(fd);
  ::unlink(probe.c_str());
  return ok;
}

void Collector::write_metrics(metrics::Exposition& e) {
  metrics::write_build_info(e, "collector");
  const auto& c = counters_;
  e.counter("trawl_collector_connections_accepted_total", "TCP connections accepted", c.connections_accepted.load());
  e.counter("trawl_collector_connections_refused_total", "Connections refused (TLS, identity, limits)",
            c.connections_refused.load());
  for (size_t i = 0; i < static_cast<size_t>(TlsFailure::kCount); ++i) {
    e.counter("trawl_collector_tls_failures_total", "Failed TLS handshakes, by reason", c.tls_failures_by_reason[i].load(),
              {{"reason", std::string(to_string(static_cast<TlsFailure>(i)))}});
  }
  for (size_t i = 0; i < static_cast<size_t>(MalformedReason::kCount); ++i) {
    e.counter("trawl_collector_malformed_frames_total", "Connections closed for a malformed or unexpected frame, by reason",
              c.malformed_by_reason[i].load(), {{"reason", std::string(to_string(static_cast<MalformedReason>(i)))}});
  }
  e.counter("trawl_collector_batches_stored_total", "Batches written to segments", c.batches_stored.load());
  e.counter("trawl_collector_batches_duplicate_total", "Re-sent batches recognised and not stored again",
            c.batches_duplicate.load());
  e.counter("trawl_collector_fsyncs_total", "Group-commit fdatasync calls", c.fsyncs.load());
  e.counter("trawl_collector_storage_errors_total", "Storage failures (the agent's batches stay in its spool)",
            c.storage_errors.load());
  e.gauge("trawl_collector_sessions", "Connections being served", static_cast<double>(live_sessions_.load()));
  for (size_t i = 0; i < static_cast<size_t>(EvictionReason::kCount); ++i) {
    e.counter("trawl_collector_retention_evictions_total", "Segments deleted by retention, by reason",
              c.evictions[i].load(), {{"reason", std::string(to_string(static_cast<EvictionReason>(i)))}});
  }
  e.counter("trawl_collector_retention_evicted_bytes_total", "Bytes deleted by retention", c.evicted_bytes.load());
  e.counter("trawl_collector_ledger_errors_total", "Failed completeness-ledger writes (retried)", c.ledger_errors.load());
  e.gauge("trawl_collector_disk_free_bytes", "Free bytes on the data file system (at the last retention pass)",
          static_cast<double>(disk_free_bytes_.load()));
  e.counter("trawl_collector_streamed_batches_total", "Batches of stream-only agents (published live, not stored)",
            c.batches_streamed.load());
  e.counter("trawl_collector_streamed_packets_total", "Packets of stream-only agents (published live, not stored)",
            c.packets_streamed.load());
  if (osmo_) {
    e.counter("trawl_collector_osmo_connections_total", "osmo-pcap client connections accepted",
              c.osmo_connections.load());
    for (size_t i = 0; i < static_cast<size_t>(live::osmo::Malformed::kCount); ++i) {
      e.counter("trawl_collector_osmo_malformed_total", "osmo-pcap connections closed for an impossible message, by reason",
                c.osmo_malformed_by_reason[i].load(),
                {{"reason", std::string(live::osmo::to_string(static_cast<live::osmo::Malformed>(i)))}});
    }
  }
  if (live_) live_->write_metrics(e);
  struct AgentView {
    std::string name;
    store::SegmentCounters sc;
    bool connected;
    uint64_t disk_bytes, segments, newest_ns, spool_bytes;
    const AgentSlot* slot;  // for the lock-free histograms; slots are never removed
  };
  std::vector<AgentView> per_agent;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, slot] : slots_) {
      std::lock_guard slot_lock(slot->mu);
      per_agent.push_back({name, slot->writer->counters(), slot->connected, slot->disk_bytes, slot->segments,
                           slot->newest_packet_ns, slot->spool.bytes, slot.get()});
    }
  }
  auto each = [&](const char* name, const char* help, auto field) {
    for (const auto& a : per_agent) e.counter(name, help, static_cast<double>(field(a)), {{"agent", a.name}});
  };
  auto each_gauge = [&](const char* name, const char* help, auto field) {
    for (const auto& a : per_agent) e.gauge(name, help, static_cast<double>(field(a)), {{"agent", a.name}});
  };
  each("trawl_collector_stored_packets_total", "Packets stored in segments", [](const AgentView& a) { return a.sc.packets; });
  each("trawl_collector_stored_bytes_total", "Packet bytes stored in segments", [](const AgentView& a) { return a.sc.bytes; });
  each("trawl_collector_segments_sealed_total", "Segments sealed", [](const AgentView& a) { return a.sc.segments_sealed; });
  each("trawl_collector_write_errors_total", "Segment write errors (rolled back)",
       [](const AgentView& a) { return a.sc.write_errors; });
  each_gauge("trawl_collector_agent_connected", "1 while the agent has a live connection",
             [](const AgentView& a) { return a.connected ? 1 : 0; });
  each_gauge("trawl_collector_disk_bytes", "Bytes in the agent's data directory (segments, indexes, ledger)",
             [](const AgentView& a) { return a.disk_bytes; });
  each_gauge("trawl_collector_segments", "Sealed segments on disk", [](const AgentView& a) { return a.segments; });
  each_gauge("trawl_collector_agent_spool_bytes", "The agent's spool as it last reported it",
             [](const AgentView& a) { return a.spool_bytes; });
  uint64_t now = clock_.wall_ns();
  each_gauge("trawl_collector_newest_packet_age_seconds", "Now minus the newest stored packet's timestamp (lag)",
             [now](const AgentView& a) {
               return a.newest_ns ? static_cast<double>(now - std::min(now, a.newest_ns)) / 1e9 : 0.0;
             });
  for (const auto& a : per_agent) {
    e.histogram("trawl_collector_write_latency_seconds", "Time to append one batch to its segment",
                a.slot->write_latency, {{"agent", a.name}});
  }
  for (const auto& a : per_agent) {
    e.histogram("trawl_collector_fsync_latency_seconds", "Group commit: writing out and fdatasync of a segment",
                a.slot->sync_latency, {{"agent", a.name}});
  }
}

// Seals what a crash left open, for every agent, before any agent is back:
// readers should not have to wait for an agent's reconnect to see its data.
void Collector::recover_unsealed() {
  std::error_code ec;
  for (const auto& dir : std::filesystem::directory_iterator(opts_.data_dir, ec)) {
    if (!dir.is_directory()) continue;
    bool has_part = false;
    for (const auto& f : std::filesystem::directory_iterator(dir.path(), ec)) {
      if (f.path().extension() == ".part") has_part = true;
    }
    if (!has_part) continue;
    std::string agent = dir.path().filename().string();
    store::SegmentOptions so;
    so.dir = dir.path();
    so.agent = agent;
    so.fsync = opts_.fsync;
    so.zstd_level = opts_.zstd_level;  // wt/store
    so.block_bytes = opts_.block_bytes;
    auto w = store::SegmentWriter::open(so, clock_);
    if (!w) {
      spdlog::error("collector: recovering segments of agent {}: {}", agent, w.error().message());
      continue;
    }
    if (auto st = (*w)->close(); !st) {
      spdlog::error("collector: sealing recovered segment of agent {}: {}", agent, st.error().message());
    }
  }
}

void Collector::accept_loop() {
  while (!stopping_.load()) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, 200);
    if (rc <= 0) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::string peer = wire::describe_peer(fd);
    if (live_sessions_.load() >= opts_.max_connections) {
      counters_.connections_refused.fetch_add(1);
      spdlog::warn("collector: refusing {}: {} connections already", peer, opts_.max_connections);
      close(fd);
      continue;
    }
    counters_.connections_accepted.fetch_add(1);
    live_sessions_.fetch_add(1);
    std::thread([this, fd, peer] {
      serve(fd, peer);
      std::lock_guard lock(sessions_mu_);
      live_sessions_.fetch_sub(1);
      sessions_cv_.notify_all();
    }).detach();
  }
}

void Collector::serve(int fd, std::string peer) {
  std::unique_ptr<wire::Connection> conn;
  if (tls_) {
    auto c = wire::tls_accept(tls_, fd, peer, opts_.handshake_timeout_ms);
    if (!c) {
      counters_.tls_failures.fetch_add(1);
      counters_.tls_failures_by_reason[static_cast<size_t>(classify_tls_failure(c.error().message()))].fetch_add(1);
      counters_.connections_refused.fetch_add(1);
      spdlog::warn("collector: refused {}: TLS handshake failed: {}", peer, c.error().message());
      return;
    }
    conn = std::move(*c);
  } else {
    conn = wire::plain_connection(fd, peer);
  }
  Session(*this, std::move(conn)).run();
}

Result<std::shared_ptr<AgentSlot>> Collector::slot_for(const std::string& agent, const std::string& host) {
  std::lock_guard lock(mu_);
  auto it = slots_.find(agent);
  if (it != slots_.end()) return it->second;
  store::SegmentOptions so;
  so.dir = opts_.data_dir / agent;
  so.agent = agent;
  so.agent_host = host;
  so.rotate_bytes = opts_.rotate_bytes;
  so.rotate_every_ns = opts_.rotate_every_ns;
  so.fsync = opts_.fsync;
  // A sealed segment is a retention candidate (check the limits right away,
  // so a fast agent cannot outrun the free-space floor between passes) and
  // an event for live subscribers.
  so.on_sealed = [this, agent](const std::filesystem::path& sealed) {
    retention_due_.store(true);
    if (live_) live_->publish_event(agent, "closingtracefile", sealed.string());
  };
  so.zstd_level = opts_.zstd_level;  // wt/store
  so.block_bytes = opts_.block_bytes;
  auto w = store::SegmentWriter::open(so, clock_);
  if (!w) return std::move(w).error().with_context("opening storage for agent " + agent);
  auto ledger = LedgerBook::open(so.dir / kLedgerFileName, opts_.fsync);
  if (!ledger) return std::move(ledger).error().with_context("opening the ledger of agent " + agent);
  auto& book = **ledger;
  if (book.last_spool_id() == (*w)->spool_id() && book.last_seq() < (*w)->last_seq()) {
    // The collector stopped between making batches durable and writing
    // their ledger rows: those minutes cannot be vouched for.
    uint64_t from = book.last_write_ns() > kMinuteNs ? book.last_write_ns() - kMinuteNs : 0;
    spdlog::warn("collector: agent {}: the ledger is behind the segments (seq {} < {}); marking {} .. {} uncertain",
                 agent, book.last_seq(), (*w)->last_seq(), store::format_utc_ns(from),
                 store::format_utc_ns(started_wall_ns_));
    book.mark_uncertain(from, started_wall_ns_, "ledger behind segments after a collector crash");
    if (auto st = book.write((*w)->spool_id(), (*w)->last_seq(), clock_.wall_ns(), true); !st) {
      spdlog::error("collector: agent {}: {}", agent, st.error().message());
    }
  }
  auto slot = std::make_shared<AgentSlot>();
  slot->stream_only = std::find(opts_.stream_only.begin(), opts_.stream_only.end(), agent) != opts_.stream_only.end();
  slot->writer = std::move(*w);
  slot->ledger = std::move(*ledger);
  slot->host = host;
  slot->connected_since_ns = clock_.wall_ns();
  slots_[agent] = slot;
  return slot;
}

void Collector::housekeeping_loop() {
  while (!stopping_.load()) {
    for (int i = 0; i < 10 && !stopping_.load() && !retention_due_.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::vector<std::pair<std::string, std::shared_ptr<AgentSlot>>> slots;
    {
      std::lock_guard lock(mu_);
      slots.assign(slots_.begin(), slots_.end());
    }
    uint64_t now = clock_.wall_ns();
    for (auto& [name, slot] : slots) {
      std::lock_guard lock(slot->mu);
      if (auto s = slot->writer->tick(); !s) {
        counters_.storage_errors.fetch_add(1);
        spdlog::error("collector: agent {}: {}", name, s.error().message());
      }
      // Ledger rows reach the disk within about a second, also when idle.
      ledger_commit(*slot, name, false);
      // Stored rate over the last few seconds, for `trawl status`.
      const auto& c = slot->writer->counters();
      if (slot->rate_at_ns == 0 || c.packets < slot->rate_packets) {
        slot->rate_at_ns = now;
        slot->rate_packets = c.packets;
        slot->rate_bytes = c.bytes;
      } else if (now - slot->rate_at_ns >= 3'000'000'000ull) {
        double secs = static_cast<double>(now - slot->rate_at_ns) / 1e9;
        slot->packets_per_s = static_cast<double>(c.packets - slot->rate_packets) / secs;
        slot->bits_per_s = static_cast<double>(c.bytes - slot->rate_bytes) * 8 / secs;
        slot->rate_at_ns = now;
        slot->rate_packets = c.packets;
        slot->rate_bytes = c.bytes;
      }
    }
    // Retention (and disk usage) every 2 s; at once while storage is failing.
    uint64_t mono = clock_.mono_ns();
    if (last_retention_mono_ == 0 || mono - last_retention_mono_ >= 2'000'000'000ull ||
        counters_.storage_errors.load() != last_storage_errors_ || retention_due_.exchange(false)) {
      last_retention_mono_ = mono;
      last_storage_errors_ = counters_.storage_errors.load();
      enforce_retention();
    }
  }
}

void Collector::ledger_commit(AgentSlot& slot, const std::string& agent, bool force_durable) {
  slot.ledger->commit();
  if (!slot.ledger->dirty()) return;
  uint64_t now = clock_.mono_ns();
  bool durable = force_durable || now - slot.last_ledger_sync_ns >= 1'000'000'000ull;
  if (auto st = slot.ledger->write(slot.writer->spool_id(), slot.writer->last_seq(), clock_.wall_ns(), durable); !st) {
    // The counts stay in memory and the next commit retries.
    counters_.ledger_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("collector: agent {}: {}", agent, st.error().message());
    return;
  }
  if (durable) slot.last_ledger_sync_ns = now;
}

void Collector::enforce_retention() {
  auto usage = scan_data_dir(opts_.data_dir);
  if (!usage) {
    spdlog::error("collector: retention: {}", usage.error().message());
    return;
  }
  RetentionLimits lim;
  lim.bytes_per_agent = opts_.retain_bytes_per_agent;
  lim.bytes_total = opts_.retain_bytes_total;
  lim.age_ns = opts_.retain_age_ns;
  lim.min_free_bytes = std::max<uint64_t>(
      opts_.min_free_bytes, static_cast<uint64_t>(opts_.min_free_percent / 100.0 * static_cast<double>(usage->fs_total_bytes)));
  auto plan = plan_evictions(*usage, lim, clock_.wall_ns());
  std::map<std::string, std::pair<uint64_t, uint64_t>> freed;  // agent -> bytes, segments
  for (const auto& e : plan) {
    const auto& seg = usage->sealed[e.segment];
    if (auto st = apply_eviction(seg); !st) {
      spdlog::error("collector: retention: {}", st.error().message());
      continue;
    }
    counters_.evictions[static_cast<size_t>(e.reason)].fetch_add(1, std::memory_order_relaxed);
    counters_.evicted_bytes.fetch_add(seg.bytes, std::memory_order_relaxed);
    freed[seg.agent].first += seg.bytes;
    freed[seg.agent].second += 1;
    if (e.reason == EvictionReason::kFreeSpace) {
      spdlog::warn("collector: disk nearly full ({} bytes free, floor {}): evicted segment {} of agent {} ({} bytes)",
                   usage->fs_free_bytes, lim.min_free_bytes, seg.prefix, seg.agent, seg.bytes);
    } else {
      spdlog::info("collector: retention ({}): evicted segment {} of agent {} ({} bytes)", to_string(e.reason),
                   seg.prefix, seg.agent, seg.bytes);
    }
  }
  std::map<std::string, uint64_t> segments;
  for (const auto& seg : usage->sealed) ++segments[seg.agent];
  std::lock_guard lock(mu_);
  for (auto& [name, slot] : slots_) {
    std::lock_guard slot_lock(slot->mu);
    auto f = freed[name];
    slot->disk_bytes = usage->agent_bytes[name] - std::min(usage->agent_bytes[name], f.first);
    slot->segments = segments[name] - std::min(segments[name], f.second);
  }
  disk_free_bytes_ = usage->fs_free_bytes;
  disk_total_bytes_ = usage->fs_total_bytes;
}

web::HttpResponse Collector::api_agents() {
  uint64_t now = clock_.wall_ns();
  auto arr = nlohmann::json::array();
  std::lock_guard lock(mu_);
  for (auto& [name, slot] : slots_) {
    std::lock_guard slot_lock(slot->mu);
    const auto& c = slot->writer->counters();
    nlohmann::json a;
    a["agent"] = name;
    a["host"] = slot->host;
    a["connected"] = slot->connected;
    a["peer"] = slot->peer;
    a[slot->connected ? "connected_since" : "disconnected_since"] = store::format_utc_ns(slot->connected_since_ns);
    if (!slot->connected && !slot->disconnect_reason.empty()) a["disconnect_reason"] = slot->disconnect_reason;
    a["stored_packets"] = c.packets;
    a["stored_bytes"] = c.bytes;
    a["packets_per_second"] = slot->packets_per_s;
    a["bits_per_second"] = slot->bits_per_s;
    uint64_t kernel = 0, ifdrops = 0, agent_drops = 0, received = 0;
    auto ifs = nlohmann::json::array();
    for (size_t i = 0; i < slot->iface_stats.size(); ++i) {
      const auto& st = slot->iface_stats[i];
      kernel += st.kernel_drops;
      ifdrops += st.if_drops;
      agent_drops += st.agent_drops;
      received += st.received;
      ifs.push_back({{"name", slot->iface_names[i]}, {"received_packets", st.received},
                     {"kernel_dropped_packets", st.kernel_drops}, {"interface_dropped_packets", st.if_drops},
                     {"agent_dropped_packets", st.agent_drops}});
    }
    a["interfaces"] = std::move(ifs);
    a["kernel_dropped_packets"] = kernel + ifdrops;
    a["agent_dropped_packets"] = agent_drops;
    a["spool_bytes"] = slot->spool.bytes;
    a["spool_batches"] = slot->spool.batches;
    a["spool_oldest_unacked_age_seconds"] =
        slot->spool.oldest_unacked_ns ? static_cast<double>(now - std::min(now, slot->spool.oldest_unacked_ns)) / 1e9 : 0.0;
    if (slot->newest_packet_ns) {
      a["newest_packet"] = store::format_utc_ns(slot->newest_packet_ns);
      a["lag_seconds"] = static_cast<double>(now - std::min(now, slot->newest_packet_ns)) / 1e9;
    }
    a["disk_bytes"] = slot->disk_bytes;
    a["segments"] = slot->segments;
    arr.push_back(std::move(a));
  }
  nlohmann::json j;
  j["now"] = store::format_utc_ns(now);
  j["agents"] = std::move(arr);
  j["disk_free_bytes"] = disk_free_bytes_.load();
  j["disk_total_bytes"] = disk_total_bytes_.load();
  return web::json_response(200, j.dump());
}

web::HttpResponse Collector::api_coverage(std::string_view target) {
  auto err = [](int status, const std::string& msg) {
    return web::json_response(status, nlohmann::json{{"error", msg}}.dump());
  };
  auto agent = web::query_param(target, "agent");
  if (!agent || agent->empty()) return err(400, "missing agent=NAME");
  if (!valid_agent_name(*agent)) return err(400, "not a valid agent name");
  uint64_t now = clock_.wall_ns();
  auto from = parse_time(web::query_param(target, "from").value_or("-1h"), now);
  if (!from) return err(400, "from: " + from.error().message());
  auto to = parse_time(web::query_param(target, "to").value_or("now"), now);
  if (!to) return err(400, "to: " + to.error().message());
  if (*to < *from) return err(400, "'to' is before 'from'");
  if (*to - *from > 31ull * 86400 * 1'000'000'000ull) return err(400, "window longer than 31 days");
  auto dir = opts_.data_dir / *agent;
  if (!std::filesystem::is_directory(dir)) return err(404, "no such agent: " + *agent);
  auto t = read_ledger(dir / kLedgerFileName);
  if (!t) return err(500, t.error().message());
  return web::json_response(200, coverage_json(coverage(*t, *agent, *from, *to)));
}

}  // namespace trawl::collector
