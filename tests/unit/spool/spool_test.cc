// Unit tests for the spool: CRC32C, persistence of identity and sequence
// numbers, policy edge cases, recovery from damage, disk errors, and a real
// kill -9 of a child process in the middle of appending.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "spool_test_util.h"

namespace trawl::agent {
namespace {

using test::meta_for;
using test::payload_for;
using test::TempDir;
namespace fs = std::filesystem;

constexpr uint64_t kH = Spool::kFileHeaderBytes;
constexpr uint64_t kR = Spool::kRecordHeaderBytes;

std::unique_ptr<Spool> open_ok(const SpoolOptions& o) {
  auto s = Spool::open(o);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
  return s.ok() ? std::move(*s) : nullptr;
}

AppendOutcome append_ok(Spool& s, uint64_t seq, size_t n) {
  auto p = payload_for(seq, n);
  auto r = s.append(meta_for(seq, n), p);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
  return r.ok() ? *r : AppendOutcome{};
}

std::vector<uint64_t> seqs_of(const std::vector<EntryMeta>& v) {
  std::vector<uint64_t> out;
  for (const auto& m : v) out.push_back(m.seq);
  return out;
}

// Hands out everything unsent; returns the seqs.
std::vector<uint64_t> drain(Spool& s) {
  std::vector<uint64_t> out;
  for (;;) {
    auto e = s.next_unsent();
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message());
    if (!e.ok() || !e->has_value()) return out;
    auto [meta, bytes] = **e;
    EXPECT_EQ(meta, meta_for(meta.seq, bytes.size()));
    auto want = payload_for(meta.seq, bytes.size());
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), want.begin(), want.end())) << meta.seq;
    out.push_back(meta.seq);
  }
}

SpoolOptions options(const TempDir& d, uint64_t max_bytes, uint64_t file_bytes,
                     DropPolicy policy = DropPolicy::kDropNewest) {
  SpoolOptions o;
  o.dir = d.spool();
  o.max_bytes = max_bytes;
  o.file_bytes = file_bytes;
  o.policy = policy;
  return o;
}

// ---------------------------------------------------------------- CRC32C ---

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c(as_bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c({}), 0u);
  // RFC 3720 appendix B.4.
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), inc(32), dec(32);
  for (int i = 0; i < 32; ++i)
    inc[i] = static_cast<uint8_t>(i), dec[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec), 0x113FDB5Cu);
}

TEST(Crc32c, TableMatchesHardwareAndChains) {
  std::mt19937 rng(7);
  // Includes lengths that take the three-stream path (>= 3 x 4096) and its tail.
  for (size_t n : {0, 1, 7, 8, 9, 63, 64, 65, 1000, 4096 + 3, 12287, 12288, 12289, 3 * 12288 + 5, 1 << 20}) {
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    EXPECT_EQ(crc32c(b), spool_detail::crc32c_table(b)) << n;
    size_t cut = n / 3;
    auto s = std::span<const uint8_t>(b);
    EXPECT_EQ(crc32c(s.subspan(cut), crc32c(s.first(cut))), crc32c(b)) << n;
  }
}

// -------------------------------------------------------- identity / seq ---

TEST(Spool, NewSpoolGetsRandomIdThatPersists) {
  TempDir a, b;
  uint64_t id_a;
  {
    auto s = open_ok(options(a, 1 << 20, 64 << 10));
    id_a = s->spool_id();
    EXPECT_NE(id_a, 0u);
    EXPECT_EQ(s->last_seq(), 0u);
    EXPECT_EQ(s->entries(), 0u);
    EXPECT_EQ(s->bytes(), 0u);
  }
  EXPECT_EQ(open_ok(options(a, 1 << 20, 64 << 10))->spool_id(), id_a);
  EXPECT_NE(open_ok(options(b, 1 << 20, 64 << 10))->spool_id(), id_a);
}

