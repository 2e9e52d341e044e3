// pcapgen: writes a classic pcap of synthetic Ethernet/IPv4/UDP frames whose
// payload starts with "TRWL" and a u64 sequence number, so end-to-end tests
// can name every missing or duplicated packet.
//   pcapgen OUT.pcap COUNT FRAME_BYTES [SEQ_START]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

void put16be(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

uint16_t ip_checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: pcapgen OUT.pcap COUNT FRAME_BYTES [SEQ_START]\n");
    return 2;
  }
  uint64_t count = std::strtoull(argv[2], nullptr, 10);
  size_t frame = std::strtoull(argv[3], nullptr, 10);
  uint64_t seq0 = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 1;
  if (frame < 60 || frame > 65535) {
    std::fprintf(stderr, "pcapgen: FRAME_BYTES must be 60..65535\n");
    return 2;
  }
  FILE* f = std::fopen(argv[1], "wb");
  if (!f) {
    std::perror(argv[1]);
    return 1;
  }
  uint32_t hdr[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 262144, 1};
  std::fwrite(hdr, sizeof hdr, 1, f);
  std::vector<uint8_t> pkt(frame, 0);
  const uint8_t dst[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
  const uint8_t src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
  std::memcpy(&pkt[0], dst, 6);
  std::memcpy(&pkt[6], src, 6);
  put16be(&pkt[12], 0x0800);
  uint8_t* ip = &pkt[14];
  size_t ip_len = frame - 14;
  ip[0] = 0x45;
  put16be(ip + 2, static_cast<uint16_t>(ip_len));
  ip[6] = 0x40;  // DF
  ip[8] = 64;
  ip[9] = 17;
  const uint8_t sip[4] = {10, 99, 0, 1}, dip[4] = {10, 99, 0, 2};
  std::memcpy(ip + 12, sip, 4);
  std::memcpy(ip + 16, dip, 4);
  put16be(ip + 10, ip_checksum(ip, 20));
  uint8_t* udp = ip + 20;
  put16be(udp, 40000);
  put16be(udp + 2, 9);
  put16be(udp + 4, static_cast<uint16_t>(ip_len - 20));
  uint8_t* payload = udp + 8;
  size_t payload_len = ip_len - 28;
  for (size_t i = 12; i < payload_len; ++i) payload[i] = static_cast<uint8_t>(i * 31 + 7);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t seq = seq0 + i;
    std::memcpy(payload, "TRWL", 4);
    for (int b = 0; b < 8; ++b) payload[4 + b] = static_cast<uint8_t>(seq >> (56 - 8 * b));
    uint32_t rec[4] = {static_cast<uint32_t>(1700000000 + i / 1000000), static_cast<uint32_t>(i % 1000000),
                       static_cast<uint32_t>(frame), static_cast<uint32_t>(frame)};
    std::fwrite(rec, sizeof rec, 1, f);
    std::fwrite(pkt.data(), frame, 1, f);
  }
  return std::fclose(f) == 0 ? 0 : 1;
}
