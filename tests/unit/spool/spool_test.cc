// Unit tests for the spool: CRC32C, persistence of identity and sequence
// numbers, policy edge cases, recovery from damage, disk errors, and a real
// kill -9 of a child process in the middle of appending.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

// The spool holds captured traffic: only the agent's user may read it.
TEST(Spool, FilesAndANewDirectoryAreOwnerOnly) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  {
    auto s = open_ok(o);
    auto payload = payload_for(1, 1000);
    ASSERT_TRUE(s->append(meta_for(1, payload.size()), payload).ok());
  }
  namespace fs = std::filesystem;
  EXPECT_EQ(fs::status(o.dir).permissions() & fs::perms::all, fs::perms::owner_all);
  int files = 0;
  for (const auto& e : fs::directory_iterator(o.dir)) {
    EXPECT_EQ(e.status().permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write)
        << e.path();
    ++files;
  }
  EXPECT_GE(files, 2);  // state + one spool file
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

// ------------------------------------------------------------------ reuse ---

ino_t inode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_ino;
}

TEST(SpoolReuse, AckedFilesBecomeSparesAndAreOverwrittenInPlace) {
  for (bool fsync_each : {false, true}) {
    SCOPED_TRACE(fsync_each ? "fsync_each_append" : "default");
    TempDir d;
    auto o = options(d, 1 << 20, 10'000);
    o.fsync_each_append = fsync_each;
    auto s = open_ok(o);
    for (uint64_t seq = 1; seq <= 9; ++seq) append_ok(*s, seq, 3000);  // [1-3] [4-6] [7-9]
    drain(*s);
    ASSERT_TRUE(s->ack(6).ok());
    EXPECT_EQ(test::spool_files(o.dir).size(), 1u);
    auto spares = test::spare_files(o.dir);
    ASSERT_EQ(spares.size(), 2u);
    EXPECT_EQ(spares[0].filename(), "00000000000000000001.spare");
    EXPECT_EQ(spares[1].filename(), "00000000000000000004.spare");
    const uint64_t full = kH + 3 * (kR + 3000);
    EXPECT_EQ(s->bytes(), full);
    EXPECT_EQ(s->disk_bytes(), 3 * full);
    EXPECT_EQ(test::disk_bytes(o.dir), 3 * full);

    // The next file is the newest spare, renamed and overwritten in place:
    // same inode, still its old length; only the records written count.
    const ino_t spare_ino = inode_of(spares[1]);
    const uint32_t spare_nonce = test::parse_spool_file(spares[1]).nonce;
    append_ok(*s, 10, 1000);
    const fs::path f10 = o.dir / "00000000000000000010.spool";
    ASSERT_TRUE(fs::exists(f10));
    EXPECT_EQ(inode_of(f10), spare_ino);
    EXPECT_EQ(fs::file_size(f10), full);
    EXPECT_EQ(test::spare_files(o.dir).size(), 1u);
    EXPECT_EQ(s->bytes(), full + kH + kR + 1000);
    EXPECT_EQ(s->disk_bytes(), 3 * full);
    auto df = test::parse_spool_file(f10);
    EXPECT_EQ(df.version, 2u);
    EXPECT_NE(df.nonce, spare_nonce);  // drawn anew (equal with probability 2^-32)
    ASSERT_EQ(df.records.size(), 1u);
    EXPECT_EQ(df.records[0].meta, meta_for(10, 1000));
    EXPECT_EQ(df.end, kH + kR + 1000);
    EXPECT_EQ(drain(*s), (std::vector<uint64_t>{10}));

    // Everything acked: two spares kept, the rest deleted.
    ASSERT_TRUE(s->ack(10).ok());
    EXPECT_TRUE(test::spool_files(o.dir).empty());
    EXPECT_EQ(test::spare_files(o.dir).size(), 2u);
    EXPECT_EQ(s->bytes(), 0u);
    EXPECT_EQ(s->disk_bytes(), test::disk_bytes(o.dir));
  }
}

TEST(SpoolReuse, SpareFilesZeroDeletesAckedFiles) {
  TempDir d;
  auto o = options(d, 1 << 20, 10'000);
  o.spare_files = 0;
  auto s = open_ok(o);
  for (uint64_t seq = 1; seq <= 9; ++seq) append_ok(*s, seq, 3000);
  drain(*s);
  ASSERT_TRUE(s->ack(9).ok());
  EXPECT_TRUE(test::spool_files(o.dir).empty());
  EXPECT_TRUE(test::spare_files(o.dir).empty());
  EXPECT_EQ(s->disk_bytes(), 0u);
}

TEST(SpoolReuse, StaleTailIsCutOnRotationAndOnClose) {
  TempDir d;
  auto o = options(d, 1 << 20, 10'000);
  const fs::path f9 = o.dir / "00000000000000000009.spool";
  {
    auto s = open_ok(o);
    for (uint64_t seq = 1; seq <= 3; ++seq) append_ok(*s, seq, 3000);  // one full file...
    ASSERT_TRUE(s->ack(3).ok());                                       // ...now a spare
    // Reused for smaller records, then rotated away: [4-7] [8].
    for (uint64_t seq = 4; seq <= 8; ++seq) append_ok(*s, seq, 2000);
    auto files = test::spool_files(o.dir);
    ASSERT_EQ(files.size(), 2u);
    auto rotated = test::parse_spool_file(files[0]);
    EXPECT_TRUE(rotated.clean) << rotated.name;  // it was 9184 bytes long
    EXPECT_EQ(rotated.size, kH + 4 * (kR + 2000));
    // Both freed; the newest spare (file 8, 2088 bytes) takes seq 9.
    ASSERT_TRUE(s->ack(8).ok());
    append_ok(*s, 9, 500);
    auto active = test::parse_spool_file(f9);
    EXPECT_FALSE(active.clean);
    EXPECT_EQ(active.size, kH + kR + 2000);
    EXPECT_EQ(active.end, kH + kR + 500);
    EXPECT_EQ(s->disk_bytes(), test::disk_bytes(o.dir));
  }
  // A clean close leaves the active file as long as its records.
  auto closed = test::parse_spool_file(f9);
  EXPECT_TRUE(closed.clean);
  EXPECT_EQ(closed.size, kH + kR + 500);
  auto s = open_ok(o);
  EXPECT_EQ(s->recovery().truncated_bytes, 0u);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{9}));
}

TEST(SpoolReuse, LeftoverSparesAreAdoptedUpToTheLimit) {
  TempDir d;
  auto o = options(d, 1 << 20, 10'000);
  open_ok(o);  // creates the directory and state
  for (int i = 1; i <= 4; ++i)
    test::write_file(o.dir / ("0000000000000000000" + std::to_string(i) + ".spare"),
                     std::vector<uint8_t>(5000, static_cast<uint8_t>(i)));
  test::write_file(o.dir / "00000000000000000005.spare", std::vector<uint8_t>(20'001, 5));  // > 2 × file_bytes
  fs::create_directory(o.dir / "00000000000000000006.spare");  // not a file: left alone
  auto s = open_ok(o);
  auto spares = test::spare_files(o.dir);
  ASSERT_EQ(spares.size(), 3u);
  EXPECT_EQ(spares[0].filename(), "00000000000000000003.spare");
  EXPECT_EQ(spares[1].filename(), "00000000000000000004.spare");
  EXPECT_TRUE(fs::is_directory(spares[2]));
  EXPECT_EQ(s->disk_bytes(), 2 * 5000u);
  const ino_t newest = inode_of(spares[1]);
  append_ok(*s, 1, 100);
  EXPECT_EQ(inode_of(o.dir / "00000000000000000001.spool"), newest);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1}));
  s.reset();
  fs::remove(o.dir / "00000000000000000006.spare");
  EXPECT_EQ(test::parse_spool_file(o.dir / "00000000000000000001.spool").size, kH + kR + 100);
}

// Writes into a nearly full spool delete spares (and would cut the stale
// tail) before the directory passes max_bytes; bytes() is as without reuse.
TEST(SpoolReuse, DiskUseStaysWithinMaxBytes) {
  TempDir d;
  const uint64_t max = 40'000;
  auto o = options(d, max, 10'000);
  auto s = open_ok(o);
  for (uint64_t seq = 1; seq <= 6; ++seq) append_ok(*s, seq, 3000);  // [1-3] [4-6]
  ASSERT_TRUE(s->ack(6).ok());
  ASSERT_EQ(test::spare_files(o.dir).size(), 2u);
  uint64_t seq = 7, refused = 0;
  while (refused < 3) {
    auto out = append_ok(*s, seq, 100 + (seq * 977) % 2900);
    refused += !out.stored;
    ASSERT_EQ(s->disk_bytes(), test::disk_bytes(o.dir)) << seq;
    ASSERT_LE(test::disk_bytes(o.dir), max) << seq;
    ASSERT_LE(s->bytes(), max);
    ++seq;
  }
  EXPECT_TRUE(test::spare_files(o.dir).empty());
  EXPECT_GT(s->bytes(), max - 3000 - kH - kR);  // full by the same rule as before
}

// The torn-write cases of a reused file. The spare is an acked file of seqs
// 1..5 (frames of 1000 bytes), one of which carries a record planted by
// captured traffic; a child process reuses it for seqs 6.. and is killed
// (it exits without closing the spool, which is what a kill -9 leaves: the
// page cache outlives the process). Then the file is damaged the way a torn
// write, or a machine crash that wrote back only some of its pages, would
// leave it, and the spool reopened.
class SpoolStaleTail : public ::testing::Test {
 protected:
  static constexpr size_t kOld = 1000;
  static constexpr size_t kPlantAt = 600;  // in the payload of old record 1
  static constexpr uint64_t kPlantedSeq = 1'000'000;

  void SetUp() override {
    o_ = options(d_, 1 << 20, 64 << 10);
    auto s = open_ok(o_);
    for (uint64_t seq = 1; seq <= 5; ++seq) {
      std::vector<uint8_t> frame = old_frame(seq);
      if (seq == 1) {
        auto planted = planted_record();
        std::copy(planted.begin(), planted.end(), frame.begin() + kPlantAt);
      }
      auto r = s->append(meta_for(seq, kOld), frame);
      ASSERT_TRUE(r.ok() && r->stored);
    }
    ASSERT_TRUE(s->ack(5).ok());
    s.reset();
    auto spares = test::spare_files(o_.dir);
    ASSERT_EQ(spares.size(), 1u);
    spare_ = test::read_file(spares[0]);
    ASSERT_EQ(spare_.size(), kH + 5 * (kR + kOld));
    spare_nonce_ = test::parse_spool_file(spares[0]).nonce;
    spare_ino_ = inode_of(spares[0]);
  }

  // Old payloads differ from the new ones at every byte (payload_for's
  // differ only where the seq is stamped), so a torn new record never
  // happens to be completed by the old bytes.
  static std::vector<uint8_t> old_frame(uint64_t seq) {
    std::vector<uint8_t> frame = payload_for(seq, kOld);
    for (auto& b : frame) b ^= 0x5A;
    return frame;
  }

  // A record with a seq far above ours and a CRC valid in a file of this
  // version and nonce: what captured traffic could carry in a batch, since
  // frames hold raw packet bytes. Traffic cannot know the nonce of the file
  // its bytes will lie in, so the spare's holds one made for version 1.
  static std::vector<uint8_t> planted_record(uint32_t version = 1, uint32_t nonce = 0) {
    const std::vector<uint8_t> payload(16, 0xAB);
    return test::record_bytes(version, nonce, EntryMeta{kPlantedSeq, 1, 16, 0, 0}, payload);
  }

  // Appends seqs 6, 7, ... with these frame sizes in a child that is then
  // killed; returns the reused file's bytes.
  std::vector<uint8_t> kill_after(std::vector<size_t> sizes) {
    pid_t pid = fork();
    if (pid == 0) {
      auto s = Spool::open(o_);
      if (!s.ok()) _exit(2);
      uint64_t seq = 6;
      for (size_t n : sizes) {
        auto p = payload_for(seq, n);
        auto r = (*s)->append(meta_for(seq, n), p);
        if (!r.ok() || !r->stored) _exit(3);
        ++seq;
      }
      _exit(0);  // no destructor: the stale tail stays
    }
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    EXPECT_TRUE(test::spare_files(o_.dir).empty());
    EXPECT_EQ(inode_of(file()), spare_ino_);  // reused, not created
    return test::read_file(file());
  }

  // A write of seqs 6 and 7 torn at byte k: the new bytes before k, the
  // spare's from k on. A kill -9 in the middle of the write leaves that, and
  // so does a machine crash after which the pages from k on hold what the
  // disk had before (nothing is written past a record's end, so there is no
  // mark a crash could lose). Every whole new record is kept, nothing else,
  // wherever k falls.
  void expect_torn_writes_keep_the_whole_new_records(std::vector<size_t> sizes) {
    ASSERT_EQ(sizes.size(), 2u);
    auto bytes = kill_after(sizes);
    const uint64_t end6 = end_after({sizes[0]}), end7 = end_after(sizes);
    for (uint64_t k : tear_points(end6, end7)) {
      SCOPED_TRACE("torn at byte " + std::to_string(k));
      std::vector<uint8_t> torn(bytes.begin(), bytes.begin() + k);
      torn.insert(torn.end(), spare_.begin() + k, spare_.end());
      test::write_file(file(), torn);
      std::vector<uint64_t> want;
      if (k >= end6) want.push_back(6);
      if (k >= end7) want.push_back(7);
      auto s = open_ok(o_);
      ASSERT_TRUE(s);
      EXPECT_EQ(drain(*s), want);
      EXPECT_EQ(s->last_seq(), 7u);  // the state said so before the write
      if (want.empty()) {
        EXPECT_FALSE(fs::exists(file()));
      } else {
        EXPECT_EQ(fs::file_size(file()), want.size() == 1 ? end6 : end7);
      }
    }
  }

  // Cut points for a write of seqs 6 and 7 (ending at end6, end7): in the
  // file header, in record 6's header and payload, in record 7's, and at
  // their ends.
  static std::vector<uint64_t> tear_points(uint64_t end6, uint64_t end7) {
    return {0,        1,        8,        24,        32,       36,          39,      kH,
            kH + 1,   kH + 4,   kH + 8,   kH + 16,   kH + 44,  kH + kR - 1, kH + kR, kH + kR + 300,
            end6 - 1, end6,     end6 + 1, end6 + 4,  end6 + 8, end6 + 44,   end6 + kR,
            end7 - 1, end7};
  }

  fs::path file() const { return o_.dir / "00000000000000000006.spool"; }
  static uint64_t end_after(std::vector<size_t> sizes) {
    uint64_t end = kH;
    for (size_t n : sizes) end += kR + n;
    return end;
  }

  TempDir d_;
  SpoolOptions o_;
  std::vector<uint8_t> spare_;
  uint32_t spare_nonce_ = 0;
  ino_t spare_ino_ = 0;
};

TEST_F(SpoolStaleTail, KillLeavesAStaleTailThatOpenCuts) {
  auto bytes = kill_after({600, 600});
  const uint64_t end = end_after({600, 600});
  ASSERT_EQ(bytes.size(), spare_.size());  // nothing freed, nothing allocated
  // Only the header and records were written; after them the spare's bytes
  // are as they were. The file has a nonce of its own.
  EXPECT_TRUE(std::equal(bytes.begin() + end, bytes.end(), spare_.begin() + end));
  auto df = test::parse_spool_file(file());
  EXPECT_EQ(df.version, 2u);
  EXPECT_NE(df.nonce, spare_nonce_);  // equal with probability 2^-32
  EXPECT_EQ(df.end, end);
  auto s = open_ok(o_);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{6, 7}));
  EXPECT_EQ(s->last_seq(), 7u);
  EXPECT_EQ(s->recovery().truncated_files, 1u);
  EXPECT_EQ(s->recovery().truncated_bytes, spare_.size() - end);
  EXPECT_EQ(fs::file_size(file()), end);
  EXPECT_EQ(s->disk_bytes(), test::disk_bytes(o_.dir));
}

