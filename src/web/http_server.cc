// Minimal HTTP server for operational endpoints; see http_server.h.
#include "web/http_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "wire/tcp.h"

namespace trawl::web {
namespace {

constexpr size_t kMaxRequestBytes = 8192;
constexpr int kRequestTimeoutMs = 2000;

std::string_view reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, kRequestTimeoutMs) <= 0) return;
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

constexpr int kStreamWriteTimeoutMs = 30000;

class SocketStream : public HttpStream {
 public:
  SocketStream(int fd, const std::atomic<bool>& stop) : fd_(fd), stop_(stop) {}
  ~SocketStream() override { ::close(fd_); }
  Status begin(int status, std::string_view content_type, std::string_view extra) override {
    begun_ = true;
    std::string h = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\n{}Connection: close\r\n\r\n", status,
                                reason(status), content_type, extra);
    return send_all({reinterpret_cast<const uint8_t*>(h.data()), h.size()});
  }
  Status write(std::span<const uint8_t> body) override { return send_all(body); }
  bool begun() const override { return begun_; }
  const std::atomic<bool>& stopping() const override { return stop_; }

 private:
  Status send_all(std::span<const uint8_t> data) {
    while (!data.empty()) {
      if (stop_.load()) return Error("server stopping");
      pollfd p{fd_, POLLOUT, 0};
      int rc = ::poll(&p, 1, kStreamWriteTimeoutMs);
      if (rc == 0) return Error("client stopped reading");
      if (rc < 0) {
        if (errno == EINTR) continue;
        return Error::from_errno("poll");
      }
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return Error::from_errno("send");
      }
      data = data.subspan(static_cast<size_t>(n));
    }
    return ok_status();
  }
  int fd_;
  const std::atomic<bool>& stop_;
  bool begun_ = false;
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& listen, HttpHandler handler,
                                                      std::vector<HttpStreamRoute> streams, size_t max_streams) {
  auto hp = wire::parse_host_port(listen);
  if (!hp) return std::move(hp).error().with_context("metrics address");
  auto fd = wire::tcp_listen(*hp);
  if (!fd) return std::move(fd).error().with_context("metrics listener on " + listen);
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->listen_fd_ = *fd;
  auto port = wire::bound_port(*fd);
  if (!port) return std::move(port).error();
  s->port_ = *port;
  s->handler_ = std::move(handler);
  s->streams_ = std::move(streams);
  s->max_streams_ = std::max<size_t>(1, max_streams);
  s->thread_ = std::thread([p = s.get()] { p->loop(); });
  return s;
}

HttpServer::~HttpServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  reap_streams(true);
  if (listen_fd_ >= 0) close(listen_fd_);
}

void HttpServer::reap_streams(bool all) {
  for (auto it = stream_threads_.begin(); it != stream_threads_.end();) {
    if (all || it->done->load()) {
      it->thread.join();
      it = stream_threads_.erase(it);
    } else {
      ++it;
    }
  }
}

void HttpServer::loop() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    reap_streams(false);
    if (::poll(&p, 1, 200) <= 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (!serve(fd)) close(fd);
  }
}

bool HttpServer::serve(int fd) {
  std::string req;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestTimeoutMs);
  while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || req.size() >= kMaxRequestBytes) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      return false;
    }
    req.append(buf, static_cast<size_t>(n));
  }
  // Request line: METHOD SP TARGET SP VERSION
  std::string_view line(req);
  line = line.substr(0, line.find_first_of("\r\n"));
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  HttpResponse resp;
  bool head = false;
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
    resp = {400, "text/plain; charset=utf-8", "bad request\n"};
  } else {
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    head = method == "HEAD";
    if (method != "GET" && !head) {
      resp = {405, "text/plain; charset=utf-8", "only GET and HEAD\n"};
    } else {
      std::string_view path = target.substr(0, target.find('?'));
      std::string_view query = path.size() < target.size() ? target.substr(path.size() + 1) : "";
      bool routed = false;
      for (const auto& route : streams_) {
        if (route.path != path) continue;
        routed = true;
        if (head) {
          resp = {405, "text/plain; charset=utf-8", "only GET\n"};
        } else if (stream_threads_.size() >= max_streams_) {
          resp = {503, "text/plain; charset=utf-8", "too many downloads at once; retry later\n"};
        } else {
          auto done = std::make_shared<std::atomic<bool>>(false);
          stream_threads_.push_back({std::thread([this, fd, done, q = std::string(query), h = route.handler] {
                                       {
                                         SocketStream out(fd, stop_);
                                         h(q, out);
                                         if (!out.begun()) {
                                           std::string_view msg = "internal error\n";
                                           (void)out.begin(500, "text/plain; charset=utf-8", {});
                                           (void)out.write({reinterpret_cast<const uint8_t*>(msg.data()), msg.size()});
                                         }
                                       }
                                       done->store(true);
                                     }),
                                     done});
          return true;
        }
        break;
      }
      if (!routed) resp = handler_(path);
    }
  }
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", resp.status,
      reason(resp.status), resp.content_type, resp.body.size());
  if (!head) out += resp.body;
  write_all(fd, out);
  return false;
}

}  // namespace trawl::web
