// Minimal HTTP server for operational endpoints; see http_server.h.
#include "web/http_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& listen, HttpHandler handler) {
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
  s->thread_ = std::thread([p = s.get()] { p->loop(); });
  return s;
}

HttpServer::~HttpServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void HttpServer::loop() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) continue;
    serve(fd);
    close(fd);
  }
}

void HttpServer::serve(int fd) {
  std::string req;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestTimeoutMs);
  while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || req.size() >= kMaxRequestBytes) return;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return;
    char buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      return;
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
      resp = handler_(target.substr(0, target.find('?')));
    }
  }
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", resp.status,
      reason(resp.status), resp.content_type, resp.body.size());
  if (!head) out += resp.body;
  write_all(fd, out);
}

}  // namespace trawl::web