// Killed after the rename, before the header write: the old header names
// seq 1, the file is named 6, so it is deleted; nothing else changes.
TEST_F(SpoolStaleTail, KillBetweenRenameAndHeaderWriteRemovesTheFile) {
  fs::rename(test::spare_files(o_.dir)[0], file());
  auto s = open_ok(o_);
  EXPECT_EQ(s->recovery().removed_files, 1u);
  EXPECT_EQ(s->recovery().truncated_bytes, spare_.size());
  EXPECT_EQ(s->entries(), 0u);
  EXPECT_EQ(s->last_seq(), 5u);
  EXPECT_TRUE(test::spool_files(o_.dir).empty());
  EXPECT_TRUE(test::spare_files(o_.dir).empty());
}

// Record 6 ends exactly where the record planted in old payload 1 starts.
TEST_F(SpoolStaleTail, TornWritesEndingOnAPlantedRecordKeepExactlyTheWholeNewRecords) {
  expect_torn_writes_keep_the_whole_new_records({kPlantAt, kOld});
}

// Records 6 and 7 end exactly where old records 2 and 3 start.
TEST_F(SpoolStaleTail, TornWritesEndingOnOldRecordsKeepExactlyTheWholeNewRecords) {
  expect_torn_writes_keep_the_whole_new_records({kOld, kOld});
}

