#include "live/fanout_server.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

namespace trawl::live {

FanoutServer::FanoutServer(std::string sink_name, size_t client_queue_bytes, size_t input_items, size_t input_bytes)
    : sink_(std::move(sink_name)), client_queue_bytes_(client_queue_bytes), input_(input_items, input_bytes) {}

FanoutServer::~FanoutServer() { stop(); }

Status FanoutServer::start(const wire::HostPort& where) {
  auto fd = wire::tcp_listen(where);
  if (!fd) return std::move(fd).error();
  listen_fd_ = *fd;
  auto port = wire::bound_port(listen_fd_);
  if (!port) return std::move(port).error();
  port_ = *port;
  thread_ = std::thread([this] { loop(); });
  return ok_status();
}

void FanoutServer::stop() {
  if (stopping_.exchange(true)) return;
  input_.wake();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(clients_mu_);
  for (auto& c : clients_) ::close(c->fd);
  clients_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

void FanoutServer::offer(const LiveItemPtr& item) {
  if (!input_.push(item)) dropped_batches_.fetch_add(1, std::memory_order_relaxed);
}

SinkStats FanoutServer::stats() const {
  SinkStats s;
  s.sink = sink_;
  s.dropped_batches = dropped_batches_.load();
  s.sent_packets = gone_sent_.load();
  s.dropped_packets = gone_dropped_.load();
  s.skipped_packets = skipped_.load();
  std::lock_guard lock(clients_mu_);
  for (const auto& c : clients_) {
    SubscriberStats st{c->id, c->peer, c->sent_packets.load(), c->dropped_packets.load(), c->dropped_events.load(),
                       c->queued.load()};
    s.sent_packets += st.sent_packets;
    s.dropped_packets += st.dropped_packets;
    s.subscribers.push_back(std::move(st));
  }
  return s;
}

bool FanoutServer::fits(Client& c, size_t n) {
  if (c.dead) return false;
  if (c.out.size() + n > client_queue_bytes_) {
    // Full: hand what we can to the socket first (a batch arrives as a burst
    // that a reading client absorbs), then decide.
    // At most one attempt per item: a stalled client would otherwise cost
    // a failing send() per message.
    if (!c.write_blocked) write_client(c);
    if (c.dead || c.out.size() + n > client_queue_bytes_) return false;
  }
  return true;
}

void FanoutServer::loop() {
  if (nice_ > 0) {
    // Linux: PRIO_PROCESS with a thread id sets that thread's nice value only.
    const auto tid = static_cast<id_t>(::gettid());
    errno = 0;
    int base = ::getpriority(PRIO_PROCESS, tid);
    if (errno != 0) base = 0;
    if (::setpriority(PRIO_PROCESS, tid, std::min(19, base + nice_)) != 0) {
      spdlog::warn("live {}: cannot lower the thread's priority: {}", sink_, std::strerror(errno));
    }
  }
  std::vector<pollfd> pfds;
  std::vector<LiveItemPtr> items;
  std::vector<Client*> ready;
  while (!stopping_.load()) {
    pfds.clear();
    pfds.push_back({input_.wake_fd(), POLLIN, 0});
    pfds.push_back({listen_fd_, POLLIN, 0});
    for (auto& c : clients_) {
      short ev = POLLIN;
      if (!c->out.empty()) ev |= POLLOUT;
      pfds.push_back({c->fd, ev, 0});
    }
    if (::poll(pfds.data(), pfds.size(), 200) < 0 && errno != EINTR) {
      spdlog::error("live {}: poll: {}", sink_, std::strerror(errno));
      return;
    }
    if (stopping_.load()) break;
    if (pfds[1].revents & POLLIN) accept_clients();
    for (size_t i = 2; i < pfds.size() && i - 2 < clients_.size(); ++i) {
      if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_client(*clients_[i - 2]);
    }
    items.clear();
    input_.drain(items);
    ready.clear();
    for (auto& c : clients_) {
      if (!c->dead) ready.push_back(c.get());
    }
    for (const auto& item : items) {
      for (auto* c : ready) c->write_blocked = false;
      on_item(*item, ready);
      // Write as we go: keeps queues short for clients that keep up.
      for (auto* c : ready) write_client(*c);
    }
    items.clear();  // release the batches before sleeping
    for (auto& c : clients_) write_client(*c);
    bool any_dead = false;
    for (auto& c : clients_) {
      c->queued.store(c->out.size(), std::memory_order_relaxed);
      any_dead |= c->dead;
    }
    if (any_dead) {
      std::lock_guard lock(clients_mu_);
      std::erase_if(clients_, [this](const std::unique_ptr<Client>& c) {
        if (!c->dead) return false;
        gone_sent_.fetch_add(c->sent_packets.load());
        gone_dropped_.fetch_add(c->dropped_packets.load());
        ::close(c->fd);
        return true;
      });
      client_count_.store(clients_.size(), std::memory_order_relaxed);
    }
  }
  flush_at_stop();
}

// What was published before stop() (the last segments' closingtracefile
// events, the last packets) still goes out, for at most a second.
void FanoutServer::flush_at_stop() {
  std::vector<LiveItemPtr> items;
  input_.drain(items);
  std::vector<Client*> ready;
  for (auto& c : clients_) {
    if (!c->dead) ready.push_back(c.get());
  }
  for (const auto& item : items) on_item(*item, ready);
  items.clear();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::vector<pollfd> pfds;
  while (std::chrono::steady_clock::now() < deadline) {
    pfds.clear();
    for (auto* c : ready) {
      write_client(*c);
      if (!c->dead && !c->out.empty()) pfds.push_back({c->fd, POLLOUT, 0});
    }
    if (pfds.empty()) break;
    ::poll(pfds.data(), pfds.size(), 50);
  }
}

void FanoutServer::accept_clients() {
  for (;;) {
    auto a = wire::tcp_accept(listen_fd_);
    if (!a) {
      spdlog::warn("live {}: accept: {}", sink_, a.error().message());
      return;
    }
    if (!a->has_value()) return;
    if (clients_.size() >= kMaxClients) {
      spdlog::warn("live {}: refusing {}: {} subscribers already", sink_, (*a)->peer_address, kMaxClients);
      ::close((*a)->fd);
      continue;
    }
    auto c = make_client();
    c->fd = (*a)->fd;
    c->peer = (*a)->peer_address;
    c->id = next_id_++;
    c->out.set_spare_chunks(client_queue_bytes_ / OutQueue::kChunkBytes + 1);
    spdlog::info("live {}: subscriber #{} connected from {}", sink_, c->id, c->peer);
    std::lock_guard lock(clients_mu_);
    clients_.push_back(std::move(c));
    client_count_.store(clients_.size(), std::memory_order_relaxed);
  }
}

void FanoutServer::read_client(Client& c) {
  if (c.dead) return;
  uint8_t buf[16384];
  for (;;) {
    ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      if (Status s = on_input(c, {buf, static_cast<size_t>(n)}); !s) return retire(c, s.error().message());
      continue;
    }
    if (n == 0) return retire(c, "closed by peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    return retire(c, std::strerror(errno));
  }
}

void FanoutServer::write_client(Client& c) {
  while (!c.dead && !c.out.empty()) {
    ssize_t n = c.out.send_to(c.fd);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c.write_blocked = true;
      return;
    }
    return retire(c, n == 0 ? "send returned 0" : std::strerror(errno));
  }
}

void FanoutServer::retire(Client& c, const std::string& why) {
  if (c.dead) return;
  c.dead = true;
  spdlog::info("live {}: subscriber #{} ({}) gone: {}; {} packets sent, {} dropped", sink_, c.id, c.peer, why,
               c.sent_packets.load(), c.dropped_packets.load());
}

}  // namespace trawl::live
