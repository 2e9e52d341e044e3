#include "query/http_query.h"

#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "query/query.h"
#include "core/time_parse.h"

namespace trawl::query {

std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int h = hex(s[i + 1]), l = hex(s[i + 2]);
      if (h < 0 || l < 0) return std::nullopt;
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

namespace {

void fail(web::HttpStream& out, int status, const std::string& why) {
  std::string body = why + "\n";
  if (out.begin(status, "text/plain; charset=utf-8"))
    (void)out.write({reinterpret_cast<const uint8_t*>(body.data()), body.size()});
}

}  // namespace

void serve_http_query(std::string_view qs, const std::filesystem::path& data_dir, web::HttpStream& out) {
  QueryOptions o;
  o.data_dir = data_dir;
  const uint64_t now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
  while (!qs.empty()) {
    size_t amp = qs.find('&');
    std::string_view kv = qs.substr(0, amp);
    qs = amp == std::string_view::npos ? std::string_view{} : qs.substr(amp + 1);
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    auto key = url_decode(kv.substr(0, eq));
    auto value = url_decode(eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1));
    if (!key || !value) return fail(out, 400, "malformed URL encoding");
    if (*key == "agent") {
      if (value->empty() || value->find('/') != std::string::npos || *value == "." || *value == "..")
        return fail(out, 400, "invalid agent name");
      o.agents.push_back(*value);
    } else if (*key == "from" || *key == "to") {
      auto t = parse_time(*value, now);
      if (!t) return fail(out, 400, *key + ": " + t.error().message());
      (*key == "from" ? o.from_ns : o.to_ns) = *t;
    } else if (*key == "filter") {
      o.filter = *value;
    } else {
      return fail(out, 400, "unknown parameter \"" + *key + "\" (agent, from, to, filter)");
    }
  }
  QueryCallbacks cb;
  cb.cancel = &out.stopping();
  cb.write = [&](std::span<const uint8_t> b) -> Status {
    if (!out.begun()) {
      if (auto st = out.begin(200, "application/vnd.tcpdump.pcapng",
                              "Content-Disposition: attachment; filename=\"trawl-query.pcapng\"\r\n");
          !st)
        return st;
    }
    return out.write(b);
  };
  cb.on_error = [](const std::string& m) { spdlog::warn("query API: {}", m); };
  cb.on_notice = [](const std::string& m) { spdlog::info("query API: {}", m); };
  auto r = run_query(o, cb);
  if (!r) {
    if (!out.begun()) return fail(out, 400, r.error().message());
    spdlog::warn("query API: stopped: {}", r.error().message());
    return;
  }
  if (!out.begun()) fail(out, 500, "empty result");  // never: the SHB is always written
}

}  // namespace trawl::query