TEST_F(SpoolStaleTail, TornWritesEndingInOldPayloadsKeepExactlyTheWholeNewRecords) {
  expect_torn_writes_keep_the_whole_new_records({500, 600});
}

// New records as long as the old ones: right after the last new one is an
// old record, whole, its CRC valid for the nonce the file had before. Its
// seq is lower, and its CRC does not hold with the file's new nonce: either
// rule cuts it, so one with a higher seq is cut too.
TEST_F(SpoolStaleTail, WholeOldRecordAfterTheNewOnesIsCutBySeqAndByCrc) {
  const std::vector<size_t> sizes{kOld, kOld};
  auto bytes = kill_after(sizes);
  const uint64_t end = end_after(sizes);
  const auto old3 = test::record_bytes(2, spare_nonce_, meta_for(3, kOld), old_frame(3));
  ASSERT_TRUE(std::equal(old3.begin(), old3.end(), bytes.begin() + end));
  {
    auto s = open_ok(o_);
    EXPECT_EQ(drain(*s), (std::vector<uint64_t>{6, 7}));
    EXPECT_EQ(s->last_seq(), 7u);
    EXPECT_EQ(s->recovery().truncated_bytes, spare_.size() - end);
  }
  const auto higher = test::record_bytes(2, spare_nonce_, meta_for(1000, kOld), old_frame(3));
  std::copy(higher.begin(), higher.end(), bytes.begin() + end);
  test::write_file(file(), bytes);
  auto s = open_ok(o_);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{6, 7}));
  EXPECT_EQ(s->last_seq(), 7u);
  EXPECT_EQ(s->recovery().truncated_bytes, spare_.size() - end);
}

