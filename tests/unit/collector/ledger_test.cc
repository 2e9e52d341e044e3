// LedgerBook -> ledger.tsv -> read_ledger -> coverage: counts land in the
// right minute and interface, rollbacks forget, crashes leave readable files.
#include "collector/ledger.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace trawl::collector {
namespace {

constexpr uint64_t kM = kMinuteNs;
constexpr uint64_t kT0 = 1'795'000'000ull * 1'000'000'000ull - (1'795'000'000ull * 1'000'000'000ull) % kM;  // a minute start

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ledger-test-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    file_ = dir_ / kLedgerFileName;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<LedgerBook> open() {
    auto b = LedgerBook::open(file_, false);
    EXPECT_TRUE(b.ok()) << b.error().message();
    return std::move(*b);
  }
  LedgerTable table() {
    auto t = read_ledger(file_);
    EXPECT_TRUE(t.ok());
    return *t;
  }

  std::filesystem::path dir_, file_;
  std::vector<InterfaceInfo> ifaces_{{"eth0", 1, 262144}, {"eth1", 1, 262144}};
};

TEST_F(LedgerTest, CountsPacketsGapsAndReportsPerMinuteAndInterface) {
  auto b = open();
  b->begin_batch(ifaces_);
  b->packet(0, kT0 + 1, 100);
  b->packet(1, kT0 + 2, 200);
  b->packet(0, kT0 + kM + 5, 50);  // next minute (a batch from elsewhere may span minutes)
  b->stats(InterfaceStats{0, kT0 + 10});
  b->gap(Gap{0xffff, kT0 + kM + 1, kT0 + kM + 9, 7, 700, GapReason::kSpoolFull});
  b->gap(Gap{1, kT0 + 2 * kM - 1, kT0 + 2 * kM + 5, 3, 0, GapReason::kKernelDrop});  // counted where reported
  b->gap(Gap{0, kT0, kT0, 2, 0, GapReason::kAgentRestart});
  b->end_batch();
  b->commit();
  ASSERT_TRUE(b->write(1, 5, kT0, true).ok());
  auto t = table();
  EXPECT_EQ(t.bad_lines, 0u);
  auto at = [&](uint64_t m, const char* i) { return t.rows[LedgerKey{m, i}]; };
  EXPECT_EQ(at(kT0, "eth0").stored_packets, 1u);
  EXPECT_EQ(at(kT0, "eth0").stored_bytes, 100u);
  EXPECT_EQ(at(kT0, "eth0").reports, 1u);
  EXPECT_EQ(at(kT0, "eth0").other_drops, 2u);
  EXPECT_EQ(at(kT0, "eth1").stored_packets, 1u);
  EXPECT_EQ(at(kT0 + kM, "eth0").stored_packets, 1u);
  EXPECT_EQ(at(kT0 + kM, "*").agent_drops, 7u);
  EXPECT_EQ(at(kT0 + kM, "*").agent_drop_bytes, 700u);
  EXPECT_EQ(at(kT0 + 2 * kM, "eth1").kernel_drops, 3u);
}

TEST_F(LedgerTest, RollbackForgetsWhatWasNotCommittedAndWritesAreDeltas) {
  auto b = open();
  for (int round = 0; round < 2; ++round) {
    b->begin_batch(ifaces_);
    b->packet(0, kT0 + 1, 10);
    b->end_batch();
    b->commit();
  }
  b->begin_batch(ifaces_);
  b->packet(0, kT0 + 1, 10);
  b->end_batch();
  b->rollback();  // the writer rolled this batch back; it will be re-sent
  ASSERT_TRUE(b->write(1, 2, kT0, false).ok());
  b->begin_batch(ifaces_);
  b->packet(0, kT0 + 2, 10);
  b->end_batch();
  b->commit();
  ASSERT_TRUE(b->write(1, 3, kT0, true).ok());
  EXPECT_FALSE(b->dirty());
  EXPECT_EQ((table().rows[LedgerKey{kT0, "eth0"}].stored_packets), 3u);
  // A reopened ledger knows where it stopped.
  b.reset();
  auto again = open();
  EXPECT_EQ(again->last_spool_id(), 1u);
  EXPECT_EQ(again->last_seq(), 3u);
}

