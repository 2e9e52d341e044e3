// Sealed segments must open in tshark and capinfos (4.0) with no warnings and
// the right packet count, including jumbo and 256 KiB frames, zero-packet
// segments and segments sealed by crash recovery. Skipped when the tools are
// not installed.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/clock.h"
#include "store/segment_writer.h"
#include "store_test_util.h"

namespace trawl::store {
namespace {

namespace fs = std::filesystem;

struct ToolRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

ToolRun run(const std::string& cmd, const fs::path& tmp) {
  ToolRun r;
  const fs::path err_file = tmp / "stderr.txt";
  std::string full = cmd + " 2>'" + err_file.string() + "'";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err_file);
  for (std::string line; std::getline(e, line);) {
    if (line.find("Running as user") != std::string::npos) continue;  // tshark as root
    r.err += line + "\n";
  }
  return r;
}

bool have(const char* tool) {
  return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

size_t count_lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

// An Ethernet frame of n bytes (local experimental EtherType 0x88b5).
std::vector<uint8_t> ether_frame(size_t n, uint8_t fill) {
  std::vector<uint8_t> f(n, fill);
  const uint8_t hdr[14] = {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x88, 0xb5};
  std::copy(hdr, hdr + 14, f.begin());
  return f;
}

class TsharkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have("tshark") || !have("capinfos")) GTEST_SKIP() << "tshark/capinfos not installed";
  }

  void check_segment(const fs::path& path, size_t packets) {
    SCOPED_TRACE(path.filename().string());
    ASSERT_EQ(path.extension(), ".pcapng");
    ToolRun t = run("tshark -n -r '" + path.string() + "'", tmp.path());
    EXPECT_EQ(t.exit_code, 0);
    EXPECT_EQ(t.err, "");
    EXPECT_EQ(count_lines(t.out), packets) << t.out;
    ToolRun c = run("capinfos -M '" + path.string() + "'", tmp.path());
    EXPECT_EQ(c.exit_code, 0);
    EXPECT_EQ(c.err, "");
    EXPECT_NE(c.out.find("Number of packets:   " + std::to_string(packets) + "\n"),
              std::string::npos)
        << c.out;
    EXPECT_NE(c.out.find("Capture comment:     agent=edge1 host=edge1.example"), std::string::npos)
        << c.out;
    EXPECT_NE(c.out.find("Capture hardware:    edge1.example"), std::string::npos) << c.out;
    if (packets > 0) {  // time statistics survive our own blocks
      EXPECT_NE(c.out.find("First packet time:"), std::string::npos) << c.out;
      EXPECT_NE(c.out.find("Strict time order:   True"), std::string::npos) << c.out;
    }
  }

  SegmentOptions options() {
    SegmentOptions o;
    o.dir = tmp.path() / "edge1";
    o.agent = "edge1";
    o.agent_host = "edge1.example";
    o.rotate_every_ns = 0;
    return o;
  }

  testing::TempDir tmp;
  FakeClock clock;
};

TEST_F(TsharkTest, SealedSegmentsOpenCleanly) {
  const std::vector<InterfaceInfo> ifaces = {{"eth0", 1, kMaxSnaplen}, {"eth1", 1, kMaxSnaplen}};
  auto w = SegmentWriter::open(options(), clock);
  ASSERT_TRUE(w.ok()) << w.error().message();
  auto& sw = **w;
  uint64_t ts = clock.wall_ns();

  // Segment 1: small, jumbo and maximum-snaplen frames over two interfaces,
  // drop statistics and a gap.
  std::vector<size_t> sizes = {60, 1514, 9014, kMaxSnaplen, 128};
  ASSERT_TRUE(sw.begin_batch(1, 1, ifaces).ok());
  sw.gap({1, ts - kNsPerSec, ts, 12, 3456, GapReason::kSpoolFull});
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto f = ether_frame(sizes[i], static_cast<uint8_t>(i));
    sw.packet({static_cast<uint16_t>(i % 2), ts + i * 1000, static_cast<uint32_t>(f.size()), f});
  }
  sw.stats({0, ts + 10'000, 1000, 7, 1, 0});
  sw.stats({1, ts + 10'000, 2000, 0, 0, 12});
  ASSERT_TRUE(sw.end_batch().ok());
  ASSERT_TRUE(sw.begin_batch(1, 2, ifaces).ok());
  auto f = ether_frame(9014, 0xee);
  sw.packet({0, ts + 20'000, 9014, f});
  ASSERT_TRUE(sw.end_batch().ok());
  ASSERT_TRUE(sw.close().ok());

  // Segment 2: statistics only, zero packets.
  clock.advance_ns(kNsPerSec);
  ASSERT_TRUE(sw.begin_batch(1, 3, ifaces).ok());
  sw.stats({0, clock.wall_ns(), 1100, 7, 1, 0});
  ASSERT_TRUE(sw.end_batch().ok());
  ASSERT_TRUE(sw.close().ok());

  // Segment 3: sealed by recovery after a crash that cut a batch in half.
  clock.advance_ns(kNsPerSec);
  ASSERT_TRUE(sw.begin_batch(1, 4, ifaces).ok());
  for (int i = 0; i < 3; ++i) sw.packet({0, clock.wall_ns() + i, 9014, f});
  ASSERT_TRUE(sw.end_batch().ok());
  ASSERT_TRUE(sw.sync().ok());
  auto part = *sw.open_segment_path();
  ASSERT_TRUE(sw.begin_batch(1, 5, ifaces).ok());
  for (int i = 0; i < 3; ++i) sw.packet({1, clock.wall_ns() + 10 + i, 9014, f});
  ASSERT_TRUE(sw.end_batch().ok());
  ASSERT_TRUE(sw.sync().ok());
  w->reset();  // crash
  fs::resize_file(part, fs::file_size(part) - 5000);
  auto w2 = SegmentWriter::open(options(), clock);
  ASSERT_TRUE(w2.ok()) << w2.error().message();
  EXPECT_EQ((*w2)->last_seq(), 4u);

  auto files = testing::list_segments(tmp.path() / "edge1", "edge1");
  ASSERT_EQ(files.size(), 3u);
  check_segment(files[0], 6);
  check_segment(files[1], 0);
  check_segment(files[2], 3);

  // Frame sizes survive intact, and the gap is visible as a packet comment.
  ToolRun lens = run("tshark -r '" + files[0].string() + "' -T fields -e frame.cap_len -e frame.len",
                 tmp.path());
  EXPECT_EQ(lens.out, "60\t60\n1514\t1514\n9014\t9014\n262144\t262144\n128\t128\n9014\t9014\n");
  ToolRun comments = run("tshark -r '" + files[0].string() + "' -Y frame.comment -T fields -e frame.comment",
                     tmp.path());
  EXPECT_EQ(count_lines(comments.out), 1u);
  EXPECT_NE(comments.out.find("trawl gap: agent edge1 lost 12 packets (3456 bytes) on interface eth1"),
            std::string::npos)
      << comments.out;
  ToolRun ifs = run("capinfos -M '" + files[0].string() + "'", tmp.path());
  EXPECT_NE(ifs.out.find("Number of interfaces in file: 2"), std::string::npos) << ifs.out;
  EXPECT_NE(ifs.out.find("Time precision = nanoseconds (9)"), std::string::npos) << ifs.out;
}

}  // namespace
}  // namespace trawl::store