// A machine crash after seq 6 was appended wrote back only the pages up to
// its end, so it ends where the old payload holds the planted record: a
// seq far above ours and a CRC valid without a nonce. (The kill leaves the
// same bytes: nothing is written after a record.) The record is cut; only
// the file's own nonce would have made it count.
TEST_F(SpoolStaleTail, RecordPlantedInAnOldPayloadIsCutAfterAMachineCrash) {
  const std::vector<size_t> sizes{kPlantAt};
  auto bytes = kill_after(sizes);
  const uint64_t end = end_after(sizes);
  ASSERT_EQ(end, kH + kR + kPlantAt);
  ASSERT_TRUE(std::equal(bytes.begin() + end, bytes.end(), spare_.begin() + end));
  const uint32_t nonce = test::parse_spool_file(file()).nonce;
  struct Forgery {
    const char* crc_made_with;
    std::vector<uint8_t> record;
    bool taken;
  };
  const Forgery forgeries[] = {
      {"no nonce (as planted)", planted_record(), false},
      {"the spare's nonce", planted_record(2, spare_nonce_), false},
      {"the file's nonce with one bit flipped", planted_record(2, nonce ^ 0x100), false},
      {"the file's nonce", planted_record(2, nonce), true},
  };
  for (const auto& f : forgeries) {
    SCOPED_TRACE(f.crc_made_with);
    std::copy(f.record.begin(), f.record.end(), bytes.begin() + end);
    test::write_file(file(), bytes);
    auto s = open_ok(o_);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->entries(), f.taken ? 2u : 1u);
    EXPECT_EQ(s->last_seq(), f.taken ? kPlantedSeq : 6u);
  }
}