TEST_F(LedgerTest, ATornLastLineIsSkippedAndTheNextWriteStartsOnANewLine) {
  {
    auto b = open();
    b->begin_batch(ifaces_);
    b->packet(0, kT0 + 1, 10);
    b->end_batch();
    b->commit();
    ASSERT_TRUE(b->write(1, 1, kT0, true).ok());
  }
  { std::ofstream(file_, std::ios::app) << "D\t1795000020\teth0\t99"; }  // crash mid-line
  auto b = open();
  b->begin_batch(ifaces_);
  b->packet(0, kT0 + 2, 10);
  b->end_batch();
  b->commit();
  ASSERT_TRUE(b->write(1, 2, kT0, true).ok());
  auto t = table();
  EXPECT_EQ(t.bad_lines, 1u);
  EXPECT_EQ((t.rows[LedgerKey{kT0, "eth0"}].stored_packets), 2u);
}

TEST_F(LedgerTest, CoverageSaysCompleteOnlyWithReportsAndNoLoss) {
  auto b = open();
  b->begin_batch(ifaces_);
  b->packet(0, kT0 + 1, 10);
  b->stats(InterfaceStats{0, kT0 + 1});
  b->stats(InterfaceStats{0, kT0 + kM + 1});      // minute 2: quiet but reported
  b->gap(Gap{0xffff, kT0 + 3 * kM, kT0 + 3 * kM, 4, 40, GapReason::kSpoolFull});  // minute 4: loss
  b->end_batch();
  b->commit();
  b->mark_uncertain(kT0 + 4 * kM + 1, kT0 + 4 * kM + 2, "test");
  ASSERT_TRUE(b->write(1, 1, kT0, true).ok());
  auto t = table();
  // minute 3 has nothing at all: no reports, not complete.
  auto r = coverage(t, "edge1", kT0 + 5, kT0 + 5 * kM - 1);
  ASSERT_EQ(r.rows.size(), 5u);
  EXPECT_EQ(r.rows[0].status, MinuteStatus::kComplete);
  EXPECT_EQ(r.rows[1].status, MinuteStatus::kComplete);
  EXPECT_EQ(r.rows[2].status, MinuteStatus::kNoReports);
  EXPECT_EQ(r.rows[3].status, MinuteStatus::kLoss);
  EXPECT_EQ(r.rows[4].status, MinuteStatus::kUncertain);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.total.agent_drops, 4u);
  EXPECT_TRUE(coverage(t, "edge1", kT0, kT0 + 2 * kM).complete);
  // The JSON and the table agree on the verdict.
  auto j = nlohmann::json::parse(coverage_json(r));
  EXPECT_EQ(j["complete"], false);
  EXPECT_EQ(j["no_reports"].size(), 1u);
  EXPECT_EQ(j["total"]["agent_dropped_packets"], 4u);
  EXPECT_NE(coverage_table(coverage_json(r)).find("INCOMPLETE"), std::string::npos);
  EXPECT_NE(coverage_table(coverage_json(coverage(t, "edge1", kT0, kT0 + 2 * kM))).find("COMPLETE for"),
            std::string::npos);
}

TEST_F(LedgerTest, MalformedLinesAreReportedNotFatal) {
  { std::ofstream(file_) << "# header\nD\tx\teth0\t1\t1\t0\t0\t0\t0\t1\nZ\t1\nD\t1795000020\teth0\t1\t1\t0\t0\t0\t0\t1\n"; }
  auto t = table();
  EXPECT_EQ(t.bad_lines, 2u);
  EXPECT_EQ(t.rows.size(), 1u);
}

}  // namespace
}  // namespace trawl::collector
