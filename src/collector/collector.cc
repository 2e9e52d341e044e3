// The collector's accept and housekeeping threads, and the per-connection
// session loop. One session:
//   1. TLS handshake -> the agent's name comes from its certificate
//   2. HELLO -> storage slot (taking over from a stale connection) -> WELCOME
//   3. receive -> verify (BatchView::parse) -> dedupe (spool id, seq)
//      -> writer.append (begin_batch / packet / end_batch; may rotate)
//   4. group commit: fdatasync at most every group_commit_ns -> ACK
#include "collector/collector.h"
#include "query/http_query.h"  // wt/store

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>


#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pki/pki.h"
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
      if (slot_->writer) (void)slot_->writer->sync();
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
      TRAWL_TRY(slot_->writer->sync(), "syncing before WELCOME");
      if (slot_->writer->spool_id() == h->spool_id) w.durable_seq = slot_->writer->last_seq();
    }
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
    auto& w = *slot_->writer;
    if (b->spool_id() == w.spool_id() && b->seq() <= w.last_seq()) {
      c_.counters_.batches_duplicate.fetch_add(1, std::memory_order_relaxed);
      need_ack_ = true;
      return ok_status();
    }
    if (b->spool_id() != w.spool_id() && w.spool_id() != 0) {
      spdlog::info("collector: agent {} starts a new sequence space (spool id {:016x}, was {:016x})", agent_,
                   b->spool_id(), w.spool_id());
    }
    Status s = w.begin_batch(b->spool_id(), b->seq(), b->interfaces());
    if (!s) return storage_error(std::move(s));
    b->for_each([&](const PacketView& p) { w.packet(p); }, [&](const InterfaceStats& st) { w.stats(st); },
                [&](const Gap& g) {
                  spdlog::warn("collector: agent {} reports a gap: {} packets, {} bytes lost ({})", agent_,
                               g.packets, g.bytes, to_string(g.reason));
                  w.gap(g);
                });
    s = w.end_batch();
    if (!s) return storage_error(std::move(s));
    c_.counters_.batches_stored.fetch_add(1, std::memory_order_relaxed);
    c_.counters_.packets_stored.fetch_add(b->packets(), std::memory_order_relaxed);
    c_.counters_.bytes_stored.fetch_add(b->packet_bytes(), std::memory_order_relaxed);
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
      Status s = slot_->writer->sync();
      if (!s) return storage_error(std::move(s));
      if (c_.opts_.fsync) c_.counters_.fsyncs.fetch_add(1, std::memory_order_relaxed);
      seq = slot_->writer->last_seq();
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

Status Collector::start() {
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
    auto srv = web::HttpServer::start(opts_.metrics_listen, [this](std::string_view path) {
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
  std::vector<std::pair<std::string, store::SegmentCounters>> per_agent;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, slot] : slots_) {
      std::lock_guard slot_lock(slot->mu);
      per_agent.emplace_back(name, slot->writer->counters());
    }
  }
  auto each = [&](const char* name, const char* help, auto field) {
    for (const auto& [agent, sc] : per_agent) e.counter(name, help, static_cast<double>(field(sc)), {{"agent", agent}});
  };
  each("trawl_collector_stored_packets_total", "Packets stored in segments",
       [](const store::SegmentCounters& s) { return s.packets; });
  each("trawl_collector_stored_bytes_total", "Packet bytes stored in segments",
       [](const store::SegmentCounters& s) { return s.bytes; });
  each("trawl_collector_segments_sealed_total", "Segments sealed", [](const store::SegmentCounters& s) { return s.segments_sealed; });
  each("trawl_collector_write_errors_total", "Segment write errors (rolled back)",
       [](const store::SegmentCounters& s) { return s.write_errors; });
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
  so.zstd_level = opts_.zstd_level;  // wt/store
  so.block_bytes = opts_.block_bytes;
  auto w = store::SegmentWriter::open(so, clock_);
  if (!w) return std::move(w).error().with_context("opening storage for agent " + agent);
  auto slot = std::make_shared<AgentSlot>();
  slot->writer = std::move(*w);
  slot->host = host;
  slots_[agent] = slot;
  return slot;
}

void Collector::housekeeping_loop() {
  while (!stopping_.load()) {
    for (int i = 0; i < 10 && !stopping_.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::vector<std::pair<std::string, std::shared_ptr<AgentSlot>>> slots;
    {
      std::lock_guard lock(mu_);
      slots.assign(slots_.begin(), slots_.end());
    }
    for (auto& [name, slot] : slots) {
      std::lock_guard lock(slot->mu);
      if (auto s = slot->writer->tick(); !s) {
        counters_.storage_errors.fetch_add(1);
        spdlog::error("collector: agent {}: {}", name, s.error().message());
      }
    }
  }
}

}  // namespace trawl::collector
