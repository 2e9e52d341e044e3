// store_fill: benchmark helper. Replays real captures through the real
// SegmentWriter (as one agent, batches of 256 packets, a sync per batch)
// until a target volume of captured bytes is stored, and optionally writes
// the very same packets as a plain nanosecond pcap for side-by-side tools.
//
// Repetition r (r >= 1) shifts the time line forward and XORs the second
// and third octets of every IPv4 address (also in ARP) with r, so each repetition's
// hosts and conversations are distinct (checksums are not fixed up: BPF
// does not look at them). Repetition 0 is the captures as they are.
//
//   store_fill --data DIR --agent NAME --bytes 5GiB [--level 1] [--frame 2MiB]
//              [--rotate 1GiB] [--pcap-out FILE] [--marker-ip A.B.C.D --hold-s N] PCAP...
//
// --marker-ip: after the fill, one more batch with a packet from that host
// is appended and synced (the segment stays open); "marker synced at <ns>"
// is printed and the tool holds the writer open for --hold-s seconds, so a
// script can time how soon `trawl query` returns it.
#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "store/segment_writer.h"

namespace {

struct Pkt {
  uint64_t ts;
  uint32_t orig_len;
  std::vector<uint8_t> data;
};

uint64_t parse_size(const char* s) {
  char* end;
  double v = std::strtod(s, &end);
  std::string u(end);
  if (u == "KiB" || u == "K") v *= 1024;
  if (u == "MiB" || u == "M") v *= 1024.0 * 1024;
  if (u == "GiB" || u == "G") v *= 1024.0 * 1024 * 1024;
  return static_cast<uint64_t>(v);
}

// Offsets of the IPv4 addresses in an Ethernet frame (VLAN tags skipped):
// IPv4 source/destination, or ARP sender/target protocol address.
std::pair<size_t, size_t> addr_offsets(const std::vector<uint8_t>& d) {
  size_t off = 12;
  while (off + 2 <= d.size()) {
    uint16_t et = static_cast<uint16_t>(d[off] << 8 | d[off + 1]);
    if (et == 0x8100 || et == 0x88A8) {
      off += 4;
      continue;
    }
    if (et == 0x0800 && off + 2 + 20 <= d.size()) return {off + 2 + 12, off + 2 + 16};
    if ((et == 0x0806 || et == 0x8035) && off + 2 + 28 <= d.size()) return {off + 2 + 14, off + 2 + 24};
    return {0, 0};
  }
  return {0, 0};
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir, agent = "bench", pcap_out, marker_ip;
  uint64_t target = 1ull << 30, frame = 1u << 20, rotate = 1ull << 30;
  int level = 1, hold_s = 0;
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--data") data_dir = next();
    else if (a == "--agent") agent = next();
    else if (a == "--bytes") target = parse_size(next());
    else if (a == "--level") level = std::atoi(next());
    else if (a == "--frame") frame = parse_size(next());
    else if (a == "--rotate") rotate = parse_size(next());
    else if (a == "--pcap-out") pcap_out = next();
    else if (a == "--marker-ip") marker_ip = next();
    else if (a == "--hold-s") hold_s = std::atoi(next());
    else inputs.push_back(a);
  }
  if (data_dir.empty() || inputs.empty()) {
    std::fprintf(stderr, "usage: store_fill --data DIR --bytes N [...] PCAP...\n");
    return 2;
  }
  // Load the Ethernet captures.
  std::vector<std::vector<Pkt>> caps;
  uint64_t rep_bytes = 0;
  for (const auto& f : inputs) {
    char err[PCAP_ERRBUF_SIZE];
    pcap_t* p = pcap_open_offline_with_tstamp_precision(f.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
    if (!p) continue;
    if (pcap_datalink(p) != DLT_EN10MB) {
      pcap_close(p);
      continue;
    }
    std::vector<Pkt> v;
    pcap_pkthdr* h;
    const u_char* d;
    while (pcap_next_ex(p, &h, &d) == 1) {
      v.push_back({static_cast<uint64_t>(h->ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(h->ts.tv_usec),
                   h->len, std::vector<uint8_t>(d, d + h->caplen)});
      rep_bytes += h->caplen;
    }
    pcap_close(p);
    if (!v.empty()) caps.push_back(std::move(v));
  }
  if (caps.empty() || rep_bytes == 0) {
    std::fprintf(stderr, "store_fill: no Ethernet captures among the inputs\n");
    return 1;
  }
  std::fprintf(stderr, "store_fill: %zu captures, %lu bytes per repetition\n", caps.size(), rep_bytes);

  trawl::FakeClock clock(1'763'800'000'000'000'000ull);
  trawl::store::SegmentOptions so;
  so.dir = std::string(data_dir) + "/" + agent;
  so.agent = agent;
  so.agent_host = agent;
  so.rotate_bytes = rotate;
  so.rotate_every_ns = 0;
  so.zstd_level = level;
  so.block_bytes = frame;
  so.fsync = false;
  auto w = trawl::store::SegmentWriter::open(so, clock);
  if (!w) {
    std::fprintf(stderr, "store_fill: %s\n", w.error().message().c_str());
    return 1;
  }
  pcap_t* dead = nullptr;
  pcap_dumper_t* dump = nullptr;
  if (!pcap_out.empty()) {
    dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO);
    dump = pcap_dump_open(dead, pcap_out.c_str());
    if (!dump) {
      std::fprintf(stderr, "store_fill: %s\n", pcap_geterr(dead));
      return 1;
    }
  }
  std::vector<trawl::InterfaceInfo> ifaces = {{"eth0", 1, 262144}};
  uint64_t stored = 0, seq = 0, packets = 0, cursor = 1'763'800'000'000'000'000ull;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Pkt> batch;
  auto flush_batch = [&]() -> bool {
    if (batch.empty()) return true;
    if (!(*w)->begin_batch(1, ++seq, ifaces)) return false;
    for (const auto& p : batch) (*w)->packet({0, p.ts, p.orig_len, p.data});
    if (!(*w)->end_batch() || !(*w)->sync()) return false;
    clock.advance_ns(1'000'000);
    if (((*w)->tick()).ok() == false) return false;
    batch.clear();
    return true;
  };
  for (uint64_t rep = 0; stored < target; ++rep) {
    for (const auto& cap : caps) {
      const uint64_t first = cap.front().ts;
      uint64_t last = cursor;
      for (const auto& src : cap) {
        Pkt p{cursor + (src.ts - first), src.orig_len, src.data};
        last = std::max(last, p.ts);
        if (rep) {
          if (auto [sa, da] = addr_offsets(p.data); sa) {
            for (size_t a : {sa, da}) {
              p.data[a + 1] ^= static_cast<uint8_t>(rep >> 8);
              p.data[a + 2] ^= static_cast<uint8_t>(rep);
            }
          }
        }
        if (dump) {
          pcap_pkthdr h{};
          h.ts.tv_sec = static_cast<time_t>(p.ts / 1'000'000'000ull);
          h.ts.tv_usec = static_cast<suseconds_t>(p.ts % 1'000'000'000ull);
          h.caplen = static_cast<bpf_u_int32>(p.data.size());
          h.len = p.orig_len;
          pcap_dump(reinterpret_cast<u_char*>(dump), &h, p.data.data());
        }
        stored += p.data.size();
        ++packets;
        batch.push_back(std::move(p));
        if (batch.size() == 256 && !flush_batch()) {
          std::fprintf(stderr, "store_fill: write failed\n");
          return 1;
        }
      }
      cursor = last + 1'000'000;  // 1 ms between captures
    }
  }
  if (!flush_batch()) return 1;
  if (dump) pcap_dump_close(dump);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("stored %lu packets, %lu captured bytes in %.1f s (%.0f MB/s incl. plain pcap copy)\n", packets,
              stored, secs, static_cast<double>(stored) / secs / 1e6);
  std::fflush(stdout);
  if (!marker_ip.empty()) {
    std::vector<uint8_t> f(14 + 20 + 8 + 16, 0);
    f[12] = 0x08;
    f[14] = 0x45;
    f[23] = 17;
    inet_pton(AF_INET, marker_ip.c_str(), &f[26]);
    inet_pton(AF_INET, marker_ip.c_str(), &f[30]);
    f[36] = 0x30;
    f[37] = 0x39;
    batch.push_back({cursor, static_cast<uint32_t>(f.size()), f});
    if (!flush_batch()) return 1;
    auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch()).count();
    std::printf("marker synced at %lld\n", static_cast<long long>(now));
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(hold_s));
  }
  return (*w)->close() ? 0 : 1;
}
