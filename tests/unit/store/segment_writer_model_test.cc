// Model-based test: random operations against SegmentWriter and a plain
// in-memory model (the list of appended batches and how many of them are
// durable). After every simulated crash (writer destroyed without close(),
// its .part cut at a random byte past the last sync) and reopen, the stored
// batches must be exactly a prefix of the appended ones that contains at
// least every durable batch, in order, without duplicates; and last_seq()
// must name the last stored batch.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <map>
#include <cstdio>
#include <random>

#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "store/segment_writer.h"
#include "store_test_util.h"

namespace trawl::store {
namespace {

namespace fs = std::filesystem;
using testing::StoredBatch;

const std::vector<InterfaceInfo> kPool = {
    {"eth0", 1, 262144}, {"eth1", 1, 262144}, {"eth0", 1, 1500}, {"wlan0", 127, 65535}};

class ModelRun {
 public:
  explicit ModelRun(uint64_t seed) : rng_(seed), clock_(1'700'000'000'000'000'000ull + seed) {
    opts_.dir = tmp_.path() / "edge1";
    opts_.agent = "edge1";
    opts_.agent_host = "edge1.example";
    opts_.rotate_bytes = 2000 + rng_() % 30000;
    opts_.rotate_every_ns = rng_() % 2 ? 60 * kNsPerSec : 0;
    opts_.write_buffer_bytes = 4096;
    opts_.fsync = rng_() % 4 != 0;  // same semantics, minus the fdatasync
    // Odd seeds: zstd frames of a few KiB (many frames per segment, frames
    // open across syncs and crashes), at level 1 or at the fast level -1 (the
    // collector's default); even seeds: plain pcapng.
    opts_.zstd_level = seed % 2 == 0 ? 0 : seed % 4 == 1 ? 1 : -1;
    opts_.block_bytes = 4096 + rng_() % 12000;
    // Frame-end padding to small alignments, so that it happens often.
    opts_.align_bytes = rng_() % 3 ? 1000 + rng_() % 20000 : 0;
  }

  void run(int ops) {
    reopen();
    for (int op = 0; op < ops && !::testing::Test::HasFatalFailure(); ++op) {
      uint64_t r = rng_() % 100;
      if (r < 50) {
        do_batch();
      } else if (r < 62) {
        do_sync();
      } else if (r < 68) {
        note_seals([&] { return w_->tick(); });
      } else if (r < 78) {
        clock_.advance_ns(rng_() % (90 * kNsPerSec));
      } else if (r < 84) {
        crash();
      } else if (r < 88) {
        auto st = w_->close();
        ASSERT_TRUE(st.ok()) << st.error().message();
        durable_ = appended_.size();
        if (rng_() % 2) reopen();
      } else {
        with_fault();
      }
    }
    ASSERT_TRUE(w_->close().ok());
    durable_ = appended_.size();
    reopen();
    ASSERT_EQ(appended_.size(), durable_);
  }

 private:
  uint64_t next_seq() const { return appended_.empty() ? 1 : appended_.back().seq + 1; }
  uint64_t spool() const { return appended_.empty() ? 1 : appended_.back().spool_id; }

  // Runs an operation; a seal makes everything appended before it durable;
  // an error rolls the model back to its durable point.
  template <class F>
  bool note_seals(F&& f, size_t durable_if_sealed = SIZE_MAX) {
    uint64_t sealed = w_->counters().segments_sealed;
    size_t before = appended_.size();
    Status st = f();
    if (w_->counters().segments_sealed != sealed)
      durable_ = std::min(before, durable_if_sealed);
    if (!st.ok()) {
      EXPECT_TRUE(faulty_) << st.error().message();
      rollback();
      return false;
    }
    return true;
  }

  void rollback() {
    ++stats_.rollbacks;
    appended_.resize(durable_);
    uint64_t want = appended_.empty() ? last_seq_at_start_ : appended_.back().seq;
    ASSERT_EQ(w_->last_seq(), want);
    check_counters();
  }

  void check_counters() {
    uint64_t packets = 0;
    for (size_t i = opened_at_; i < appended_.size(); ++i) packets += appended_[i].packets.size();
    ASSERT_EQ(w_->counters().packets, packets);
  }