TEST(Spool, LastSeqSurvivesRestartWhenEmpty) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  {
    auto s = open_ok(o);
    append_ok(*s, 5, 100);
    append_ok(*s, 9, 100);
    drain(*s);
    ASSERT_TRUE(s->ack(9).ok());
    EXPECT_EQ(s->entries(), 0u);
    EXPECT_EQ(s->bytes(), 0u);
    EXPECT_TRUE(test::spool_files(o.dir).empty());
  }
  auto s = open_ok(o);
  EXPECT_EQ(s->last_seq(), 9u);
  EXPECT_EQ(s->acked_seq(), 9u);
  EXPECT_EQ(s->entries(), 0u);
}

TEST(Spool, RefusedSeqIsConsumedAndPersisted) {
  TempDir d;
  auto o = options(d, 4096, 1024);
  {
    auto s = open_ok(o);
    auto out = append_ok(*s, 3, 10000);  // larger than the whole spool
    EXPECT_FALSE(out.stored);
    EXPECT_EQ(s->last_seq(), 3u);
  }
  EXPECT_EQ(open_ok(o)->last_seq(), 3u);
}

TEST(Spool, SecondOpenOfSameDirectoryFails) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  auto s = open_ok(o);
  auto again = Spool::open(o);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message().find("in use"), std::string::npos) << again.error().message();
  s.reset();
  EXPECT_TRUE(Spool::open(o).ok());
}

TEST(Spool, OpenErrorNamesThePath) {
  TempDir d;
  test::write_file(d.path() / "plainfile", {1, 2, 3});
  SpoolOptions o;
  o.dir = d.path() / "plainfile";
  auto s = Spool::open(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find(o.dir.string()), std::string::npos) << s.error().message();
}

// ------------------------------------------------------------- basic flow ---

TEST(Spool, AppendSendAckRoundTripAndByteAccounting) {
  TempDir d;
  auto s = open_ok(options(d, 1 << 20, 64 << 10));
  EXPECT_TRUE(append_ok(*s, 1, 1000).stored);
  EXPECT_EQ(s->bytes(), kH + kR + 1000);
  EXPECT_TRUE(append_ok(*s, 2, 0).stored);  // empty frames are fine
  EXPECT_EQ(s->bytes(), kH + 2 * kR + 1000);
  EXPECT_EQ(s->oldest_unacked_first_ts(), meta_for(1, 1000).first_ts_ns);
  EXPECT_EQ(s->unsent_entries(), 2u);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(s->unsent_entries(), 0u);
  EXPECT_EQ(s->entries(), 2u);
  s->rewind();
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 2}));
  ASSERT_TRUE(s->ack(1).ok());
  EXPECT_EQ(s->entries(), 1u);
  EXPECT_EQ(s->oldest_unacked_first_ts(), meta_for(2, 0).first_ts_ns);
  EXPECT_EQ(s->bytes(), kH + 2 * kR + 1000);  // the file is freed only when all of it is acked
  ASSERT_TRUE(s->ack(2).ok());
  EXPECT_EQ(s->bytes(), 0u);
  EXPECT_FALSE(s->oldest_unacked_first_ts());
}

TEST(Spool, FilesRotateAtFileBytesAndAreFreedWhole) {
  TempDir d;
  auto o = options(d, 1 << 20, 10'000);
  auto s = open_ok(o);
  for (uint64_t seq = 1; seq <= 10; ++seq) append_ok(*s, seq, 3000);  // 3 records per file
  auto files = test::spool_files(o.dir);
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[0].filename(), "00000000000000000001.spool");
  EXPECT_EQ(files[1].filename(), "00000000000000000004.spool");
  EXPECT_EQ(fs::file_size(files[0]), kH + 3 * (kR + 3000));
  drain(*s);
  ASSERT_TRUE(s->ack(5).ok());  // frees file 1, not file 4 (5 of 4..6 acked)
  EXPECT_EQ(test::spool_files(o.dir).size(), 3u);
  EXPECT_EQ(s->bytes(), 2 * (kH + 3 * (kR + 3000)) + kH + kR + 3000);
  ASSERT_TRUE(s->ack(10).ok());
  EXPECT_TRUE(test::spool_files(o.dir).empty());
}

