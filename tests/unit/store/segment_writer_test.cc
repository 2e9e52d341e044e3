#include "store/segment_writer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <fstream>

#include "core/clock.h"
#include "store_test_util.h"

namespace trawl::store {
namespace {

namespace fs = std::filesystem;
using testing::list_segments;
using testing::read_segment;
using testing::TempDir;

const std::vector<InterfaceInfo> kIfaces = {{"eth0", 1, 262144}, {"eth1", 1, 262144}};

// 10:03:12 UTC on 2026-11-22.
constexpr uint64_t kT0 = 1'795'343'400'000'000'000ull - 27 * 60 * kNsPerSec + 12 * kNsPerSec;

class SegmentWriterTest : public ::testing::Test {
 protected:
  SegmentOptions options() {
    SegmentOptions o;
    o.dir = tmp.path() / "edge1";
    o.agent = "edge1";
    o.agent_host = "edge1.example";
    o.write_buffer_bytes = 4096;
    return o;
  }
  std::unique_ptr<SegmentWriter> open(SegmentOptions o) {
    auto w = SegmentWriter::open(std::move(o), clock);
    EXPECT_TRUE(w.ok()) << w.error().message();
    return w.ok() ? std::move(*w) : nullptr;
  }
  std::unique_ptr<SegmentWriter> open() { return open(options()); }

  // One batch of n packets of `size` bytes, alternating interfaces.
  Status batch(SegmentWriter& w, uint64_t seq, int n = 3, size_t size = 100) {
    if (auto st = w.begin_batch(1, seq, kIfaces); !st.ok()) return st;
    for (int i = 0; i < n; ++i) {
      payload.assign(size, static_cast<uint8_t>(seq + i));
      w.packet({static_cast<uint16_t>(i % 2), clock.wall_ns() + static_cast<uint64_t>(i),
                static_cast<uint32_t>(size), payload});
    }
    return w.end_batch();
  }
  fs::path dir() { return tmp.path() / "edge1"; }

  TempDir tmp;
  FakeClock clock{kT0};
  std::vector<uint8_t> payload;
};

TEST_F(SegmentWriterTest, OpensLazilyAndSealsOnClose) {
  auto w = open();
  ASSERT_TRUE(w);
  EXPECT_TRUE(fs::is_directory(dir()));
  EXPECT_TRUE(list_segments(dir(), "edge1").empty());
  EXPECT_FALSE(w->open_segment_path());
  EXPECT_EQ(w->last_seq(), 0u);

  ASSERT_TRUE(batch(*w, 1).ok());
  ASSERT_TRUE(w->open_segment_path());
  EXPECT_EQ(w->open_segment_path()->filename(), "edge1-20261122T100312.000000000Z.pcapng.part");
  ASSERT_TRUE(batch(*w, 2).ok());
  EXPECT_EQ(w->last_seq(), 2u);
  EXPECT_EQ(w->spool_id(), 1u);
  ASSERT_TRUE(w->close().ok());
  EXPECT_FALSE(w->open_segment_path());

  auto files = list_segments(dir(), "edge1");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].filename(), "edge1-20261122T100312.000000000Z.pcapng");
  auto seg = read_segment(files[0]);
  EXPECT_TRUE(seg.clean_end) << seg.error;
  EXPECT_EQ(seg.shb_comment, "agent=edge1 host=edge1.example");
  ASSERT_EQ(seg.batches.size(), 2u);
  EXPECT_EQ(seg.batches[1].seq, 2u);
  EXPECT_EQ(seg.packets(), 6u);
  ASSERT_TRUE(seg.seal);
  EXPECT_TRUE(seg.seal_is_last);
  EXPECT_EQ(*seg.seal, (pcapng::SealRecord{1, 2, 6, kT0, kT0 + 2}));
  EXPECT_EQ(w->counters().packets, 6u);
  EXPECT_EQ(w->counters().bytes, 600u);
  EXPECT_EQ(w->counters().segments_sealed, 1u);
}

