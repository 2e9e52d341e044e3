// A small HTTP/1.1 server for the operational endpoints (/metrics,
// /healthz, /readyz) and streamed downloads (/api/v1/query). One thread
// accepts and answers whole-body requests; one request per connection
// (Connection: close); every client gets at most 2 s to send its request,
// so a stuck client delays others by at most that. GET and HEAD only.
// The handler runs on the server thread and must be thread-safe with
// respect to whatever it reads.
//
// Streaming routes (exact path match, GET only) run their handler on a
// thread of their own that owns the connection, so a long download never
// holds up /metrics; at most max_streams run at once (503 beyond that).
// The destructor asks them to stop (HttpStream::stopping) and joins them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <span>
#include <thread>
#include <vector>

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

// The connection of a streaming route. begin() sends the status line and
// headers (no Content-Length; the body ends when the connection closes);
// write() sends body bytes (blocks; fails once the client is gone or stuck
// for 30 s). Used by one thread.
class HttpStream {
 public:
  virtual ~HttpStream() = default;
  virtual Status begin(int status, std::string_view content_type,
                       std::string_view extra_headers = {}) = 0;
  virtual Status write(std::span<const uint8_t> body) = 0;
  virtual bool begun() const = 0;
  virtual const std::atomic<bool>& stopping() const = 0;
};
struct HttpStreamRoute {
  std::string path;
  // query: the raw query string (after '?', not decoded).
  std::function<void(std::string_view query, HttpStream& out)> handler;
};

class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> start(const std::string& listen, HttpHandler handler,
                                                   std::vector<HttpStreamRoute> streams = {},
                                                   size_t max_streams = 4);
  ~HttpServer();
  uint16_t port() const { return port_; }

 private:
  HttpServer() = default;
  void loop();
  bool serve(int fd);  // true: the connection went to a stream thread
  void reap_streams(bool all);

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  HttpHandler handler_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<HttpStreamRoute> streams_;
  size_t max_streams_ = 4;
  struct StreamThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<StreamThread> stream_threads_;  // loop thread only
};

// GET http://<host:port><target> (plain HTTP, the operational endpoints):
// the body of a 200 response; an error naming the status or the failure
// otherwise. Blocks up to timeout_ms.
Result<std::string> http_get(const std::string& host_port, std::string_view target, int timeout_ms = 10000);

}  // namespace trawl::web