TEST(Spool, RestartMarksEverythingUnsentAndSkipsAcked) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  {
    auto s = open_ok(o);
    for (uint64_t seq = 1; seq <= 6; ++seq) append_ok(*s, seq, 500);
    drain(*s);
    ASSERT_TRUE(s->ack(2).ok());
  }
  auto s = open_ok(o);
  EXPECT_EQ(s->entries(), 4u);
  EXPECT_EQ(s->unsent_entries(), 4u);
  EXPECT_EQ(s->recovery().entries, 4u);
  EXPECT_EQ(s->recovery().acked_records, 2u);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{3, 4, 5, 6}));
  // New appends after a restart go to a new file.
  append_ok(*s, 7, 10);
  EXPECT_EQ(test::spool_files(o.dir).back().filename(), "00000000000000000007.spool");
}

TEST(Spool, FsyncEachAppendWorks) {
  TempDir d;
  auto o = options(d, 1 << 20, 8 << 10);
  o.fsync_each_append = true;
  auto s = open_ok(o);
  for (uint64_t seq = 1; seq <= 20; ++seq) append_ok(*s, seq, 1000);
  EXPECT_EQ(drain(*s).size(), 20u);
  ASSERT_TRUE(s->ack(20).ok());
  EXPECT_EQ(s->bytes(), 0u);
}

TEST(Spool, FileBytesIsClampedToAQuarterOfMaxBytes) {
  TempDir d;
  auto s = open_ok(options(d, 1 << 20, 1ull << 30));
  EXPECT_EQ(s->file_bytes(), (1u << 20) / 4);
}

// --------------------------------------------------------------- policies ---

TEST(SpoolPolicy, EntryLargerThanTheCapIsRefusedUnderBothPolicies) {
  for (auto policy : {DropPolicy::kDropNewest, DropPolicy::kDropOldest}) {
    TempDir d;
    const uint64_t max = 64 << 10;
    auto s = open_ok(options(d, max, 16 << 10, policy));
    append_ok(*s, 1, 100);
    // Exactly fits an empty spool: header + record == max. Refused here only
    // because seq 1 is there; drop-oldest evicts it.
    auto out = append_ok(*s, 2, max - kH - kR);
    if (policy == DropPolicy::kDropOldest) {
      EXPECT_TRUE(out.stored);
      EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{1}));
      EXPECT_EQ(s->bytes(), max);
    } else {
      EXPECT_FALSE(out.stored);
      EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{2}));
    }
    // One byte more can never fit: refused, and nothing is evicted for it.
    const uint64_t before = s->entries();
    out = append_ok(*s, 3, max - kH - kR + 1);
    EXPECT_FALSE(out.stored);
    ASSERT_EQ(out.dropped.size(), 1u);
    EXPECT_EQ(out.dropped[0], meta_for(3, max - kH - kR + 1));
    EXPECT_EQ(s->entries(), before);
    EXPECT_EQ(s->last_seq(), 3u);
  }
}

TEST(SpoolPolicy, DropNewestRefusesWhenFull) {
  TempDir d;
  auto s = open_ok(options(d, 4 * (kH + kR + 1000), 1, DropPolicy::kDropNewest));
  for (uint64_t seq = 1; seq <= 4; ++seq) EXPECT_TRUE(append_ok(*s, seq, 1000).stored);
  EXPECT_EQ(s->bytes(), s->max_bytes());
  auto out = append_ok(*s, 5, 1000);
  EXPECT_FALSE(out.stored);
  EXPECT_EQ(out.dropped, (std::vector<EntryMeta>{meta_for(5, 1000)}));
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 2, 3, 4}));
  ASSERT_TRUE(s->ack(1).ok());
  EXPECT_TRUE(append_ok(*s, 6, 1000).stored);
}

