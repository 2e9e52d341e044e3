// Test consumer for the collector's ZeroMQ feed, written against plain
// libzmq (a SUB socket), as an osmo-pcap consumer would be:
//   zmq_sub ENDPOINT [--v1 FILE.pcap] [--v2 FILE.pcap] [--events FILE]
//           [--topic PREFIX]... [--stall SECONDS] [--idle SECONDS]
//           [--max SECONDS] [--ready FILE]
// Subscribes to the prefixes (default: "data.v1.", "data.v2.", "event."),
// writes the v1 packets into a classic pcap file built from the messages'
// own 24-byte headers and records (the first header is written once and
// every later one must be identical), the v2 packets into a nanosecond pcap
// file, and one line per event ("TOPIC TEXT"). Checks the shape of every
// message (parts, sizes) and exits 3 on the first malformed one.
// --stall: after the first message, stop reading for this long (a stalled
// subscriber). Ends after --idle seconds without a message (once one came)
// or --max seconds in all. --ready: created once subscribed.
#include <zmq.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

uint32_t le32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | uint32_t{p[3]} << 24; }
uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint64_t le64(const uint8_t* p) { return uint64_t{le32(p)} | uint64_t{le32(p + 4)} << 32; }

void put32(FILE* f, uint32_t v) { fwrite(&v, 4, 1, f); }  // little-endian host

[[noreturn]] void die(const char* why, const std::string& topic) {
  fprintf(stderr, "zmq_sub: malformed message (%s), topic '%s'\n", why, topic.c_str());
  exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: zmq_sub ENDPOINT [--v1 F] [--v2 F] [--events F] [--topic P]... [--stall S] [--idle S] [--max S] [--ready F]\n");
    return 2;
  }
  std::string endpoint = argv[1], v1_path, v2_path, ev_path, ready;
  std::vector<std::string> topics;
  double stall = 0, idle = 3, max_s = 50;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--v1") v1_path = v;
    else if (k == "--v2") v2_path = v;
    else if (k == "--events") ev_path = v;
    else if (k == "--topic") topics.push_back(v);
    else if (k == "--stall") stall = std::stod(v);
    else if (k == "--idle") idle = std::stod(v);
    else if (k == "--max") max_s = std::stod(v);
    else if (k == "--ready") ready = v;
    else {
      fprintf(stderr, "zmq_sub: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (topics.empty()) topics = {"data.v1.", "data.v2.", "event."};
  FILE* v1 = v1_path.empty() ? nullptr : fopen(v1_path.c_str(), "wb");
  FILE* v2 = v2_path.empty() ? nullptr : fopen(v2_path.c_str(), "wb");
  FILE* ev = ev_path.empty() ? nullptr : fopen(ev_path.c_str(), "w");
  if (v2) {
    put32(v2, 0xa1b23c4d);
    uint16_t ver[2] = {2, 4};
    fwrite(ver, 2, 2, v2);
    put32(v2, 0);
    put32(v2, 0);
    put32(v2, 262144);
    put32(v2, 1);
  }
  void* ctx = zmq_ctx_new();
  void* sock = zmq_socket(ctx, ZMQ_SUB);
  int linger = 0;
  zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
  for (const auto& t : topics) zmq_setsockopt(sock, ZMQ_SUBSCRIBE, t.data(), t.size());
  if (zmq_connect(sock, endpoint.c_str()) != 0) {
    fprintf(stderr, "zmq_sub: connect %s: %s\n", endpoint.c_str(), zmq_strerror(zmq_errno()));
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the subscriptions reach the publisher
  if (!ready.empty()) fclose(fopen(ready.c_str(), "w"));
  using clk = std::chrono::steady_clock;
  auto start = clk::now(), last = clk::now();
  bool got_any = false, stalled = false;
  std::vector<uint8_t> first_v1_header;
  uint64_t n1 = 0, n2 = 0, ne = 0, last_seq = 0;
  for (;;) {
    auto now = clk::now();
    if (std::chrono::duration<double>(now - start).count() > max_s) break;
    if (got_any && std::chrono::duration<double>(now - last).count() > idle) break;
    zmq_pollitem_t item{sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 100) <= 0) continue;
    std::vector<std::vector<uint8_t>> parts;
    for (;;) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, sock, 0) < 0) break;
      auto* d = static_cast<uint8_t*>(zmq_msg_data(&m));
      parts.emplace_back(d, d + zmq_msg_size(&m));
      bool more = zmq_msg_more(&m);
      zmq_msg_close(&m);
      if (!more) break;
    }
    if (parts.empty()) continue;
    last = clk::now();
    got_any = true;
    std::string topic(parts[0].begin(), parts[0].end());
    if (topic.rfind("data.v1.", 0) == 0) {
      if (parts.size() != 3 || parts[1].size() != 24 || parts[2].size() < 16) die("v1 shape", topic);
      if (le32(parts[1].data()) != 0xa1b2c3d4 || le16(parts[1].data() + 4) != 2 || le16(parts[1].data() + 6) != 4) {
        die("v1 file header", topic);
      }
      uint32_t caplen = le32(parts[2].data() + 8);
      if (caplen != parts[2].size() - 16 || le32(parts[2].data() + 4) >= 1000000) die("v1 record", topic);
      if (v1) {
        if (first_v1_header.empty()) {
          first_v1_header = parts[1];
          fwrite(parts[1].data(), 1, 24, v1);
        }
        fwrite(parts[2].data(), 1, parts[2].size(), v1);
      }
      ++n1;
    } else if (topic.rfind("data.v2.", 0) == 0) {
      if (parts.size() != 3 || parts[1].size() < 32 || parts[1][0] != 2) die("v2 shape", topic);
      const uint8_t* m = parts[1].data();
      size_t name_len = le16(m + 6);
      if (parts[1].size() != 32 + name_len) die("v2 metadata length", topic);
      uint64_t ts = le64(m + 8), seq = le64(m + 16);
      uint32_t orig = le32(m + 24);
      if (seq < last_seq) die("v2 batch seq went back", topic);
      last_seq = seq;
      if (v2) {
        put32(v2, static_cast<uint32_t>(ts / 1000000000));
        put32(v2, static_cast<uint32_t>(ts % 1000000000));
        put32(v2, static_cast<uint32_t>(parts[2].size()));
        put32(v2, orig);
        fwrite(parts[2].data(), 1, parts[2].size(), v2);
      }
      ++n2;
    } else if (topic.rfind("event.", 0) == 0) {
      if (parts.size() > 2) die("event shape", topic);
      if (ev) {
        std::string text = parts.size() > 1 ? std::string(parts[1].begin(), parts[1].end()) : "";
        fprintf(ev, "%s %s\n", topic.c_str(), text.c_str());
        fflush(ev);
      }
      ++ne;
    } else {
      die("unknown topic", topic);
    }
    if (stall > 0 && !stalled) {
      stalled = true;
      fprintf(stderr, "zmq_sub: stalling %.1f s\n", stall);
      std::this_thread::sleep_for(std::chrono::duration<double>(stall));
      last = clk::now();
    }
  }
  fprintf(stderr, "zmq_sub: v1 %llu v2 %llu events %llu\n", static_cast<unsigned long long>(n1),
          static_cast<unsigned long long>(n2), static_cast<unsigned long long>(ne));
  printf("%llu %llu %llu\n", static_cast<unsigned long long>(n1), static_cast<unsigned long long>(n2),
         static_cast<unsigned long long>(ne));
  if (v1) fclose(v1);
  if (v2) fclose(v2);
  if (ev) fclose(ev);
  zmq_close(sock);
  zmq_ctx_term(ctx);
  return 0;
}
