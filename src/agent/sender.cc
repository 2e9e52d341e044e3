// The agent's connection loop; see sender.h. One session:
//   1. connect (TCP, then TLS) to the next collector address
//   2. HELLO -> WELCOME: drop what the collector already has, rewind the rest
//   3. loop: refill the send buffer from the spool (oldest unsent first,
//      bounded bytes in flight), write, read ACKs -> spool.ack()
//   4. on error or silence: close, back off with jitter, next address
#include "agent/sender.h"

#include <poll.h>
#include <unistd.h>

#include <deque>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "wire/frames.h"
#include "wire/tcp.h"

namespace trawl::agent {
namespace {

constexpr int kConnectTimeoutMs = 5000;
constexpr uint64_t kWelcomeTimeoutNs = 10'000'000'000;
constexpr uint64_t kPingEveryNs = 5'000'000'000;
// A collector that says nothing for this long while we wait on it is gone.
constexpr uint64_t kSilenceTimeoutNs = 30'000'000'000;
constexpr size_t kSendBufferTarget = 4u << 20;

std::string local_hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

}  // namespace

Sender::Sender(const AgentOptions& opts, std::shared_ptr<wire::TlsContext> tls, SharedSpool& spool,
               AgentCounters& counters, const Clock& clock)
    : opts_(opts), tls_(std::move(tls)), spool_(spool), counters_(counters), clock_(clock),
      hostname_(local_hostname()) {}

void Sender::run(std::atomic<bool>& stop) {
  std::mt19937_64 rng(std::random_device{}());
  uint64_t backoff = opts_.backoff_min_ns;
  size_t next = 0;
  while (!stop.load()) {
    const std::string& address = opts_.collectors[next % opts_.collectors.size()];
    uint64_t started = clock_.mono_ns();
    Status s = session(address, stop);
    if (stop.load()) break;
    // A session that ran a while was healthy: start the backoff over.
    if (clock_.mono_ns() - started > 10'000'000'000ull) backoff = opts_.backoff_min_ns;
    spdlog::warn("agent {}: collector {}: {}; retrying in {} ms", opts_.name, address,
                 s.ok() ? "connection closed" : s.error().message(), backoff / 1'000'000);
    ++next;  // fail over to the next address
    // Full jitter within [backoff/2, backoff], so agents restarted together
    // do not reconnect in lockstep.
    uint64_t wait = backoff / 2 + rng() % (backoff / 2 + 1);
    uint64_t until = clock_.mono_ns() + wait;
    while (!stop.load() && clock_.mono_ns() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    backoff = std::min(backoff * 2, opts_.backoff_max_ns);
  }
}

Status Sender::session(const std::string& address, std::atomic<bool>& stop) {
  // 1. connect
  auto hp = wire::parse_host_port(address);
  if (!hp) return std::move(hp).error();
  auto fd = wire::tcp_connect(*hp, kConnectTimeoutMs);
  if (!fd) {
    counters_.connect_failures.fetch_add(1);
    return std::move(fd).error().with_context("connect");
  }
  std::unique_ptr<wire::Connection> conn;
  if (tls_) {
    auto c = wire::tls_connect(tls_, *fd, address, kConnectTimeoutMs);
    if (!c) {
      counters_.connect_failures.fetch_add(1);
      return std::move(c).error().with_context("TLS handshake");
    }
    conn = std::move(*c);
  } else {
    conn = wire::plain_connection(*fd, address);
  }

  // Frames to write, oldest first; front_off bytes of the front one are
  // written. TLS writes go straight from these buffers.
  std::deque<std::vector<uint8_t>> sendq;
  size_t front_off = 0;
  size_t queued_bytes = 0;
  std::vector<std::vector<uint8_t>> done_buffers;  // returned to the pool under the next lock
  wire::FrameDecoder in(64 << 10);
  bool welcomed = false;
  uint64_t welcome_seq = 0;
  uint64_t connected_at = clock_.mono_ns();
  uint64_t last_heard = connected_at;
  uint64_t last_sent = connected_at;
  std::deque<std::pair<uint64_t, uint64_t>> in_flight;  // (seq, frame bytes), oldest first
  uint64_t in_flight_bytes = 0;
  uint64_t highest_sent = 0;

  // 2. HELLO
  {
    wire::Hello hello;
    hello.agent_name = opts_.name;
    hello.hostname = hostname_;
    hello.software = "trawl " TRAWL_VERSION;
    std::lock_guard lock(spool_.mu);
    hello.spool_id = spool_.spool->spool_id();
    hello.last_seq = spool_.spool->last_seq();
    std::vector<uint8_t> f;
    wire::encode(f, hello);
    queued_bytes += f.size();
    sendq.push_back(std::move(f));
  }

  auto handle_frame = [&](const wire::FrameView& f) -> Status {
    switch (f.type) {
      case wire::FrameType::kWelcome: {
        if (welcomed) return Error("protocol error: second WELCOME");
        auto w = wire::decode_welcome(f.body);
        if (!w) return std::move(w).error();
        if (w->version != wire::kProtocolVersion) {
          return Error(fmt::format("collector speaks protocol v{}, we speak v{}", w->version, wire::kProtocolVersion));
        }
        std::lock_guard lock(spool_.mu);
        // Whatever the collector already holds is done; the rest goes again.
        if (w->durable_seq > 0) TRAWL_TRY(spool_.spool->ack(w->durable_seq), "spool ack");
        spool_.spool->rewind();
        welcomed = true;
        welcome_seq = w->durable_seq;
        counters_.connects.fetch_add(1);
        if (w->durable_seq > 0) counters_.acked_seq.store(w->durable_seq);
        spdlog::info("agent {}: connected to {} (collector holds up to seq {}; {} batches to send)", opts_.name,
                     conn->peer_address(), w->durable_seq, spool_.spool->unsent_entries());
        return ok_status();
      }
      case wire::FrameType::kAck: {
        if (!welcomed) return Error("protocol error: ACK before WELCOME");
        auto a = wire::decode_ack(f.body);
        if (!a) return std::move(a).error();
        if (a->seq > std::max(highest_sent, welcome_seq)) {
          return Error(fmt::format("protocol error: ACK {} for a batch never sent", a->seq));
        }
        std::lock_guard lock(spool_.mu);
        TRAWL_TRY(spool_.spool->ack(a->seq), "spool ack");
        while (!in_flight.empty() && in_flight.front().first <= a->seq) {
          in_flight_bytes -= in_flight.front().second;
          in_flight.pop_front();
          counters_.batches_acked.fetch_add(1, std::memory_order_relaxed);
        }
        counters_.acked_seq.store(a->seq);
        return ok_status();
      }
      case wire::FrameType::kError: {
        auto e = wire::decode_error(f.body);
        return Error(fmt::format("collector refused: {}", e ? e->text : "malformed ERROR frame"));
      }
      case wire::FrameType::kPing:
        return ok_status();
      default:
        return Error(fmt::format("protocol error: unexpected {} frame", wire::to_string(f.type)));
    }
  };

  // 3. stream
  while (!stop.load(std::memory_order_relaxed)) {
    uint64_t now = clock_.mono_ns();
    if (!welcomed && now - connected_at > kWelcomeTimeoutNs) return Error("no WELCOME within 10 s");
    if (now - last_heard > kSilenceTimeoutNs) {
      return Error(fmt::format("collector silent for {} s", kSilenceTimeoutNs / 1'000'000'000));
    }
    // Refill the send queue with unsent spool entries: from memory when the
    // capture thread's copy is still there, else read back from the spool.
    if (welcomed && queued_bytes < kSendBufferTarget) {
      std::lock_guard lock(spool_.mu);
      for (auto& b : done_buffers) spool_.give_buffer(std::move(b));
      done_buffers.clear();
      while (queued_bytes < kSendBufferTarget && in_flight_bytes < opts_.max_in_flight_bytes) {
        auto meta = spool_.spool->peek_unsent();
        if (!meta) break;
        auto& recent = spool_.recent;
        while (!recent.empty() && recent.front().first < meta->seq) {
          spool_.recent_bytes -= recent.front().second.size();
          spool_.give_buffer(std::move(recent.front().second));
          recent.pop_front();
        }
        std::vector<uint8_t> frame;
        if (!recent.empty() && recent.front().first == meta->seq) {
          frame = std::move(recent.front().second);
          spool_.recent_bytes -= frame.size();
          recent.pop_front();
          spool_.spool->skip_unsent();
        } else {
          auto e = spool_.spool->next_unsent();
          if (!e) return std::move(e).error().with_context("reading spool");
          if (!e->has_value()) break;
          frame = spool_.take_buffer();
          frame.assign((**e).second.begin(), (**e).second.end());
        }
        in_flight.emplace_back(meta->seq, frame.size());
        in_flight_bytes += frame.size();
        queued_bytes += frame.size();
        if (meta->seq <= highest_sent) counters_.batches_resent.fetch_add(1, std::memory_order_relaxed);
        highest_sent = std::max(highest_sent, meta->seq);
        counters_.batches_sent.fetch_add(1, std::memory_order_relaxed);
        sendq.push_back(std::move(frame));
      }
    }
    if (sendq.empty() && now - last_sent > kPingEveryNs) {
      std::vector<uint8_t> f;
      wire::encode_ping(f);
      queued_bytes += f.size();
      sendq.push_back(std::move(f));
    }
    // Write what we can, straight from the frame buffers.
    while (!sendq.empty()) {
      auto& front = sendq.front();
      auto n = conn->write({front.data() + front_off, front.size() - front_off});
      if (!n) return std::move(n).error();
      if (*n == 0) break;
      front_off += *n;
      queued_bytes -= *n;
      last_sent = now;
      if (front_off == front.size()) {
        done_buffers.push_back(std::move(front));
        sendq.pop_front();
        front_off = 0;
      }
    }
    // Read ACKs.
    for (;;) {
      auto span = in.writable(16 << 10);
      auto n = conn->read(span);
      if (!n) return std::move(n).error();
      if (*n == 0) break;
      in.commit(*n);
      last_heard = clock_.mono_ns();
      for (;;) {
        auto f = in.next();
        if (!f) return std::move(f).error();
        if (!f->has_value()) break;
        TRAWL_TRY(handle_frame(**f), "from collector");
      }
    }
    // Wait for the socket, a new spool entry, or a tick.
    pollfd fds[2];
    short events = POLLIN;
    if (!sendq.empty() || conn->want_write()) events |= POLLOUT;
    fds[0] = {conn->fd(), events, 0};
    fds[1] = {spool_.wake_fd, POLLIN, 0};
    if (conn->has_buffered_read()) continue;
    int rc = ::poll(fds, 2, 100);
    if (rc < 0 && errno != EINTR) return Error::from_errno("poll");
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      (void)!read(spool_.wake_fd, &v, sizeof v);
    }
  }
  conn->shutdown();
  return ok_status();
}

}  // namespace trawl::agent