TEST(SpoolPolicy, DropOldestEvictsOldestUnsentAndReportsTheirMetadata) {
  TempDir d;
  // file_bytes 1: one record per file, so eviction is per entry.
  auto s = open_ok(options(d, 4 * (kH + kR + 1000), 1, DropPolicy::kDropOldest));
  for (uint64_t seq = 1; seq <= 4; ++seq) append_ok(*s, seq, 1000);
  auto out = append_ok(*s, 5, 1000);
  EXPECT_TRUE(out.stored);
  EXPECT_EQ(out.dropped, (std::vector<EntryMeta>{meta_for(1, 1000)}));
  out = append_ok(*s, 6, 2000);  // needs two slots
  EXPECT_TRUE(out.stored);
  EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{4, 5, 6}));
}

TEST(SpoolPolicy, DropOldestNeverEvictsAnInFlightEntry) {
  TempDir d;
  auto s = open_ok(options(d, 4 * (kH + kR + 1000), 1, DropPolicy::kDropOldest));
  for (uint64_t seq = 1; seq <= 4; ++seq) append_ok(*s, seq, 1000);
  // 1 and 2 are being sent: 3 is the oldest evictable.
  ASSERT_EQ((*s->next_unsent())->first.seq, 1u);
  ASSERT_EQ((*s->next_unsent())->first.seq, 2u);
  auto out = append_ok(*s, 5, 1000);
  EXPECT_TRUE(out.stored);
  EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{3}));
  // Everything in flight: nothing can be evicted, the new entry is refused.
  drain(*s);
  out = append_ok(*s, 6, 1000);
  EXPECT_FALSE(out.stored);
  EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{6}));
  EXPECT_EQ(s->entries(), 4u);
  // After a rewind (reconnect) nothing is in flight: the oldest goes.
  s->rewind();
  out = append_ok(*s, 7, 1000);
  EXPECT_TRUE(out.stored);
  EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{1}));
}

TEST(SpoolPolicy, DropOldestSkipsAFileThatHoldsAnInFlightEntry) {
  TempDir d;
  // Two records per file; files [1,2] [3,4] [5,6] [7,8].
  const uint64_t rec = kR + 1000;
  auto s = open_ok(options(d, 4 * (kH + 2 * rec), kH + 2 * rec, DropPolicy::kDropOldest));
  for (uint64_t seq = 1; seq <= 8; ++seq) append_ok(*s, seq, 1000);
  ASSERT_EQ(test::spool_files(d.spool()).size(), 4u);
  ASSERT_EQ((*s->next_unsent())->first.seq, 1u);  // 1 in flight pins file [1,2]
  auto out = append_ok(*s, 9, 1000);
  EXPECT_TRUE(out.stored);
  EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{2, 5, 6, 7, 8, 9}));
}

TEST(SpoolPolicy, DropOldestCountsTheHeaderOfTheFileItWillCreate) {
  TempDir d;
  const uint64_t max = 40000;  // file_bytes = 10000
  auto s = open_ok(options(d, max, max / 4, DropPolicy::kDropOldest));
  append_ok(*s, 1, 35000 - kH - kR);  // a file of exactly 35000 bytes, in flight below
  append_ok(*s, 2, 100);              // the active file, 188 bytes
  ASSERT_EQ(test::spool_files(d.spool()).size(), 2u);
  ASSERT_EQ((*s->next_unsent())->first.seq, 1u);
  // Evicting file 2 leaves 35000 + 5000 == max, but the new record then
  // needs a new file and its 40-byte header: it cannot fit, so nothing is evicted.
  auto out = append_ok(*s, 3, 5000 - kR);
  EXPECT_FALSE(out.stored);
  EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{3}));
  EXPECT_EQ(s->entries(), 2u);
  EXPECT_LE(s->bytes(), max);
}

