// One osmo-pcap connection:
//   1. source IP -> agent name (refused when unknown); TLS if configured
//   2. storage slot (taking over from a stale connection); "connect" event
//   3. receive -> OsmoDecoder (link header / data record, bounds-checked)
//      -> BatchBuilder (collector-assigned seq, one interface per link header)
//   4. every 1 MiB, 20 ms or drained socket: Collector::accept_batch
//      (dedupe -> live -> store), group-commit sync
#include "collector/osmo_listener.h"

#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "collector/collector.h"
#include "live/osmo_protocol.h"
#include "wire/frames.h"
#include "wire/tcp.h"

namespace trawl::collector {
namespace {

// The sequence space of batches the collector builds for osmo-pcap clients.
constexpr uint64_t kOsmoSpoolId = 0x6f736d6f2d706370ull;  // "osmo-pcp"
constexpr size_t kFlushBytes = 1u << 20;
constexpr uint64_t kFlushNs = 20'000'000;

std::string peer_ip(const std::string& peer) {
  if (!peer.empty() && peer[0] == '[') return peer.substr(1, peer.find(']') - 1);
  return peer.substr(0, peer.rfind(':'));
}

}  // namespace

Status OsmoListener::start() {
  auto hp = wire::parse_host_port(c_.opts_.osmo_listen);
  if (!hp) return std::move(hp).error();
  if (c_.opts_.osmo_tls && !c_.tls_) return Error("TLS for osmo-pcap clients needs the collector's credentials (not --insecure)");
  auto fd = wire::tcp_listen(*hp);
  if (!fd) return std::move(fd).error();
  listen_fd_ = *fd;
  auto port = wire::bound_port(listen_fd_);
  if (!port) return std::move(port).error();
  port_ = *port;
  spdlog::info("collector: osmo-pcap clients on port {} ({}, {} client address(es) mapped)", port_,
               c_.opts_.osmo_tls ? "TLS" : "plain TCP", c_.opts_.osmo_clients.size());
  accept_thread_ = std::thread([this] { accept_loop(); });
  return ok_status();
}

void OsmoListener::stop() {
  if (stopping_.exchange(true)) return;
  if (accept_thread_.joinable()) accept_thread_.join();
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return sessions_ == 0; });
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

void OsmoListener::accept_loop() {
  while (!stopping_.load()) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 200) <= 0) continue;
    auto a = wire::tcp_accept(listen_fd_);
    if (!a || !a->has_value()) continue;
    int fd = (*a)->fd;
    std::string peer = (*a)->peer_address;
    {
      std::lock_guard lock(mu_);
      ++sessions_;
    }
    std::thread([this, fd, peer] {
      serve(fd, peer);
      std::lock_guard lock(mu_);
      --sessions_;
      cv_.notify_all();
    }).detach();
  }
}

