// GET /api/v1/query?agent=A&agent=B&from=T&to=T&filter=BPF — the collector's
// HTTP form of `trawl query`: the same pcapng, streamed as it is produced
// (application/vnd.tcpdump.pcapng). Parameters are URL-encoded; times as
// for the CLI (RFC 3339, -15m, now, epoch seconds). A bad parameter, filter
// or agent gives 400 with a one-line reason before any pcapng byte is sent;
// damaged blocks are skipped and logged (the status is already 200 then).
// Runs on the stream thread the web server gives it; thread-safe.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "web/http_server.h"

namespace trawl::query {

void serve_http_query(std::string_view query_string, const std::filesystem::path& data_dir,
                      web::HttpStream& out);

// "a%20b+c" -> "a b c"; nullopt on a malformed escape.
std::optional<std::string> url_decode(std::string_view s);

}  // namespace trawl::query
