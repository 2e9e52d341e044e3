// Decoder-only Diameter benchmark (bench/diameter_parse.sh drives it).
//
//   diameter_parse_bench MB OUT.pcap CAPTURE...
//
// Takes the Diameter PDUs of the captures (from tshark -T json -x), replays
// them with fresh hop-by-hop ids until MB megabytes, and
//  1. writes the same message sequence as a pcap (one TCP segment per
//     message, one connection, correct sequence numbers) to OUT.pcap, for
//     the tshark side of the comparison;
//  2. times DiameterTracker over it (one on_data per message, JSON records
//     built and dropped) and prints "messages bytes seconds records".
// The end-to-end benchmark of `trawl analyze` (pcap reading, decapsulation,
// TCP reassembly) is separate; this isolates the decoder.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "decode/diameter.h"

using namespace trawl::decode;
using nlohmann::json;

namespace {

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

void collect(const json& v, std::vector<std::vector<uint8_t>>& out) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it.key() == "diameter_raw") {
        auto add = [&](const json& r) {
          std::string h = r[0].get<std::string>();
          std::vector<uint8_t> b;
          for (size_t i = 0; i + 1 < h.size(); i += 2)
            b.push_back(static_cast<uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
          out.push_back(std::move(b));
        };
        if (it->front().is_array()) {
          for (const json& r : *it) add(r);
        } else {
          add(*it);
        }
      } else {
        collect(*it, out);
      }
    }
  } else if (v.is_array()) {
    for (const json& e : v) collect(e, out);
  }
}

void put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MB OUT.pcap CAPTURE...\n", argv[0]);
    return 2;
  }
  size_t target = std::stoul(argv[1]) << 20;
  std::vector<std::vector<uint8_t>> pdus;
  for (int i = 3; i < argc; ++i)
    collect(json::parse(run(std::string("tshark -r '") + argv[i] +
                            "' -Y diameter -T json -x --no-duplicate-keys"),
                        nullptr, false),
            pdus);
  std::erase_if(pdus, [](const auto& p) { return p.size() < 20 || p.size() > 1400; });
  if (pdus.empty()) {
    std::fprintf(stderr, "no Diameter PDUs found\n");
    return 1;
  }
  auto dict = load_default_dictionary();
  if (!dict.ok()) {
    std::fprintf(stderr, "%s\n", dict.error().message().c_str());
    return 1;
  }

  // The message sequence: requests and answers as in the captures, ids renumbered.
  std::vector<std::pair<bool, std::vector<uint8_t>>> msgs;
  size_t bytes = 0;
  uint32_t id = 0;
  while (bytes < target) {
    for (const auto& p : pdus) {
      std::vector<uint8_t> m = p;
      bool req = m[4] & 0x80;
      if (req) ++id;
      put32(&m[12], id);
      bytes += m.size();
      msgs.emplace_back(req, std::move(m));
    }
  }

  FILE* f = std::fopen(argv[2], "wb");
  if (!f) return 1;
  uint32_t gh[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
  std::fwrite(gh, 1, sizeof gh, f);
  uint32_t seq[2] = {1000, 500000};
  uint64_t ts = 1600000000ULL * 1000000;
  for (const auto& [req, m] : msgs) {
    int d = req ? 0 : 1;
    uint8_t pkt[54 + 1400] = {};
    pkt[12] = 0x08;  // IPv4
    uint8_t* ip = pkt + 14;
    ip[0] = 0x45;
    put16(ip + 2, static_cast<uint32_t>(40 + m.size()));
    ip[8] = 64;
    ip[9] = 6;
    uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2};
    std::memcpy(ip + 12, d ? b : a, 4);
    std::memcpy(ip + 16, d ? a : b, 4);
    uint8_t* tcp = ip + 20;
    put16(tcp, d ? 3868 : 40000);
    put16(tcp + 2, d ? 40000 : 3868);
    put32(tcp + 4, seq[d]);
    put32(tcp + 8, seq[!d]);
    tcp[12] = 0x50;
    tcp[13] = 0x18;
    put16(tcp + 14, 65535);
    std::memcpy(tcp + 20, m.data(), m.size());
    seq[d] += static_cast<uint32_t>(m.size());
    uint32_t len = static_cast<uint32_t>(54 + m.size());
    ts += 100;
    uint32_t rh[4] = {static_cast<uint32_t>(ts / 1000000), static_cast<uint32_t>(ts % 1000000), len,
                      len};
    std::fwrite(rh, 1, sizeof rh, f);
    std::fwrite(pkt, 1, len, f);
  }
  std::fclose(f);

  size_t records = 0;
  DiameterTracker t(*dict, [&](json&& j) { records += !j.empty(); });
  auto t0 = std::chrono::steady_clock::now();
  uint64_t ts_ns = 0;
  for (const auto& [req, m] : msgs)
    t.on_data({1, req, req ? "10.0.0.1:40000" : "10.0.0.2:3868",
               req ? "10.0.0.2:3868" : "10.0.0.1:40000", false, ts_ns += 100000, m});
  t.finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu %zu %.3f %zu\n", msgs.size(), bytes, secs, records);
  return 0;
}
