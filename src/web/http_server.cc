// Minimal HTTP server for operational endpoints; see http_server.h.
#include "web/http_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

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
      if (!routed) resp = handler_(target);
    }
  }
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", resp.status,
      reason(resp.status), resp.content_type, resp.body.size());
  if (!head) out += resp.body;
  write_all(fd, out);
  return false;
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

std::optional<std::string> query_param(std::string_view target, std::string_view key) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) != key) continue;
    std::string_view v = eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1);
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      if (v[i] == '+') {
        out += ' ';
      } else if (v[i] == '%' && i + 2 < v.size() + 0 && hex(v[i + 1]) >= 0 && hex(v[i + 2]) >= 0) {
        out += static_cast<char>(hex(v[i + 1]) * 16 + hex(v[i + 2]));
        i += 2;
      } else {
        out += v[i];
      }
    }
    return out;
  }
  return std::nullopt;
}

std::string url_encode(std::string_view v) {
  std::string out;
  for (unsigned char c : v) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~' || c == ':') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

HttpResponse json_response(int status, std::string body) {
  body += '\n';
  return HttpResponse{status, "application/json", std::move(body)};
}

Result<std::string> http_get(const std::string& host_port, std::string_view target, int timeout_ms) {
  auto where = wire::parse_host_port(host_port);
  if (!where) return std::move(where).error();
  auto fd = wire::tcp_connect(*where, timeout_ms);
  if (!fd) return std::move(fd).error().with_context("connecting to " + host_port);
  std::string req = fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", target, host_port);
  std::string resp;
  uint64_t deadline_ms = static_cast<uint64_t>(timeout_ms);
  size_t sent = 0;
  auto start = std::chrono::steady_clock::now();
  auto left = [&]() -> int {
    auto el = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    return el >= static_cast<int64_t>(deadline_ms) ? 0 : static_cast<int>(deadline_ms - static_cast<uint64_t>(el));
  };
  Status st;
  for (;;) {
    pollfd pfd{*fd, static_cast<short>(sent < req.size() ? POLLOUT : POLLIN), 0};
    int ms = left();
    if (ms == 0) {
      st = Error(fmt::format("GET {}: no complete answer from {} within {} ms", target, host_port, timeout_ms));
      break;
    }
    if (::poll(&pfd, 1, ms) < 0 && errno != EINTR) {
      st = Error::from_errno("poll");
      break;
    }
    if (sent < req.size()) {
      ssize_t n = ::send(*fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        st = Error::from_errno("sending to " + host_port);
        break;
      }
      if (n > 0) sent += static_cast<size_t>(n);
      continue;
    }
    char buf[16384];
    ssize_t n = ::recv(*fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      st = Error::from_errno("reading from " + host_port);
      break;
    }
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(*fd);
  if (!st.ok()) return std::move(st).error();
  size_t hdr_end = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/1.", 0) != 0 || hdr_end == std::string::npos) {
    return Error(fmt::format("GET {}: {} did not answer HTTP", target, host_port));
  }
  int status = std::atoi(resp.c_str() + 9);
  std::string body = resp.substr(hdr_end + 4);
  if (status != 200) {
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    return Error(fmt::format("GET {} from {}: HTTP {}: {}", target, host_port, status, body));
  }
  return body;
}

}  // namespace trawl::web