// ----------------------------------------------------------- file format ---

TEST(SpoolFormat, EveryFileIsVersion2WithANonceOfItsOwn) {
  TempDir d;
  auto o = options(d, 1 << 20, 10'000);
  auto s = open_ok(o);
  for (uint64_t seq = 1; seq <= 12; ++seq) append_ok(*s, seq, 3000);
  std::vector<uint32_t> nonces;
  for (const auto& p : test::spool_files(o.dir)) {
    auto df = test::parse_spool_file(p);
    EXPECT_TRUE(df.clean) << df.name;
    EXPECT_EQ(df.version, 2u) << df.name;
    nonces.push_back(df.nonce);
  }
  ASSERT_EQ(nonces.size(), 4u);
  std::sort(nonces.begin(), nonces.end());
  EXPECT_EQ(std::adjacent_find(nonces.begin(), nonces.end()), nonces.end());  // 6 pairs, 2^-32 each
}

// Files written before the nonce (version 1: record CRCs without it) are
// recovered by the same rules as ever, become spares like any other, and
// whatever the spool writes next is version 2.
TEST(SpoolFormat, Version1FilesRecoverAsBefore) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  const uint64_t id = open_ok(o)->spool_id();  // the state, as the old agent left it
  auto v1_file = [&](uint64_t first, uint64_t last) {
    auto b = test::file_header_bytes(1, 0, id, first);
    for (uint64_t seq = first; seq <= last; ++seq) {
      auto r = test::record_bytes(1, 0, meta_for(seq, 500), payload_for(seq, 500));
      b.insert(b.end(), r.begin(), r.end());
    }
    return b;
  };
  test::write_file(o.dir / "00000000000000000001.spool", v1_file(1, 3));
  auto torn = v1_file(4, 6);
  torn.resize(torn.size() - 100);  // seq 6 torn
  test::write_file(o.dir / "00000000000000000004.spool", torn);
  {
    auto s = open_ok(o);
    EXPECT_EQ(s->recovery().entries, 5u);
    EXPECT_EQ(s->recovery().truncated_files, 1u);
    EXPECT_EQ(s->recovery().truncated_bytes, kR + 400);
    EXPECT_EQ(s->last_seq(), 5u);
    EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
    append_ok(*s, 6, 500);
  }
  auto files = test::spool_files(o.dir);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(test::parse_spool_file(files[0]).version, 1u);
  EXPECT_EQ(test::parse_spool_file(files[1]).version, 1u);
  EXPECT_EQ(test::parse_spool_file(files[2]).version, 2u);
  auto s = open_ok(o);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  ASSERT_TRUE(s->ack(5).ok());
  ASSERT_EQ(test::spare_files(o.dir).size(), 2u);
  append_ok(*s, 7, 100);  // into the version 1 spare of seqs 4..5
  auto f7 = test::parse_spool_file(o.dir / "00000000000000000007.spool");
  EXPECT_EQ(f7.version, 2u);
  EXPECT_EQ(f7.end, kH + kR + 100);
  EXPECT_EQ(f7.size, kH + 2 * (kR + 500));
  s.reset();
  s = open_ok(o);
  EXPECT_EQ(drain(*s), (std::vector<uint64_t>{6, 7}));
}

