// CRC32C (Castagnoli): SSE4.2 in three interleaved streams when the CPU has
// it, slicing-by-8 tables otherwise. Used by the agent's spool records and
// the collector's segment index.
#include "core/crc32c.h"

#include <array>
#include <cstring>

namespace trawl {

namespace {

using CrcTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr CrcTables make_crc_tables() {
  CrcTables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    t[0][i] = c;
  }
  for (size_t s = 1; s < 8; ++s)
    for (size_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  return t;
}

constexpr CrcTables kCrcTables = make_crc_tables();

uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Raw (not inverted) slicing-by-8 update.
uint32_t crc_update_table(uint32_t crc, const uint8_t* p, size_t n) {
  const auto& t = kCrcTables;
  while (n >= 8) {
    uint32_t lo = load_le32(p) ^ crc;
    uint32_t hi = load_le32(p + 4);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
          t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
  return crc;
}

#if defined(__x86_64__)
// The crc32 instruction has a latency of 3 cycles and a throughput of 1, so
// one dependency chain runs at a third of the possible speed. Long inputs
// are therefore cut into three interleaved streams of kCrcStride bytes,
// whose CRCs are combined by "appending zeros" to the earlier ones: a
// linear operator on the 32-bit register, precomputed as 4 x 256 tables.
constexpr size_t kCrcStride = 4096;

using CrcShift = std::array<std::array<uint32_t, 256>, 4>;

uint32_t gf2_times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (int i = 0; vec; ++i, vec >>= 1) {
    if (vec & 1) sum ^= mat[i];
  }
  return sum;
}

void gf2_square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; ++n) square[n] = gf2_times(mat, mat[n]);
}

// Operator for appending `len` zero bytes to a raw (non-inverted) CRC-32C register.
CrcShift make_crc_shift(size_t len) {
  uint32_t odd[32], even[32];
  odd[0] = 0x82F63B78u;  // one zero bit
  for (int n = 1; n < 32; ++n) odd[n] = 1u << (n - 1);
  gf2_square(even, odd);  // two zero bits
  gf2_square(odd, even);  // four zero bits
  // Square up to one byte, then one byte per bit of len.
  uint32_t op[32] = {};
  bool have = false;
  gf2_square(even, odd);  // eight zero bits = one zero byte
  std::memcpy(odd, even, sizeof odd);
  for (size_t bits = len; bits; bits >>= 1) {
    if (bits & 1) {
      if (!have) {
        std::memcpy(op, odd, sizeof op);
        have = true;
      } else {
        uint32_t t[32];
        for (int n = 0; n < 32; ++n) t[n] = gf2_times(odd, op[n]);
        std::memcpy(op, t, sizeof op);
      }
    }
    gf2_square(even, odd);
    std::memcpy(odd, even, sizeof odd);
  }
  CrcShift table{};
  for (uint32_t n = 0; n < 256; ++n) {
    table[0][n] = gf2_times(op, n);
    table[1][n] = gf2_times(op, n << 8);
    table[2][n] = gf2_times(op, n << 16);
    table[3][n] = gf2_times(op, n << 24);
  }
  return table;
}

uint32_t crc_shift(const CrcShift& t, uint32_t crc) {
  return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}

__attribute__((target("sse4.2"))) uint32_t crc_update_sse42(uint32_t crc, const uint8_t* p,
                                                            size_t n) {
  static const CrcShift shift = make_crc_shift(kCrcStride);
  unsigned long long c0 = crc;
  while (n >= 3 * kCrcStride) {
    unsigned long long c1 = 0, c2 = 0;
    for (size_t i = 0; i < kCrcStride; i += 8) {
      unsigned long long v0, v1, v2;
      std::memcpy(&v0, p + i, 8);
      std::memcpy(&v1, p + kCrcStride + i, 8);
      std::memcpy(&v2, p + 2 * kCrcStride + i, 8);
      c0 = __builtin_ia32_crc32di(c0, v0);
      c1 = __builtin_ia32_crc32di(c1, v1);
      c2 = __builtin_ia32_crc32di(c2, v2);
    }
    c0 = crc_shift(shift, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
    c0 = crc_shift(shift, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c2);
    p += 3 * kCrcStride;
    n -= 3 * kCrcStride;
  }
  while (n >= 8) {
    unsigned long long v;
    std::memcpy(&v, p, 8);
    c0 = __builtin_ia32_crc32di(c0, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<unsigned int>(c0);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}

bool cpu_has_sse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

}  // namespace

uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc) {
#if defined(__x86_64__)
  if (cpu_has_sse42()) return ~crc_update_sse42(~crc, data.data(), data.size());
#endif
  return ~crc_update_table(~crc, data.data(), data.size());
}

namespace crc32c_detail {
uint32_t crc32c_table(std::span<const uint8_t> data, uint32_t crc) {
  return ~crc_update_table(~crc, data.data(), data.size());
}
}  // namespace crc32c_detail

}  // namespace trawl
