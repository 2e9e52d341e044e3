// A small HTTP/1.1 server for the operational endpoints (/metrics,
// /healthz, /readyz). One thread; one request per connection
// (Connection: close); every client gets at most 2 s to send its request,
// so a stuck client delays others by at most that. GET and HEAD only.
// The handler runs on the server thread and must be thread-safe with
// respect to whatever it reads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "core/result.h"

namespace trawl::web {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Gets the request target as sent: path and query ("/api/v1/x?a=1").
using HttpHandler = std::function<HttpResponse(std::string_view target)>;

// "/api/v1/x" of "/api/v1/x?a=1".
std::string_view path_of(std::string_view target);
// The URL-decoded value of `key` in the target's query, if present.
std::optional<std::string> query_param(std::string_view target, std::string_view key);
// Percent-encodes a query parameter value.
std::string url_encode(std::string_view v);
// A JSON response.
HttpResponse json_response(int status, std::string body);

class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> start(const std::string& listen, HttpHandler handler);
  ~HttpServer();
  uint16_t port() const { return port_; }

 private:
  HttpServer() = default;
  void loop();
  void serve(int fd);

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  HttpHandler handler_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// GET http://<host:port><target> (plain HTTP, the operational endpoints):
// the body of a 200 response; an error naming the status or the failure
// otherwise. Blocks up to timeout_ms.
Result<std::string> http_get(const std::string& host_port, std::string_view target, int timeout_ms = 10000);

}  // namespace trawl::web
