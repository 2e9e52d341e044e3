// libFuzzer target: spool recovery over damaged files. Each run builds a
// real spool (several files, one reused from a spare so that it carries a
// stale tail), closes it, then lets the input damage the files (overwrite
// bytes, truncate, append garbage) before opening it again. open() must
// never crash; when it succeeds, every entry it recovered must be readable
// in increasing seq order within the spool's bounds, and the spool must keep
// working (ack, append, reopen). Payloads are not compared: the fuzzer can
// learn a record's CRC from the comparison and write it (a CRC is not a MAC;
// docs/spool.md says what the per-file nonce does and does not cover).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "agent/spool.h"

namespace fs = std::filesystem;
using namespace trawl::agent;

namespace {

fs::path base_dir() {
  static const fs::path dir = [] {
    std::string tmpl = (fs::exists("/dev/shm") ? std::string("/dev/shm") : std::string("/tmp")) +
                       "/trawl-spool-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) std::abort();
    return fs::path(tmpl);
  }();
  return dir;
}

SpoolOptions options() {
  SpoolOptions o;
  o.dir = base_dir() / "spool";
  o.max_bytes = 64 << 10;
  o.file_bytes = 16 << 10;
  o.policy = DropPolicy::kDropOldest;
  return o;
}

std::vector<uint8_t> payload(uint64_t seq, size_t n) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(seq * 31 + i);
  return p;
}

bool append(Spool& s, uint64_t seq, size_t n) {
  auto p = payload(seq, n);
  EntryMeta m{seq, 1, n, seq * 1000, seq * 1000 + 1};
  auto out = s.append(m, p);
  if (!out.ok()) std::abort();  // tmpfs: no disk errors expected
  return out->stored;
}

// The same spool every run: records 1..5 acked (their files become spares),
// 6..14 unacked, the newest file reused from a spare.
void build() {
  std::error_code ec;
  fs::remove_all(options().dir, ec);
  auto s = Spool::open(options());
  if (!s.ok()) std::abort();
  uint64_t seq = 0;
  for (int i = 0; i < 5; ++i) append(**s, ++seq, 3000 + 700 * static_cast<size_t>(i));
  if (!(*s)->ack(seq).ok()) std::abort();
  for (int i = 0; i < 9; ++i) append(**s, ++seq, 1500 + 977 * static_cast<size_t>(i));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  build();
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(options().dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  // Damage: 5-byte commands {op, file, offset u16, value}.
  for (size_t i = 0; i + 5 <= size && !files.empty(); i += 5) {
    const uint8_t op = data[i] % 3;
    const fs::path& f = files[data[i + 1] % files.size()];
    const off_t off = static_cast<off_t>(data[i + 2] | data[i + 3] << 8) * 4;
    int fd = ::open(f.c_str(), O_RDWR);
    if (fd < 0) continue;
    if (op == 0) {
      (void)!::pwrite(fd, &data[i + 4], 1, off);
    } else if (op == 1) {
      (void)!::ftruncate(fd, off);
    } else {
      // A run of input bytes at the offset: room for a forged record header.
      size_t n = std::min<size_t>(size - i - 4, 64);
      (void)!::pwrite(fd, &data[i + 4], n, off);
    }
    ::close(fd);
  }
  auto s = Spool::open(options());
  if (!s.ok()) return 0;  // an error with a message is fine; a crash is not
  Spool& sp = **s;
  uint64_t last = sp.acked_seq();
  for (;;) {
    auto e = sp.next_unsent();
    if (!e.ok()) return 0;  // a read error is reported, not a crash
    if (!e->has_value()) break;
    const auto& [meta, bytes] = **e;
    if (meta.seq <= last || meta.seq > sp.last_seq()) __builtin_trap();
    last = meta.seq;
    (void)bytes;
  }
  if (sp.disk_bytes() > options().max_bytes) __builtin_trap();
  if (!sp.ack(last).ok()) return 0;
  const bool stored = append(sp, sp.last_seq() + 1, 2000);
  s->reset();
  auto again = Spool::open(options());
  if (!again.ok() || (*again)->entries() != (stored ? 1u : 0u)) __builtin_trap();
  return 0;
}