// The header's version says which CRC its records carry: a record made for
// the other version is not valid in it.
TEST(SpoolFormat, RecordCrcFollowsTheFileVersion) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  const uint64_t id = open_ok(o)->spool_id();
  const uint32_t nonce = 0x9E3779B9;
  for (uint32_t file_version : {1u, 2u}) {
    for (uint32_t record_version : {1u, 2u}) {
      SCOPED_TRACE("file version " + std::to_string(file_version) + ", record made for " +
                   std::to_string(record_version));
      auto b = test::file_header_bytes(file_version, nonce, id, 1);
      auto r = test::record_bytes(record_version, nonce, meta_for(1, 100), payload_for(1, 100));
      b.insert(b.end(), r.begin(), r.end());
      test::write_file(o.dir / "00000000000000000001.spool", b);
      auto s = open_ok(o);
      EXPECT_EQ(s->entries(), file_version == record_version ? 1u : 0u);
    }
  }
}

// The nonce is part of every record's CRC: a file whose header names another
// nonce (its header CRC made good) holds no valid record and is deleted.
TEST(SpoolFormat, AlteredNonceRejectsEveryRecord) {
  TempDir d;
  auto o = options(d, 1 << 20, 64 << 10);
  {
    auto s = open_ok(o);
    for (uint64_t seq = 1; seq <= 3; ++seq) append_ok(*s, seq, 300);
  }
  const fs::path file = test::spool_files(o.dir)[0];
  ASSERT_TRUE(test::parse_spool_file(file).clean);
  auto bytes = test::read_file(file);
  bytes[32] ^= 0x01;
  test::put_le(bytes.data() + 36, crc32c(std::span<const uint8_t>(bytes).first(36)), 4);
  test::write_file(file, bytes);
  auto df = test::parse_spool_file(file);
  EXPECT_EQ(df.end, kH);  // the header is valid, the first record is not
  EXPECT_TRUE(df.records.empty());
  auto s = open_ok(o);
  EXPECT_EQ(s->recovery().removed_files, 1u);
  EXPECT_EQ(s->recovery().truncated_bytes, bytes.size());
  EXPECT_EQ(s->entries(), 0u);
  EXPECT_EQ(s->last_seq(), 3u);  // from the state
  EXPECT_FALSE(fs::exists(file));
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
