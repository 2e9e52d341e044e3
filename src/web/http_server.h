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

using HttpHandler = std::function<HttpResponse(std::string_view path)>;

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

}  // namespace trawl::web