TEST(SpoolPolicy, AckOfUnknownOrOldSeqIsHarmless) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  auto s = open_ok(o);
  ASSERT_TRUE(s->ack(0).ok());
  for (uint64_t seq = 10; seq <= 14; ++seq) append_ok(*s, seq, 100);
  ASSERT_TRUE(s->ack(3).ok());  // below everything
  ASSERT_TRUE(s->ack(11).ok());
  ASSERT_TRUE(s->ack(11).ok());  // repeated
  ASSERT_TRUE(s->ack(7).ok());   // older than the ack point
  EXPECT_EQ(s->acked_seq(), 11u);
  EXPECT_EQ(s->last_seq(), 14u);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{12, 13, 14}));
  s->rewind();
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{12, 13, 14}));
}

// The collector says it holds more than we ever appended: our tail was lost
// in a machine crash, or the spool directory was wiped. Everything we have is
// acked and those seqs are never reused.
TEST(SpoolPolicy, AckBeyondLastSeqAcksAllAndRaisesLastSeq) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  {
    auto s = open_ok(o);
    for (uint64_t seq = 1; seq <= 3; ++seq) append_ok(*s, seq, 100);
    ASSERT_TRUE(s->ack(1000).ok());
    EXPECT_EQ(s->acked_seq(), 1000u);
    EXPECT_EQ(s->last_seq(), 1000u);
    EXPECT_EQ(s->entries(), 0u);
    EXPECT_EQ(s->bytes(), 0u);
  }
  auto s = open_ok(o);
  EXPECT_EQ(s->last_seq(), 1000u);
  EXPECT_TRUE(append_ok(*s, 1001, 100).stored);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1001}));
}

TEST(SpoolPolicy, AckOfUnsentEntryRemovesItAndKeepsInFlightCountRight) {
  TempDir d;
  auto s = open_ok(options(d, 1 << 20, 64 << 10));
  for (uint64_t seq = 1; seq <= 5; ++seq) append_ok(*s, seq, 100);
  ASSERT_TRUE(s->next_unsent().ok());  // 1 in flight
  ASSERT_TRUE(s->ack(3).ok());         // 2 and 3 were never sent here
  EXPECT_EQ(s->entries(), 2u);
  EXPECT_EQ(s->unsent_entries(), 2u);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{4, 5}));
}

// --------------------------------------------------------------- recovery ---

TEST(SpoolRecovery, CorruptRecordInOlderFileIsCutThere) {
  TempDir d;
  auto o = options(d, 1 << 20, 3 * (kR + 1000) + kH);
  {
    auto s = open_ok(o);
    for (uint64_t seq = 1; seq <= 6; ++seq) append_ok(*s, seq, 1000);
  }
  auto files = test::spool_files(o.dir);
  ASSERT_EQ(files.size(), 2u);
  auto bytes = test::read_file(files[0]);
  bytes[kH + (kR + 1000) + kR + 10] ^= 0x40;  // payload of seq 2
  test::write_file(files[0], bytes);
  auto s = open_ok(o);
  EXPECT_EQ(s->recovery().truncated_files, 1u);
  EXPECT_EQ(s->recovery().truncated_bytes, 2 * (kR + 1000));
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 4, 5, 6}));
  EXPECT_EQ(s->last_seq(), 6u);
}

TEST(SpoolRecovery, ValidRecordOutOfOrderIsCut) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  {
    auto s = open_ok(o);
    for (uint64_t seq = 1; seq <= 3; ++seq) append_ok(*s, seq, 100);
  }
  auto file = test::spool_files(o.dir)[0];
  auto bytes = test::read_file(file);
  // A second, intact copy of record 2 after record 3.
  bytes.insert(bytes.end(), bytes.begin() + kH + (kR + 100), bytes.begin() + kH + 2 * (kR + 100));
  test::write_file(file, bytes);
  auto s = open_ok(o);
  EXPECT_EQ(s->recovery().truncated_bytes, kR + 100);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 2, 3}));
}