TEST_F(SegmentWriterTest, NoEmptySegments) {
  auto w = open();
  ASSERT_TRUE(w->close().ok());
  ASSERT_TRUE(w->begin_batch(1, 1, kIfaces).ok());
  w->abort_batch();
  ASSERT_TRUE(w->sync().ok());
  ASSERT_TRUE(w->close().ok());
  EXPECT_TRUE(fs::is_empty(dir()));
  EXPECT_EQ(w->last_seq(), 0u);
}

TEST_F(SegmentWriterTest, AbortedBatchLeavesNoTrace) {
  auto w = open();
  ASSERT_TRUE(batch(*w, 1).ok());
  ASSERT_TRUE(w->begin_batch(1, 2, {{{"eth9", 1, 100}}}).ok());
  payload.assign(50, 9);
  w->packet({0, 5, 50, payload});
  w->gap({0, 1, 2, 3, 4, GapReason::kSpoolFull});
  w->abort_batch();
  EXPECT_EQ(w->last_seq(), 1u);
  EXPECT_EQ(w->counters().packets, 3u);
  ASSERT_TRUE(batch(*w, 2).ok());
  ASSERT_TRUE(w->close().ok());
  auto seg = read_segment(list_segments(dir(), "edge1").at(0));
  ASSERT_EQ(seg.batches.size(), 2u);
  EXPECT_EQ(seg.packets(), 6u);
  EXPECT_TRUE(seg.batches[1].gaps.empty());
  for (const auto& b : seg.batches)
    for (const auto& p : b.packets) {
      EXPECT_NE(p.iface, "eth9");
      EXPECT_TRUE(p.comments.empty());
    }
}

TEST_F(SegmentWriterTest, NamesNeverCollide) {
  auto w = open();
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    ASSERT_TRUE(batch(*w, seq).ok());
    ASSERT_TRUE(w->close().ok());
  }
  auto files = list_segments(dir(), "edge1");
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].filename(), "edge1-20261122T100312.000000000Z.pcapng");
  EXPECT_EQ(files[1].filename(), "edge1-20261122T100312.000000001Z.pcapng");
  EXPECT_EQ(files[2].filename(), "edge1-20261122T100312.000000002Z.pcapng");
  // A clock that went backwards does not produce older names either.
  FakeClock past(kT0 - 3600 * kNsPerSec);
  auto w2 = SegmentWriter::open(options(), past);
  ASSERT_TRUE(w2.ok());
  ASSERT_TRUE(batch(**w2, 4).ok());
  EXPECT_EQ((*w2)->open_segment_path()->filename(), "edge1-20261122T100312.000000003Z.pcapng.part");
  ASSERT_TRUE((*w2)->close().ok());
}

TEST_F(SegmentWriterTest, TimeRotationIsWallClockAligned) {
  auto o = options();
  o.rotate_every_ns = 300 * kNsPerSec;
  auto w = open(o);
  ASSERT_TRUE(batch(*w, 1).ok());
  clock.advance_ns((107 * kNsPerSec) + 999'999'999);  // 10:04:59.999999999
  ASSERT_TRUE(w->tick().ok());
  EXPECT_TRUE(w->open_segment_path());
  EXPECT_EQ(w->counters().segments_sealed, 0u);
  clock.advance_ns(1);  // 10:05:00
  ASSERT_TRUE(w->tick().ok());
  EXPECT_FALSE(w->open_segment_path());
  EXPECT_EQ(w->counters().segments_sealed, 1u);
  ASSERT_TRUE(w->tick().ok());  // idle: nothing to do, no empty segment
  clock.advance_ns(kNsPerSec);
  ASSERT_TRUE(batch(*w, 2).ok());
  EXPECT_EQ(w->open_segment_path()->filename(), "edge1-20261122T100501.000000000Z.pcapng.part");
  // The next boundary is 10:10:00; a batch after it goes into a new segment.
  clock.advance_ns(299 * kNsPerSec);  // 10:10:00
  ASSERT_TRUE(batch(*w, 3).ok());
  EXPECT_EQ(w->counters().segments_sealed, 2u);
  EXPECT_EQ(w->open_segment_path()->filename(), "edge1-20261122T101000.000000000Z.pcapng.part");
  ASSERT_TRUE(w->close().ok());
  auto files = list_segments(dir(), "edge1");
  ASSERT_EQ(files.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    auto seg = read_segment(files[i]);
    ASSERT_EQ(seg.batches.size(), 1u);
    EXPECT_EQ(seg.batches[0].seq, i + 1);
    EXPECT_TRUE(seg.seal_is_last);
  }
}