  void do_batch() {
    StoredBatch b;
    b.seq = next_seq();
    b.spool_id = spool();
    if (rng_() % 50 == 0) {  // the agent's spool was reset
      ++b.spool_id;
      b.seq = 1;
    }
    std::vector<InterfaceInfo> ifaces;
    for (const auto& i : kPool)
      if (rng_() % 3) ifaces.push_back(i);
    std::shuffle(ifaces.begin(), ifaces.end(), rng_);
    if (!note_seals([&] { return w_->begin_batch(b.spool_id, b.seq, ifaces); })) return;
    const int n = ifaces.empty() ? 0 : static_cast<int>(rng_() % 12);
    std::vector<uint8_t> data;
    for (int i = 0; i < n; ++i) {
      auto idx = static_cast<uint16_t>(rng_() % ifaces.size());
      size_t size = rng_() % 8 == 0 ? rng_() % 9100 : rng_() % 200;
      data.resize(size);
      for (auto& c : data) c = static_cast<uint8_t>(rng_());
      uint64_t ts = clock_.wall_ns() - 1000 + rng_() % 2000;
      auto orig = static_cast<uint32_t>(size + rng_() % 3);
      w_->packet({idx, ts, orig, data});
      b.packets.push_back({ifaces[idx].name, ts, orig, data, {}});
      if (rng_() % 10 == 0) {
        InterfaceStats s{idx, ts, rng_() % 10000, rng_() % 100, rng_() % 100, rng_() % 3};
        w_->stats(s);
        b.stats.push_back({ifaces[idx].name, ts, s.received, s.if_drops, s.kernel_drops});
      }
      if (rng_() % 15 == 0) {
        bool all = rng_() % 2;
        Gap g{all ? uint16_t{0xffff} : idx, ts - 100, ts, rng_() % 50, rng_() % 5000,
              static_cast<GapReason>(rng_() % 4)};
        w_->gap(g);
        b.gaps.push_back({all ? "*" : ifaces[idx].name,
                          {0, g.reason, g.from_ns, g.to_ns, g.packets, g.bytes}});
      }
    }
    if (rng_() % 20 == 0) {
      w_->abort_batch();
      return;
    }
    Status st = w_->end_batch();
    if (!st.ok()) {
      EXPECT_TRUE(faulty_) << st.error().message();
      rollback();
      return;
    }
    appended_.push_back(std::move(b));
  }

  void do_sync() {
    auto part = w_->open_segment_path();
    if (note_seals([&] { return w_->sync(); })) {
      durable_ = appended_.size();
      if (part) synced_size_[*part] = fs::file_size(*part);
    }
  }