TEST(SpoolRecovery, CorruptStateIsRebuiltFromFiles) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  uint64_t id;
  {
    auto s = open_ok(o);
    id = s->spool_id();
    for (uint64_t seq = 1; seq <= 3; ++seq) append_ok(*s, seq, 100);
  }
  test::write_file(o.dir / "state", std::vector<uint8_t>(128, 0xAB));
  auto s = open_ok(o);
  EXPECT_TRUE(s->recovery().state_rebuilt);
  EXPECT_EQ(s->spool_id(), id);
  EXPECT_EQ(s->last_seq(), 3u);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 2, 3}));
  auto st = test::parse_state(o.dir);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->spool_id, id);
}

TEST(SpoolRecovery, OneTornStateSlotFallsBackToTheOther) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  {
    auto s = open_ok(o);
    for (uint64_t seq = 1; seq <= 4; ++seq) append_ok(*s, seq, 100);
  }
  auto before = test::parse_state(o.dir);
  ASSERT_TRUE(before);
  auto bytes = test::read_file(o.dir / "state");
  bytes[(before->generation % 2) * 64 + 33] ^= 1;  // tear the newest slot
  test::write_file(o.dir / "state", bytes);
  auto s = open_ok(o);
  EXPECT_FALSE(s->recovery().state_rebuilt);
  EXPECT_EQ(s->last_seq(), 4u);  // the older slot said 3; the files say 4
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 2, 3, 4}));
}

TEST(SpoolRecovery, FileFromAnotherSpoolIsAnError) {
  TempDir a, b;
  auto oa = options(a, 1 << 20, 64 << 10);
  auto ob = options(b, 1 << 20, 64 << 10);
  append_ok(*open_ok(oa), 100, 10);
  append_ok(*open_ok(ob), 1, 10);
  fs::copy(test::spool_files(oa.dir)[0], ob.dir);
  auto s = Spool::open(ob);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("belongs to spool"), std::string::npos) << s.error().message();
}

TEST(SpoolRecovery, StrayFilesAreIgnoredAndJunkFilesRemoved) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  append_ok(*open_ok(o), 1, 10);
  test::write_file(o.dir / "README", {1, 2});
  test::write_file(o.dir / "00000000000000000050.spool", {1, 2, 3});  // torn creation
  test::write_file(o.dir / "state.tmp", {9});
  auto s = open_ok(o);
  EXPECT_EQ(s->recovery().removed_files, 1u);
  EXPECT_TRUE(fs::exists(o.dir / "README"));
  EXPECT_FALSE(fs::exists(o.dir / "state.tmp"));
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1}));
}

// ------------------------------------------------------------ disk errors ---

// RLIMIT_FSIZE makes writes past a size fail with EFBIG: a disk error we can
// cause without root or a small filesystem.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old_);
    rlimit r = old_;
    r.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old_);
    signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  sighandler_t old_handler_;
};

TEST(SpoolDiskErrors, FailedAppendReportsPathAndLeavesSpoolConsistent) {
  TempDir d;
  auto o = options(d, 1 << 20, 256 << 10);
  auto s = open_ok(o);
  append_ok(*s, 1, 1000);
  const uint64_t bytes_before = s->bytes();
  {
    FileSizeLimit limit(kH + kR + 1000 + 500);  // the next record is written halfway
    auto r = s->append(meta_for(2, 1000), payload_for(2, 1000));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("00000000000000000001.spool"), std::string::npos)
        << r.error().message();
    EXPECT_NE(r.error().message().find("File too large"), std::string::npos) << r.error().message();
  }
  EXPECT_EQ(s->last_seq(), 2u);  // consumed
  EXPECT_EQ(s->bytes(), bytes_before);
  EXPECT_EQ(fs::file_size(test::spool_files(o.dir)[0]), bytes_before);  // partial record cut off
  append_ok(*s, 3, 1000);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 3}));
  s.reset();
  s = open_ok(o);
  EXPECT_EQ(s->recovery().truncated_bytes, 0u);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 3}));
}