TEST_F(SegmentWriterTest, SizeRotationAtBatchBoundaries) {
  auto o = options();
  o.rotate_bytes = 10'000;
  o.rotate_every_ns = 0;
  auto w = open(o);
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    ASSERT_TRUE(batch(*w, seq, 10, 300).ok());
    clock.advance_ns(kNsPerSec);
  }
  ASSERT_TRUE(w->close().ok());
  auto files = list_segments(dir(), "edge1");
  ASSERT_GE(files.size(), 5u);
  uint64_t next_seq = 1;
  for (size_t i = 0; i < files.size(); ++i) {
    auto seg = read_segment(files[i]);
    EXPECT_TRUE(seg.clean_end);
    for (const auto& b : seg.batches) EXPECT_EQ(b.seq, next_seq++);
    auto size = fs::file_size(files[i]);
    if (i + 1 < files.size()) {
      EXPECT_GE(size, 10'000u);
      EXPECT_LT(size, 10'000u + 10 * 332 + 200);  // at most one batch + SEAL over
    }
  }
  EXPECT_EQ(next_seq, 21u);
}

TEST_F(SegmentWriterTest, InterfacesGetOneIdbPerSegment) {
  auto w = open();
  ASSERT_TRUE(batch(*w, 1).ok());
  std::vector<InterfaceInfo> other = {{"eth1", 1, 262144}, {"eth0", 1, 1500}, {"eth2", 113, 262144}};
  ASSERT_TRUE(w->begin_batch(1, 2, other).ok());
  payload.assign(20, 1);
  for (uint16_t i = 0; i < 3; ++i) w->packet({i, 10, 20, payload});
  ASSERT_TRUE(w->end_batch().ok());
  ASSERT_TRUE(w->close().ok());
  auto path = list_segments(dir(), "edge1").at(0);
  auto reader = pcapng::PcapngReader::open_file(path);
  ASSERT_TRUE(reader.ok());
  while (reader->next() == pcapng::PcapngReader::Next::kBlock) {
  }
  const auto& ifs = reader->interfaces();
  ASSERT_EQ(ifs.size(), 4u);  // eth0/262144, eth1, eth0/1500, eth2
  EXPECT_EQ(ifs[0].name, "eth0");
  EXPECT_EQ(ifs[1].name, "eth1");
  EXPECT_EQ(ifs[2].name, "eth0");
  EXPECT_EQ(ifs[2].snaplen, 1500u);
  EXPECT_EQ(ifs[3].link_type, 113);
  for (const auto& i : ifs) EXPECT_EQ(i.tsresol, 9);
  auto seg = read_segment(path);
  ASSERT_EQ(seg.batches.at(1).packets.size(), 3u);
  EXPECT_EQ(seg.batches[1].packets[0].iface, "eth1");
  EXPECT_EQ(seg.batches[1].packets[2].iface, "eth2");
}

TEST_F(SegmentWriterTest, GapIsRecordedAndCommentedOnTheNextPacket) {
  auto w = open();
  ASSERT_TRUE(w->begin_batch(1, 1, kIfaces).ok());
  w->gap({1, kT0 - 5 * kNsPerSec, kT0, 17, 4242, GapReason::kSpoolFull});
  w->gap({0xffff, kT0 - 1, kT0, 1, 60, GapReason::kAgentRestart});
  w->stats({1, kT0, 1000, 2, 1, 17});
  payload.assign(64, 0xab);
  w->packet({0, kT0 + 1, 64, payload});
  w->packet({0, kT0 + 2, 64, payload});
  ASSERT_TRUE(w->end_batch().ok());
  ASSERT_TRUE(w->close().ok());
  auto seg = read_segment(list_segments(dir(), "edge1").at(0));
  ASSERT_EQ(seg.batches.size(), 1u);
  const auto& b = seg.batches[0];
  ASSERT_EQ(b.gaps.size(), 2u);
  EXPECT_EQ(b.gaps[0].iface, "eth1");
  EXPECT_EQ(b.gaps[0].rec.packets, 17u);
  EXPECT_EQ(b.gaps[0].rec.bytes, 4242u);
  EXPECT_EQ(b.gaps[0].rec.reason, GapReason::kSpoolFull);
  EXPECT_EQ(b.gaps[1].iface, "*");
  EXPECT_EQ(b.gaps[1].rec.reason, GapReason::kAgentRestart);
  ASSERT_EQ(b.packets.size(), 2u);
  ASSERT_EQ(b.packets[0].comments.size(), 2u);
  EXPECT_EQ(b.packets[0].comments[0],
            "trawl gap: agent edge1 lost 17 packets (4242 bytes) on interface eth1 between "
            "2026-11-22T10:03:07.000000000Z and 2026-11-22T10:03:12.000000000Z (spool-full)");
  EXPECT_NE(b.packets[0].comments[1].find("all interfaces"), std::string::npos);
  EXPECT_TRUE(b.packets[1].comments.empty());
  ASSERT_EQ(b.stats.size(), 1u);
  EXPECT_EQ(b.stats[0], (testing::StoredStats{"eth1", kT0, 1000, 1, 2}));
}

TEST_F(SegmentWriterTest, ReopenRecoversLastSeqFromTheSeal) {
  {
    auto w = open();
    ASSERT_TRUE(w->begin_batch(9, 41, kIfaces).ok());
    ASSERT_TRUE(w->end_batch().ok());
    ASSERT_TRUE(w->begin_batch(9, 42, kIfaces).ok());
    ASSERT_TRUE(w->end_batch().ok());
    ASSERT_TRUE(w->close().ok());
  }
  auto w = open();
  EXPECT_EQ(w->spool_id(), 9u);
  EXPECT_EQ(w->last_seq(), 42u);
  // Without the SEAL (cut off by hand), a forward scan finds the last BATCH MARK.
  auto path = list_segments(dir(), "edge1").at(0);
  auto seg = read_segment(path);
  std::vector<uint8_t> seal;
  pcapng::encode_trawl_record(seal, *seg.seal);
  fs::resize_file(path, fs::file_size(path) - seal.size());
  auto w2 = open();
  EXPECT_EQ(w2->spool_id(), 9u);
  EXPECT_EQ(w2->last_seq(), 42u);
}

TEST_F(SegmentWriterTest, RecoveryCutsAHalfBatchAndSeals) {
  fs::path part;
  uint64_t durable_size = 0;
  {
    auto w = open();
    ASSERT_TRUE(batch(*w, 1).ok());
    ASSERT_TRUE(batch(*w, 2).ok());
    ASSERT_TRUE(w->sync().ok());
    part = *w->open_segment_path();
    durable_size = fs::file_size(part);
    ASSERT_TRUE(batch(*w, 3).ok());  // buffered only: lost in the "crash"
  }  // destroyed without close()
  ASSERT_EQ(fs::file_size(part), durable_size);
  {  // what a crash in the middle of writing batch 3 leaves behind
    std::vector<uint8_t> half;
    std::vector<uint8_t> d(100, 3);
    pcapng::encode_epb(half, 0, {0, 1, 100, d});
    pcapng::encode_epb(half, 1, {0, 2, 100, d});
    half.resize(half.size() - 37);
    std::ofstream f(part, std::ios::app | std::ios::binary);
    f.write(reinterpret_cast<const char*>(half.data()), static_cast<std::streamsize>(half.size()));
  }
  auto w = open();
  EXPECT_EQ(w->last_seq(), 2u);
  auto files = list_segments(dir(), "edge1");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].filename(), part.filename().replace_extension());
  auto seg = read_segment(files[0]);
  EXPECT_TRUE(seg.clean_end) << seg.error;
  ASSERT_EQ(seg.batches.size(), 2u);
  EXPECT_TRUE(seg.trailing_packets.empty());
  ASSERT_TRUE(seg.seal_is_last);
  EXPECT_EQ(*seg.seal, (pcapng::SealRecord{1, 2, 6, kT0, kT0 + 2}));
  // The writer carries on in a new segment.
  ASSERT_TRUE(batch(*w, 3).ok());
  ASSERT_TRUE(w->close().ok());
  EXPECT_EQ(list_segments(dir(), "edge1").size(), 2u);
}