  void with_fault() {
    faulty_ = true;
    rlimit saved{};
    ::getrlimit(RLIMIT_FSIZE, &saved);
    rlimit r = saved;
    r.rlim_cur = rng_() % (opts_.rotate_bytes + 20000);
    ::setrlimit(RLIMIT_FSIZE, &r);
    switch (rng_() % 3) {
      case 0: do_batch(); break;
      case 1: do_sync(); break;
      default: note_seals([&] { return w_->tick(); }); break;
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    faulty_ = false;
  }

  void crash() {
    auto part = w_->open_segment_path();
    w_.reset();
    if (part) {
      uint64_t size = fs::file_size(*part);
      uint64_t floor = synced_size_.count(*part) ? synced_size_[*part] : 0;
      ASSERT_LE(floor, size);
      fs::resize_file(*part, floor + rng_() % (size - floor + 1));
      ++stats_.crashes_with_open_segment;
    }
    reopen();
  }

  void reopen() {
    w_.reset();
    auto w = SegmentWriter::open(opts_, clock_);
    ASSERT_TRUE(w.ok()) << w.error().message();
    w_ = std::move(*w);
    synced_size_.clear();
    verify_disk();
  }

  // The sealed segment's index: whole, blocks tiling the file, checksums and
  // packet counts right, every block decodable alone.
  void verify_index(const fs::path& path, uint64_t packets) {
    fs::path idx_path = path;
    idx_path += ".idx";
    auto file = pcapng::MappedFile::open(path);
    ASSERT_TRUE(file.ok());
    auto idx = read_index_file(idx_path, false);
    if (!idx.ok()) {
      // Only a disk error while writing the journal leaves no index; the
      // reader then rebuilds it, which must give the same answers.
      ASSERT_TRUE(!fs::exists(idx_path)) << idx.error().message();
      ++stats_.indexes_missing;
      auto rebuilt = rebuild_index(file->bytes(), opts_.zstd_level != 0);
      rebuilt.segment_size = file->bytes().size();
      idx = std::move(rebuilt);
    }
    ASSERT_EQ(idx->compressed, opts_.zstd_level != 0);
    ASSERT_EQ(idx->covered_end(), file->bytes().size()) << path;
    ASSERT_EQ(idx->segment_size, file->bytes().size());
    ASSERT_EQ(idx->packets, packets) << path;
    uint64_t off = 0, raw = 0;
    for (const auto& b : idx->blocks) {
      ASSERT_EQ(b.file_offset, off);
      ASSERT_EQ(b.raw_offset, raw);
      auto bytes = decode_block_bytes(file->bytes(), idx->compressed, b);
      ASSERT_TRUE(bytes.ok()) << path << ": " << bytes.error().message();
      ASSERT_EQ(bytes->size(), b.raw_size);
      off += b.file_size;
      raw += b.raw_size;
    }
    ++stats_.indexes_checked;
    stats_.blocks_checked += idx->blocks.size();
  }

  void verify_disk() {
    std::vector<StoredBatch> stored;
    for (const auto& path : testing::list_segments(opts_.dir, "edge1")) {
      ASSERT_EQ(path.extension(), opts_.zstd_level ? ".zst" : ".pcapng")
          << "unsealed after recovery: " << path;
      auto seg = testing::read_segment(path);
      verify_index(path, seg.packets());
      ASSERT_TRUE(seg.clean_end) << path << ": " << seg.error;
      ASSERT_TRUE(seg.seal_is_last) << path;
      ASSERT_FALSE(seg.batches.empty()) << path;
      ASSERT_TRUE(seg.trailing_packets.empty()) << path;
      ASSERT_EQ(seg.seal->last_seq, seg.batches.back().seq);
      ASSERT_EQ(seg.seal->spool_id, seg.batches.back().spool_id);
      ASSERT_EQ(seg.seal->packets, seg.packets());
      for (auto& b : seg.batches) stored.push_back(std::move(b));
    }
    ASSERT_GE(stored.size(), durable_) << "lost durable batches";
    ASSERT_LE(stored.size(), appended_.size()) << "stored batches never appended";
    for (size_t i = 0; i < stored.size(); ++i) {
      ASSERT_EQ(stored[i].seq, appended_[i].seq) << "batch " << i;
      ASSERT_EQ(stored[i].spool_id, appended_[i].spool_id) << "batch " << i;
      ASSERT_EQ(stored[i].packets, appended_[i].packets) << "batch " << i;
      ASSERT_EQ(stored[i].gaps, appended_[i].gaps) << "batch " << i;
      ASSERT_EQ(stored[i].stats, appended_[i].stats) << "batch " << i;
    }
    stats_.lost_unsynced += appended_.size() - stored.size();
    stats_.batches_checked += stored.size();
    appended_.resize(stored.size());
    durable_ = appended_.size();
    opened_at_ = appended_.size();
    last_seq_at_start_ = appended_.empty() ? 0 : appended_.back().seq;
    ASSERT_EQ(w_->last_seq(), last_seq_at_start_);
    ASSERT_EQ(w_->spool_id(), appended_.empty() ? 0 : appended_.back().spool_id);
    stats_.reopens++;
  }

 public:
  struct Stats {
    uint64_t reopens = 0, rollbacks = 0, crashes_with_open_segment = 0, lost_unsynced = 0,
             batches_checked = 0, indexes_checked = 0, blocks_checked = 0,
             indexes_missing = 0;
  };
  Stats stats_;

 private:
  std::mt19937_64 rng_;
  testing::TempDir tmp_;
  FakeClock clock_;
  SegmentOptions opts_;
  std::unique_ptr<SegmentWriter> w_;
  std::vector<StoredBatch> appended_;
  size_t durable_ = 0;
  size_t opened_at_ = 0;
  uint64_t last_seq_at_start_ = 0;
  bool faulty_ = false;
  std::map<fs::path, uint64_t> synced_size_;
};

TEST(SegmentWriterModel, RandomOperationsCrashesAndDiskErrors) {
  ::signal(SIGXFSZ, SIG_IGN);
  auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);  // crashes and rollbacks are the point here
  ModelRun::Stats total;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ModelRun run(seed);
    run.run(250);
    if (::testing::Test::HasFatalFailure()) break;
    total.reopens += run.stats_.reopens;
    total.rollbacks += run.stats_.rollbacks;
    total.crashes_with_open_segment += run.stats_.crashes_with_open_segment;
    total.lost_unsynced += run.stats_.lost_unsynced;
    total.batches_checked += run.stats_.batches_checked;
    total.indexes_checked += run.stats_.indexes_checked;
    total.blocks_checked += run.stats_.blocks_checked;
    total.indexes_missing += run.stats_.indexes_missing;
  }
  spdlog::set_level(level);
  std::printf("model: %lu reopens, %lu crashes with an open segment, %lu rollbacks, "
              "%lu unsynced batches lost, %lu stored batches checked, %lu indexes / %lu blocks (%lu rebuilt)\n",
              total.reopens, total.crashes_with_open_segment, total.rollbacks,
              total.lost_unsynced, total.batches_checked, total.indexes_checked,
              total.blocks_checked, total.indexes_missing);
  // The run must actually exercise what it claims to.
  EXPECT_GT(total.crashes_with_open_segment, 50u);
  EXPECT_GT(total.rollbacks, 20u);
  EXPECT_GT(total.lost_unsynced, 20u);
}

}  // namespace
}  // namespace trawl::store