TEST(SpoolDiskErrors, EvictionsBeforeAFailedWriteAreReportedByTheNextAppend) {
  TempDir d;
  auto o = options(d, 2 * (kH + kR + 1000), 1, DropPolicy::kDropOldest);
  auto s = open_ok(o);
  append_ok(*s, 1, 1000);
  append_ok(*s, 2, 1000);
  {
    FileSizeLimit limit(200);  // the state file (128 bytes) fits, a new record does not
    auto r = s->append(meta_for(3, 1000), payload_for(3, 1000));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("00000000000000000003.spool"), std::string::npos)
        << r.error().message();
  }
  EXPECT_FALSE(fs::exists(o.dir / "00000000000000000003.spool"));
  EXPECT_EQ(s->entries(), 1u);  // seq 1 was evicted for seq 3
  auto out = append_ok(*s, 4, 1000);
  EXPECT_TRUE(out.stored);
  EXPECT_EQ(seqs_of(out.dropped), (std::vector<uint64_t>{1}));
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{2, 4}));
}

// ---------------------------------------------------------------- kill -9 ---

// A child appends as fast as it can and reports each seq on a pipe once
// append() returned; the parent kills it with SIGKILL at a random moment.
// Every reported seq must be recovered, intact and in order; the only other
// seq that may appear is the one whose append was under way.
TEST(SpoolKill, NothingAppendedIsLostOnKill9) {
  std::mt19937 rng(42);
  int torn = 0, unreported_kept = 0;
  for (int round = 0; round < 20; ++round) {
    TempDir d;
    auto o = options(d, 64 << 20, 8 << 20,
                     round % 2 ? DropPolicy::kDropOldest : DropPolicy::kDropNewest);
    o.fdatasync_on_rotate = false;  // irrelevant to kill -9; the kill would mostly land in it
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      auto s = Spool::open(o);
      if (!s.ok()) _exit(2);
      std::mt19937 crng(static_cast<unsigned>(round));
      for (uint64_t seq = 1;; ++seq) {
        size_t n = crng() % (2 << 20);  // big frames: the kill often lands mid-write
        auto p = payload_for(seq, n);
        auto r = (*s)->append(meta_for(seq, n), p);
        if (!r.ok()) _exit(3);
        if (r->stored) {
          if (write(fds[1], &seq, sizeof seq) != sizeof seq) _exit(4);
        }
        if (seq % 8 == 0) (void)(*s)->ack(seq - 4);  // keep the spool from filling
      }
    }
    close(fds[1]);
    std::vector<uint64_t> reported;
    uint64_t seq;
    if (read(fds[0], &seq, sizeof seq) == sizeof seq) reported.push_back(seq);  // it is running
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    while (read(fds[0], &seq, sizeof seq) == sizeof seq) reported.push_back(seq);
    close(fds[0]);
    ASSERT_FALSE(reported.empty());

    auto s = open_ok(o);
    ASSERT_TRUE(s);
    EXPECT_GE(s->last_seq(), reported.back());
    auto got = drain(*s);  // also checks every payload byte
    // Reported seqs above the ack point must all be there; at most one more.
    std::vector<uint64_t> want;
    for (uint64_t r : reported)
      if (r > s->acked_seq()) want.push_back(r);
    ASSERT_GE(got.size(), want.size());
    ASSERT_LE(got.size(), want.size() + 1);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin())) << "round " << round;
    if (got.size() == want.size() + 1) {
      EXPECT_EQ(got.back(), reported.back() + 1);
      ++unreported_kept;
    }
    torn += s->recovery().truncated_bytes > 0;
  }
  // How often the kill landed mid-write (a torn record was cut) and between
  // the write and the report; for the curious, not asserted (timing-dependent).
  RecordProperty("torn_tails", torn);
  RecordProperty("unreported_but_kept", unreported_kept);
}

}  // namespace
}  // namespace trawl::agent
