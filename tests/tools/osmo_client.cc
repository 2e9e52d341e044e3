// A test client speaking the osmo-pcap client protocol (as described in
// docs/osmo-migration.md; written from that description, not from
// osmo-pcap's code). Reads a capture with libpcap and streams it:
//   osmo_client HOST:PORT FILE [--pps N] [--nsec] [--swap]
//               [--reconnect-after N] [--malformed KIND --after N] [--bind IP]
//   osmo_client --out STREAM.bin FILE [--nsec] [--swap]
// --out: write the byte stream (link header + data messages) to a file
// instead of a socket (to replay it through `openssl s_client` for TLS).
// --nsec / --swap: nanosecond magic / big-endian byte order.
// --reconnect-after N: close after N packets, reconnect, resend the link
// header, continue. --malformed KIND (short-record, caplen-over-payload,
// unknown-type, bad-link-header, data-before-link) after N packets: sends
// the bad message and then expects the server to close the connection
// within 5 s (exit 0 if it does, 3 if not). Exit 0 when everything was sent.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "live/osmo_protocol.h"

namespace osmo = trawl::live::osmo;

namespace {

std::string g_bind;  // source address (--bind)

int connect_to(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(hostport.substr(colon + 1))));
  if (inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &a.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (!g_bind.empty()) {
    sockaddr_in b{};
    b.sin_family = AF_INET;
    inet_pton(AF_INET, g_bind.c_str(), &b.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0) perror("osmo_client: bind");
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    perror("osmo_client: connect");
    close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::vector<uint8_t>& b) {
  size_t off = 0;
  while (off < b.size()) {
    ssize_t n = send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Waits for the server to close (EOF or reset) within 5 s.
bool closed_by_server(int fd) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0) {
      char c;
      ssize_t n = recv(fd, &c, 1, 0);
      if (n <= 0) return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "--out") {
    char err[PCAP_ERRBUF_SIZE];
    pcap_t* p = pcap_open_offline_with_tstamp_precision(argc >= 4 ? argv[3] : "", PCAP_TSTAMP_PRECISION_NANO, err);
    if (argc < 4 || !p) {
      fprintf(stderr, "osmo_client --out: %s\n", p ? "usage: --out STREAM FILE" : err);
      return 2;
    }
    std::unique_ptr<pcap_t, void (*)(pcap_t*)> closer(p, pcap_close);
    bool nsec = false, swap = false;
    for (int i = 4; i < argc; ++i) {
      nsec |= std::string(argv[i]) == "--nsec";
      swap |= std::string(argv[i]) == "--swap";
    }
    std::vector<uint8_t> buf;
    osmo::append_link_header(buf, static_cast<uint32_t>(pcap_snapshot(p)), static_cast<uint32_t>(pcap_datalink(p)), nsec, swap);
    pcap_pkthdr* h;
    const u_char* data;
    while (pcap_next_ex(p, &h, &data) == 1) {
      uint64_t ts = uint64_t(h->ts.tv_sec) * 1000000000ull + uint64_t(h->ts.tv_usec);
      osmo::append_data(buf, ts, h->len, {data, h->caplen}, nsec, swap);
    }
    FILE* f = fopen(argv[2], "wb");
    if (!f || fwrite(buf.data(), 1, buf.size(), f) != buf.size()) return 1;
    fclose(f);
    return 0;
  }
  if (argc < 3) {
    fprintf(stderr, "usage: osmo_client HOST:PORT FILE [--pps N] [--nsec] [--swap] [--reconnect-after N] [--malformed KIND --after N]\n");
    return 2;
  }
  std::string target = argv[1], file = argv[2], malformed;
  double pps = 0;
  bool nsec = false, swap = false;
  long reconnect_after = -1, after = 0;
  for (int i = 3; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--pps") pps = std::stod(val());
    else if (k == "--nsec") nsec = true;
    else if (k == "--swap") swap = true;
    else if (k == "--reconnect-after") reconnect_after = std::stol(val());
    else if (k == "--malformed") malformed = val();
    else if (k == "--after") after = std::stol(val());
    else if (k == "--bind") g_bind = val();
    else {
      fprintf(stderr, "osmo_client: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline_with_tstamp_precision(file.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (!p) {
    fprintf(stderr, "osmo_client: %s\n", err);
    return 1;
  }
  std::unique_ptr<pcap_t, void (*)(pcap_t*)> closer(p, pcap_close);  // every return path
  uint32_t snaplen = static_cast<uint32_t>(pcap_snapshot(p)), linktype = static_cast<uint32_t>(pcap_datalink(p));
  int fd = connect_to(target);
  if (fd < 0) return 1;
  std::vector<uint8_t> buf;
  if (malformed != "data-before-link") {
    osmo::append_link_header(buf, snaplen, linktype, nsec, swap);
    if (!send_all(fd, buf)) return 1;
  }
  long sent = 0;
  std::vector<uint8_t> pending;
  auto t0 = std::chrono::steady_clock::now();
  pcap_pkthdr* h;
  const u_char* data;
  while (pcap_next_ex(p, &h, &data) == 1) {
    if (!malformed.empty() && sent == after) {
      buf.clear();
      if (malformed == "short-record") {
        osmo::append_message_header(buf, osmo::kTypeData, 10);
        buf.insert(buf.end(), 10, 0);
      } else if (malformed == "caplen-over-payload") {
        osmo::append_data(buf, 0, 100, std::vector<uint8_t>(100, 0xab), nsec, swap);
        buf[4 + 8] = 0xff;  // caplen low byte: 0x..ff > 100 (little-endian)
        buf[4 + 9] = 0x01;
        if (swap) std::swap(buf[4 + 8], buf[4 + 11]), std::swap(buf[4 + 9], buf[4 + 10]);
      } else if (malformed == "unknown-type") {
        osmo::append_message_header(buf, 7, 4);
        buf.insert(buf.end(), 4, 0);
      } else if (malformed == "bad-link-header") {
        osmo::append_message_header(buf, osmo::kTypeLinkHeader, 24);
        buf.insert(buf.end(), 24, 0x55);
      } else if (malformed == "data-before-link") {
        osmo::append_data(buf, 0, 60, std::vector<uint8_t>(60, 0), nsec, swap);
      } else {
        fprintf(stderr, "osmo_client: unknown malformed kind %s\n", malformed.c_str());
        return 2;
      }
      send_all(fd, buf);
      bool closed = closed_by_server(fd);
      fprintf(stderr, "osmo_client: sent %ld packets, then %s: server %s\n", sent, malformed.c_str(),
              closed ? "closed the connection" : "did NOT close the connection");
      return closed ? 0 : 3;
    }
    if (reconnect_after >= 0 && sent == reconnect_after) {
      shutdown(fd, SHUT_WR);
      closed_by_server(fd);
      close(fd);
      fd = connect_to(target);
      if (fd < 0) return 1;
      buf.clear();
      osmo::append_link_header(buf, snaplen, linktype, nsec, swap);
      if (!send_all(fd, buf)) return 1;
    }
    uint64_t ts = uint64_t(h->ts.tv_sec) * 1000000000ull + uint64_t(h->ts.tv_usec);  // nanosecond precision
    osmo::append_data(pending, ts, h->len, {data, h->caplen}, nsec, swap);
    ++sent;
    // Unpaced: send in 256 KiB writes (the collector, not this client, should be the limit).
    if (pps > 0 || pending.size() >= (256u << 10) || reconnect_after == sent || (!malformed.empty() && sent == after)) {
      if (!send_all(fd, pending)) {
        fprintf(stderr, "osmo_client: connection lost after %ld packets\n", sent);
        return 1;
      }
      pending.clear();
    }
    if (pps > 0) {
      auto due = t0 + std::chrono::duration<double>(sent / pps);
      std::this_thread::sleep_until(due);
    }
  }
  if (!send_all(fd, pending)) return 1;
  shutdown(fd, SHUT_WR);
  closed_by_server(fd);  // the server reads everything, then sees our FIN
  close(fd);
  fprintf(stderr, "osmo_client: sent %ld packets\n", sent);
  return 0;
}