TEST_F(SegmentWriterTest, RecoveryRemovesAPartWithoutACompleteBatch) {
  {
    auto w = open();
    ASSERT_TRUE(batch(*w, 5).ok());
    ASSERT_TRUE(w->close().ok());
  }
  fs::path part = dir() / "edge1-20261122T110000.000000000Z.pcapng.part";
  {
    std::vector<uint8_t> bytes;
    pcapng::encode_shb(bytes, {});
    pcapng::encode_idb(bytes, kIfaces[0]);
    std::vector<uint8_t> d(100, 3);
    pcapng::encode_epb(bytes, 0, {0, 1, 100, d});
    std::ofstream f(part, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  auto w = open();
  EXPECT_FALSE(fs::exists(part));
  EXPECT_EQ(list_segments(dir(), "edge1").size(), 1u);
  EXPECT_EQ(w->last_seq(), 5u);
  // Names keep growing past the removed part's name.
  ASSERT_TRUE(batch(*w, 6).ok());
  EXPECT_GT(w->open_segment_path()->filename().string(), part.filename().string());
}

TEST_F(SegmentWriterTest, RecoveryRenamesAnAlreadySealedPart) {
  {
    auto w = open();
    ASSERT_TRUE(batch(*w, 1).ok());
    ASSERT_TRUE(w->close().ok());
  }
  auto sealed = list_segments(dir(), "edge1").at(0);
  auto part = sealed;
  part += ".part";
  fs::rename(sealed, part);  // as if the rename had not reached the disk
  auto size = fs::file_size(part);
  auto w = open();
  EXPECT_TRUE(fs::exists(sealed));
  EXPECT_FALSE(fs::exists(part));
  EXPECT_EQ(fs::file_size(sealed), size);  // no second SEAL
  EXPECT_EQ(w->last_seq(), 1u);
}

TEST_F(SegmentWriterTest, RecoveryOfGarbageIsNotFatal) {
  fs::create_directories(dir());
  {
    std::ofstream f(dir() / "edge1-20261122T090000.000000000Z.pcapng.part", std::ios::binary);
    f << "this is not a pcapng file at all";
  }
  {
    std::ofstream f(dir() / "unrelated.txt");
    f << "left alone";
  }
  auto w = open();
  ASSERT_TRUE(w);
  EXPECT_EQ(w->last_seq(), 0u);
  EXPECT_TRUE(list_segments(dir(), "edge1").empty());
  EXPECT_TRUE(fs::exists(dir() / "unrelated.txt"));
}

TEST_F(SegmentWriterTest, RejectsBadAgentNames) {
  for (std::string bad : {"", ".", "..", "a/b"}) {
    auto o = options();
    o.agent = bad;
    EXPECT_FALSE(SegmentWriter::open(o, clock).ok()) << bad;
  }
}

// RLIMIT_FSIZE makes write(2) past the limit fail (EFBIG), like a full disk.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes) {
    ::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit r = saved_;
    r.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() { ::setrlimit(RLIMIT_FSIZE, &saved_); }

 private:
  rlimit saved_{};
};

TEST_F(SegmentWriterTest, WriteErrorRollsBackToTheLastSyncAndStaysUsable) {
  auto w = open();
  ASSERT_TRUE(batch(*w, 1).ok());
  ASSERT_TRUE(w->sync().ok());
  auto part = *w->open_segment_path();
  auto durable = fs::file_size(part);
  ASSERT_TRUE(batch(*w, 2).ok());  // appended, not durable
  {
    FileSizeLimit limit(durable + 1000);
    Status st = batch(*w, 3, 20, 500);  // 10 KB: end_batch writes and fails
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message().find("writing segment edge1-20261122T100312.000000000Z.pcapng.part: "
                                        "File too large"),
              std::string::npos)
        << st.error().message();
    EXPECT_EQ(st.error().sys_errno(), EFBIG);
  }
  EXPECT_EQ(w->last_seq(), 1u);  // batch 2 went back too: it was never durable
  EXPECT_EQ(w->counters().write_errors, 1u);
  EXPECT_EQ(w->counters().packets, 3u);
  EXPECT_EQ(fs::file_size(part), durable);
  {  // sync fails the same way while the condition lasts
    ASSERT_TRUE(batch(*w, 2).ok());
    FileSizeLimit limit(durable + 10);
    EXPECT_FALSE(w->sync().ok());
    EXPECT_EQ(w->last_seq(), 1u);
  }
  // Condition cleared: the agent re-sends 2 and 3.
  ASSERT_TRUE(batch(*w, 2).ok());
  ASSERT_TRUE(batch(*w, 3, 20, 500).ok());
  ASSERT_TRUE(w->sync().ok());
  ASSERT_TRUE(w->close().ok());
  auto seg = read_segment(list_segments(dir(), "edge1").at(0));
  ASSERT_EQ(seg.batches.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_EQ(seg.batches[i].seq, i + 1);
  EXPECT_EQ(seg.packets(), 26u);
}

TEST_F(SegmentWriterTest, FailedSealKeepsTheSegmentOpenAndRetries) {
  auto o = options();
  o.rotate_every_ns = 60 * kNsPerSec;
  auto w = open(o);
  ASSERT_TRUE(batch(*w, 1).ok());
  ASSERT_TRUE(w->sync().ok());
  auto part = *w->open_segment_path();
  clock.advance_ns(60 * kNsPerSec);
  {
    FileSizeLimit limit(fs::file_size(part));
    EXPECT_FALSE(w->tick().ok());
    EXPECT_TRUE(w->open_segment_path());
    EXPECT_EQ(w->counters().segments_sealed, 0u);
  }
  ASSERT_TRUE(w->tick().ok());
  EXPECT_FALSE(w->open_segment_path());
  auto seg = read_segment(list_segments(dir(), "edge1").at(0));
  EXPECT_TRUE(seg.seal_is_last);
  EXPECT_EQ(seg.batches.size(), 1u);
}

TEST_F(SegmentWriterTest, FailureInANewSegmentRemovesIt) {
  auto w = open();
  {
    FileSizeLimit limit(100);
    EXPECT_FALSE(batch(*w, 1, 20, 500).ok());
  }
  EXPECT_FALSE(w->open_segment_path());
  EXPECT_TRUE(fs::is_empty(dir()));
  ASSERT_TRUE(batch(*w, 1).ok());
  ASSERT_TRUE(w->close().ok());
  EXPECT_EQ(read_segment(list_segments(dir(), "edge1").at(0)).batches.size(), 1u);
}

}  // namespace
}  // namespace trawl::store