void OsmoListener::serve(int fd, std::string peer) {
  auto& counters = c_.counters_;
  std::string ip = peer_ip(peer);
  auto mapped = c_.opts_.osmo_clients.find(ip);
  if (mapped == c_.opts_.osmo_clients.end()) {
    counters.connections_refused.fetch_add(1);
    spdlog::warn("collector: refused osmo-pcap client {}: address {} is not mapped to an agent (--osmo-client)", peer, ip);
    ::close(fd);
    return;
  }
  const std::string agent = mapped->second;
  std::unique_ptr<wire::Connection> conn;
  if (c_.opts_.osmo_tls) {
    auto tc = wire::tls_accept(c_.tls_, fd, peer, c_.opts_.handshake_timeout_ms);
    if (!tc) {
      counters.tls_failures.fetch_add(1);
      counters.connections_refused.fetch_add(1);
      spdlog::warn("collector: refused osmo-pcap client {}: TLS handshake failed: {}", peer, tc.error().message());
      return;
    }
    conn = std::move(*tc);
  } else {
    conn = wire::plain_connection(fd, peer);
  }
  auto slot_r = c_.slot_for(agent, "osmo-pcap client " + ip);
  if (!slot_r) {
    spdlog::error("collector: osmo-pcap client {} (agent {}): {}", peer, agent, slot_r.error().message());
    return;
  }
  auto slot = *slot_r;
  uint64_t generation = slot->generation.fetch_add(1) + 1;
  counters.osmo_connections.fetch_add(1);
  spdlog::info("collector: osmo-pcap client {} connected as agent {}", peer, agent);
  if (c_.live_) c_.live_->publish_event(agent, "connect", peer);

  const Clock& clock = c_.clock_;
  live::osmo::OsmoDecoder decoder(c_.opts_.osmo_max_caplen);
  wire::BatchBuilder builder;
  std::vector<InterfaceInfo> ifaces;
  bool building = false;
  uint64_t batch_start = 0;
  uint64_t last_sync = clock.mono_ns();
  std::string why;

  // Hands the batch being built to the store step. false: stop serving.
  auto flush = [&]() -> bool {
    if (!building || builder.empty()) return true;
    std::lock_guard lock(slot->mu);
    if (slot->generation.load() != generation) {
      why = "superseded by a newer connection for the same agent";
      return false;
    }
    uint64_t seq = (slot->spool_id() == kOsmoSpoolId ? slot->last_seq() : 0) + 1;
    auto frame = builder.finish(seq, clock.wall_ns());
    auto body = frame.subspan(wire::kFrameHeaderBytes);
    auto view = wire::BatchView::parse(body);
    if (!view) {  // we built it: only a bug gets here
      why = "internal: built batch does not parse: " + view.error().message();
      return false;
    }
    // The live outputs may take the builder's buffer instead of copying it.
    auto r = c_.accept_batch(*slot, agent, body, *view, &builder.storage());
    builder.reset(kOsmoSpoolId, ifaces);
    if (!r) {
      counters.storage_errors.fetch_add(1);
      why = r.error().message();  // no acknowledgement in this protocol: the batch is lost
      return false;
    }
    uint64_t now = clock.mono_ns();
    if (now - last_sync >= c_.opts_.group_commit_ns) {
      if (auto s = slot->writer->sync(); !s) {
        slot->ledger->rollback();
        counters.storage_errors.fetch_add(1);
        why = s.error().message();
        return false;
      }
      c_.ledger_commit(*slot, agent, false);
      if (c_.opts_.fsync && !slot->stream_only) counters.fsyncs.fetch_add(1, std::memory_order_relaxed);
      last_sync = now;
    }
    return true;
  };

  bool open = true;
  while (open && !stopping_.load() && !c_.stopping_.load()) {
    bool drained = false;
    while (!drained) {
      auto span = decoder.writable(64 << 10);
      auto n = conn->read(span);
      if (!n) {
        if (!wire::is_peer_closed(n.error())) why = n.error().message();
        open = false;
        break;
      }
      if (*n == 0) {
        drained = true;
        break;
      }
      decoder.commit(*n);
      std::optional<live::osmo::OsmoError> err;
      while (auto m = decoder.next(err)) {
        if (m->kind == live::osmo::Message::Kind::kLink) {
          InterfaceInfo iface{"osmo", static_cast<uint16_t>(m->link.link_type),
                              m->link.snaplen ? std::min(m->link.snaplen, kMaxSnaplen) : kMaxSnaplen};
          if (building && !ifaces.empty() && ifaces[0] == iface) continue;  // the same device again
          if (!flush()) {
            open = false;
            break;
          }
          ifaces.assign(1, iface);
          builder.reset(kOsmoSpoolId, ifaces);
          building = true;
          continue;
        }
        if (builder.empty()) batch_start = clock.mono_ns();
        builder.add_packet(0, m->packet.ts_ns, m->packet.orig_len, m->packet.data);
        if (builder.frame_bytes() >= kFlushBytes && !flush()) {
          open = false;
          break;
        }
      }
      if (err) {
        counters.malformed_frames.fetch_add(1);
        counters.osmo_malformed_by_reason[static_cast<size_t>(err->reason)].fetch_add(1);
        why = fmt::format("{}: {}", live::osmo::to_string(err->reason), err->detail);
        open = false;
      }
      if (!open) break;
      if (!builder.empty() && clock.mono_ns() - batch_start >= kFlushNs) {
        if (!flush()) open = false;
      }
    }
    // Socket drained (or closing): what has arrived so far is stored.
    if (why.empty() && !flush()) open = false;
    if (!open) break;
    pollfd pfd{conn->fd(), POLLIN, 0};
    if (conn->want_write()) pfd.events |= POLLOUT;
    if (!conn->has_buffered_read()) (void)::poll(&pfd, 1, 200);
  }
  // Packets that arrived before a bad message or the peer's close are kept.
  std::string reason = why;
  if (!flush() && reason.empty()) reason = why;
  why = reason;
  {
    std::lock_guard lock(slot->mu);
    if (slot->writer->sync().ok()) {
      c_.ledger_commit(*slot, agent, true);
    } else {
      slot->ledger->rollback();
    }
  }
  if (why.empty()) {
    spdlog::info("collector: osmo-pcap client {} (agent {}) disconnected", peer, agent);
  } else {
    spdlog::warn("collector: closing osmo-pcap connection from {} (agent {}): {}", peer, agent, why);
  }
  if (c_.live_) c_.live_->publish_event(agent, "disconnect", peer);
  conn->shutdown();
}

}  // namespace trawl::collector
