// Model-based test of the spool: thousands of random operations (append of
// random sizes, next_unsent, ack, rewind, crash with a torn tail / cut file /
// garbage, reopen) applied to the real Spool and to an in-memory model of its
// documented rules. After every step the API, the bytes on disk (read by the
// test's own parser of docs/spool.md) and the model must agree, and the
// directory (spool files, the stale tail of a reused file, spares) must stay
// within max_bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <random>

#include "spool_test_util.h"

namespace trawl::agent {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

constexpr uint64_t kH = Spool::kFileHeaderBytes;
constexpr uint64_t kR = Spool::kRecordHeaderBytes;

// ------------------------------------------------------------------ model ---

struct Rec {
  EntryMeta meta;
  std::vector<uint8_t> payload;
  uint64_t size() const { return kR + payload.size(); }
};

struct MFile {
  uint64_t key = 0;
  std::vector<Rec> recs;
  uint64_t size() const {
    uint64_t s = kH;
    for (const auto& r : recs) s += r.size();
    return s;
  }
};

// The spool's contract, written as plainly as possible: files are lists of
// records, entries carry an explicit in-flight flag.
class Model {
 public:
  Model(uint64_t max_bytes, uint64_t file_bytes, DropPolicy policy)
      : max_(max_bytes), file_bytes_(std::min(file_bytes, max_bytes / 4)), policy_(policy) {}

  struct Unacked {
    uint64_t seq;
    bool in_flight;
  };

  std::vector<MFile> files;  // oldest first
  bool active = false;       // files.back() takes appends
  std::deque<Unacked> unacked;
  uint64_t last_seq = 0;
  uint64_t acked = 0;

  uint64_t bytes() const {
    uint64_t b = 0;
    for (const auto& f : files) b += f.size();
    return b;
  }
  size_t unsent() const {
    return static_cast<size_t>(std::count_if(unacked.begin(), unacked.end(),
                                             [](const Unacked& u) { return !u.in_flight; }));
  }
  const Rec& rec(uint64_t seq) const {
    for (const auto& f : files)
      for (const auto& r : f.recs)
        if (r.meta.seq == seq) return r;
    ADD_FAILURE() << "model has no record " << seq;
    static Rec none;
    return none;
  }
  bool in_flight(uint64_t seq) const {
    for (const auto& u : unacked)
      if (u.seq == seq) return u.in_flight;
    return false;
  }

  AppendOutcome append(const EntryMeta& meta, const std::vector<uint8_t>& payload) {
    last_seq = meta.seq;
    AppendOutcome out;
    const uint64_t rec = kR + payload.size();
    if (kH + rec > max_) {
      out.dropped.push_back(meta);
      return out;
    }
    auto need = [&](bool has_active, uint64_t active_size) {
      bool fresh = !has_active || active_size + rec > file_bytes_;
      return rec + (fresh ? kH : 0);
    };
    const uint64_t active_size = active ? files.back().size() : 0;
    uint64_t b = bytes();
    bool fits = b + need(active, active_size) <= max_;
    std::vector<size_t> victims;
    if (!fits && policy_ == DropPolicy::kDropOldest) {
      bool act = active;
      for (size_t i = 0; i < files.size() && !fits; ++i) {
        bool busy = std::any_of(files[i].recs.begin(), files[i].recs.end(),
                                [&](const Rec& r) { return in_flight(r.meta.seq); });
        if (busy) continue;
        victims.push_back(i);
        b -= files[i].size();
        if (i + 1 == files.size()) act = false;
        fits = b + need(act, active_size) <= max_;
      }
      if (!fits) victims.clear();
    }
    if (!fits) {
      out.dropped.push_back(meta);
      return out;
    }
    for (auto v = victims.rbegin(); v != victims.rend(); ++v) {
      if (*v + 1 == files.size()) active = false;
      files.erase(files.begin() + static_cast<std::ptrdiff_t>(*v));
    }
    // Dropped in seq order: every unacked entry whose file is gone.
    for (auto it = unacked.begin(); it != unacked.end();) {
      if (!has_record(it->seq)) {
        out.dropped.push_back(metas_.at(it->seq));
        it = unacked.erase(it);
      } else {
        ++it;
      }
    }
    if (!active || files.back().size() + rec > file_bytes_) {
      files.push_back(MFile{meta.seq, {}});
      active = true;
    }
    files.back().recs.push_back(Rec{meta, payload});
    metas_[meta.seq] = meta;
    unacked.push_back({meta.seq, false});
    out.stored = true;
    return out;
  }

  std::optional<uint64_t> next_unsent() {
    for (auto& u : unacked) {
      if (!u.in_flight) {
        u.in_flight = true;
        return u.seq;
      }
    }
    return std::nullopt;
  }

  void ack(uint64_t seq) {
    acked = std::max(acked, seq);
    last_seq = std::max(last_seq, seq);
    while (!unacked.empty() && unacked.front().seq <= acked) unacked.pop_front();
    free_acked();
  }

  void rewind() {
    for (auto& u : unacked) u.in_flight = false;
  }

  // What open() does after any crash.
  void reopen() {
    rewind();
    active = false;
    free_acked();
  }

  // Removes the records from index `from` on in the newest file (a torn or
  // cut tail), and the file itself if no record is left.
  void lose_tail(size_t from) {
    auto& f = files.back();
    for (size_t i = from; i < f.recs.size(); ++i) forget(f.recs[i].meta.seq);
    f.recs.resize(from);
    if (f.recs.empty()) files.pop_back();
  }

 private:
  bool has_record(uint64_t seq) const {
    for (const auto& f : files)
      for (const auto& r : f.recs)
        if (r.meta.seq == seq) return true;
    return false;
  }
  void forget(uint64_t seq) {
    for (auto it = unacked.begin(); it != unacked.end(); ++it) {
      if (it->seq == seq) {
        unacked.erase(it);
        return;
      }
    }
  }
  void free_acked() {
    while (!files.empty() && files.front().recs.back().meta.seq <= acked) {
      if (files.size() == 1) active = false;
      files.erase(files.begin());
    }
  }

  uint64_t max_, file_bytes_;
  DropPolicy policy_;
  std::map<uint64_t, EntryMeta> metas_;
};

// ------------------------------------------------------------------- test ---

struct Config {
  const char* name;
  DropPolicy policy;
  uint64_t max_bytes;
  uint64_t file_bytes;
  uint32_t seed;
  int steps;
};

void PrintTo(const Config& c, std::ostream* os) { *os << c.name; }

class SpoolModelTest : public ::testing::TestWithParam<Config> {
 protected:
  void SetUp() override {
    const Config& c = GetParam();
    // TRAWL_SPOOL_MODEL_SEED=n shifts every seed, to explore more runs.
    const char* extra = std::getenv("TRAWL_SPOOL_MODEL_SEED");
    rng_.seed(c.seed + (extra ? std::strtoul(extra, nullptr, 10) * 1000 : 0));
    opts_.dir = dir_.spool();
    opts_.max_bytes = c.max_bytes;
    opts_.file_bytes = c.file_bytes;
    opts_.policy = c.policy;
    opts_.fdatasync_on_rotate = false;  // tiny files rotate on almost every append
    model_.emplace(c.max_bytes, c.file_bytes, c.policy);
    open();
    spool_id_ = spool_->spool_id();
    ASSERT_NE(spool_id_, 0u);
  }

  void open() {
    auto s = Spool::open(opts_);
    ASSERT_TRUE(s.ok()) << s.error().message();
    spool_ = std::move(*s);
  }

  uint64_t rnd(uint64_t lo, uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  size_t random_size() {
    const uint64_t max = GetParam().max_bytes;
    double p = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (p < 0.03) return rnd(max - kH - kR - 16, max + 64);  // around / above the cap
    if (p < 0.10) return rnd(max / 8, max / 3);              // big
    if (p < 0.15) return 0;
    return rnd(1, std::max<uint64_t>(2, spool_->file_bytes() / 3));
  }

  void step_append() {
    uint64_t seq = model_->last_seq + (chance(0.2) ? rnd(2, 5) : 1);
    std::vector<uint8_t> payload = test::payload_for(seq, random_size());
    EntryMeta meta = test::meta_for(seq, payload.size());
    auto got = spool_->append(meta, payload);
    ASSERT_TRUE(got.ok()) << got.error().message();
    AppendOutcome want = model_->append(meta, payload);
    ASSERT_EQ(got->stored, want.stored) << "seq " << seq << " size " << payload.size();
    ASSERT_EQ(got->dropped, want.dropped) << "seq " << seq << " size " << payload.size();
    stored_ += got->stored;
    for (const auto& d : got->dropped) {
      if (d.seq != seq)
        ++evicted_;
      else if (kH + kR + payload.size() <= GetParam().max_bytes)
        ++refused_full_;
    }
  }

  void step_next_unsent() {
    auto got = spool_->next_unsent();
    ASSERT_TRUE(got.ok()) << got.error().message();
    auto want = model_->next_unsent();
    ASSERT_EQ(got->has_value(), want.has_value());
    if (!want) return;
    const Rec& r = model_->rec(*want);
    ASSERT_EQ((*got)->first, r.meta);
    ASSERT_TRUE(std::equal((*got)->second.begin(), (*got)->second.end(), r.payload.begin(),
                           r.payload.end()))
        << "payload of seq " << *want;
  }

  void step_ack() {
    uint64_t seq = 0;
    const auto& u = model_->unacked;
    double p = std::uniform_real_distribution<double>(0, 1)(rng_);
    size_t in_flight = u.size() - model_->unsent();
    if (p < 0.55 && in_flight > 0) {
      seq = u[rnd(0, in_flight - 1)].seq;  // what a collector would ack
    } else if (p < 0.75 && !u.empty()) {
      seq = u[rnd(0, u.size() - 1)].seq;  // acked before we re-sent it
    } else if (p < 0.85) {
      seq = rnd(0, model_->acked);  // old
    } else {
      seq = rnd(0, model_->last_seq + 10);  // unknown, maybe beyond last_seq
    }
    Status st = spool_->ack(seq);
    ASSERT_TRUE(st.ok()) << st.error().message();
    model_->ack(seq);
  }

  // Destroys the spool without any cleanup, optionally damages the newest
  // file the way a kill -9 (or worse) can, and reopens.
  void step_crash() {
    // A kill -9 leaves the active file as it is, with the stale tail of a
    // reused file; the destructor cuts that tail, so keep the bytes to put
    // back when the crash does no damage.
    std::optional<std::pair<fs::path, std::vector<uint8_t>>> active_bytes;
    if (model_->active) {
      const fs::path active = test::spool_files(opts_.dir).back();
      active_bytes.emplace(active, test::read_file(active));
    }
    spool_.reset();
    auto files = test::spool_files(opts_.dir);
    double p = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (!files.empty() && !model_->files.empty()) {
      const fs::path newest = files.back();
      const MFile& mf = model_->files.back();
      const uint64_t size = fs::file_size(newest);
      ASSERT_EQ(size, mf.size());
      if (p < 0.35) {
        // Torn tail: the last record was being written. Only it may be lost.
        const uint64_t start = size - mf.recs.back().size();
        fs::resize_file(newest, rnd(start, size - 1));
        model_->lose_tail(mf.recs.size() - 1);
        ++torn_;
      } else if (p < 0.5) {
        // Cut anywhere (worse than kill -9): every record not wholly before the cut is lost.
        const uint64_t cut = rnd(0, size - 1);
        size_t keep = 0;
        uint64_t end = kH;
        while (keep < mf.recs.size() && end + mf.recs[keep].size() <= cut && cut >= kH)
          end += mf.recs[keep++].size();
        fs::resize_file(newest, cut);
        model_->lose_tail(keep);
        ++cut_;
      } else if (p < 0.6) {
        // A damaged last record (one byte flipped anywhere in it): only it is lost.
        auto bytes = test::read_file(newest);
        bytes[rnd(size - mf.recs.back().size(), size - 1)] ^= static_cast<uint8_t>(rnd(1, 255));
        test::write_file(newest, bytes);
        model_->lose_tail(mf.recs.size() - 1);
        ++flipped_;
      } else if (p < 0.75) {
        // Garbage after the last record: nothing is lost.
        auto bytes = test::read_file(newest);
        size_t n = rnd(1, 300);
        for (size_t i = 0; i < n; ++i) bytes.push_back(static_cast<uint8_t>(rnd(0, 255)));
        if (chance(0.5) && bytes.size() >= n + 4) {
          // ...sometimes starting like a record header.
          bytes[size] = 0x54, bytes[size + 1] = 0x52, bytes[size + 2] = 0x57,
          bytes[size + 3] = 0x52;
        }
        test::write_file(newest, bytes);
        ++garbage_;
      } else if (active_bytes && active_bytes->second.size() > size) {
        // Killed with a stale tail after the last record: nothing is lost.
        // (Nothing is written past the records, so this is also what a
        // machine crash that lost only the pages after them leaves.)
        ASSERT_EQ(active_bytes->first, newest);
        test::write_file(newest, active_bytes->second);
        ++stale_tails_;
      }
    }
    const uint64_t last_seq = model_->last_seq;
    open();
    model_->reopen();
    ++reopens_;
    ASSERT_EQ(spool_->spool_id(), spool_id_);
    ASSERT_EQ(spool_->last_seq(), last_seq);
    ASSERT_EQ(spool_->unsent_entries(), spool_->entries());
  }

  // API vs model, and disk vs model.
  void check() {
    const Model& m = *model_;
    ASSERT_EQ(spool_->entries(), m.unacked.size());
    ASSERT_EQ(spool_->unsent_entries(), m.unsent());
    ASSERT_EQ(spool_->bytes(), m.bytes());
    ASSERT_LE(spool_->bytes(), GetParam().max_bytes);
    ASSERT_EQ(spool_->last_seq(), m.last_seq);
    ASSERT_EQ(spool_->acked_seq(), m.acked);
    ASSERT_EQ(spool_->spool_id(), spool_id_);
    if (m.unacked.empty()) {
      ASSERT_FALSE(spool_->oldest_unacked_first_ts());
    } else {
      ASSERT_EQ(spool_->oldest_unacked_first_ts(), m.rec(m.unacked.front().seq).meta.first_ts_ns);
    }

    // The directory holds exactly the model's files, byte for byte, except
    // that the file taking appends may go on after its last record: the
    // stale tail of a reused file, left as it was (records of the file's
    // earlier life, made with another nonce). Every file is version 2.
    auto files = test::spool_files(opts_.dir);
    ASSERT_EQ(files.size(), m.files.size());
    for (size_t i = 0; i < files.size(); ++i) {
      auto df = test::parse_spool_file(files[i]);
      const MFile& mf = m.files[i];
      const bool active = m.active && i + 1 == files.size();
      ASSERT_TRUE(df.clean || active) << df.name;
      ASSERT_EQ(df.version, 2u) << df.name;
      ASSERT_EQ(df.first_seq, mf.key);
      ASSERT_EQ(df.spool_id, spool_id_);
      ASSERT_EQ(df.end, mf.size()) << df.name;
      stale_seen_ += !df.clean;
      ASSERT_EQ(df.records.size(), mf.recs.size()) << df.name;
      for (size_t j = 0; j < mf.recs.size(); ++j) {
        ASSERT_EQ(df.records[j].meta, mf.recs[j].meta);
        ASSERT_EQ(df.records[j].payload, mf.recs[j].payload);
      }
    }
    // On disk, spares and stale tail included: what the spool counts, and
    // never above the cap.
    ASSERT_LE(test::spare_files(opts_.dir).size(), opts_.spare_files);
    ASSERT_EQ(spool_->disk_bytes(), test::disk_bytes(opts_.dir));
    ASSERT_LE(test::disk_bytes(opts_.dir), GetParam().max_bytes);

    auto st = test::parse_state(opts_.dir);
    ASSERT_TRUE(st);
    ASSERT_EQ(st->spool_id, spool_id_);
    ASSERT_EQ(st->last_seq, m.last_seq);
    ASSERT_EQ(st->acked_seq, m.acked);
  }

  // Reads every unacked entry through the API in order, then puts the
  // in-flight prefix back the way it was.
  void check_drain() {
    const Model& m = *model_;
    const size_t in_flight = m.unacked.size() - m.unsent();
    for (size_t i = 0; i < in_flight; ++i) ASSERT_TRUE(m.unacked[i].in_flight) << "not a prefix";
    spool_->rewind();
    for (const auto& u : m.unacked) {
      auto got = spool_->next_unsent();
      ASSERT_TRUE(got.ok()) << got.error().message();
      ASSERT_TRUE(got->has_value());
      const Rec& r = m.rec(u.seq);
      ASSERT_EQ((*got)->first, r.meta);
      ASSERT_TRUE(std::equal((*got)->second.begin(), (*got)->second.end(), r.payload.begin(),
                             r.payload.end()));
    }
    auto end = spool_->next_unsent();
    ASSERT_TRUE(end.ok());
    ASSERT_FALSE(end->has_value());
    spool_->rewind();
    for (size_t i = 0; i < in_flight; ++i) ASSERT_TRUE(spool_->next_unsent().ok());
  }

  TempDir dir_;
  SpoolOptions opts_;
  std::mt19937_64 rng_;
  std::optional<Model> model_;
  std::unique_ptr<Spool> spool_;
  uint64_t spool_id_ = 0;
  int stored_ = 0, evicted_ = 0, refused_full_ = 0, torn_ = 0, cut_ = 0, flipped_ = 0, garbage_ = 0,
      reopens_ = 0, stale_tails_ = 0, stale_seen_ = 0;
};

TEST_P(SpoolModelTest, RandomOperationsMatchModel) {
  const Config& c = GetParam();
  for (int i = 0; i < c.steps; ++i) {
    double p = std::uniform_real_distribution<double>(0, 1)(rng_);
    SCOPED_TRACE("step " + std::to_string(i));
    // Every third stretch of 250 steps is an outage: no acks, the spool fills.
    const bool outage = (i / 250) % 3 == 1;
    if (p < 0.40) {
      ASSERT_NO_FATAL_FAILURE(step_append());
    } else if (p < 0.65) {
      ASSERT_NO_FATAL_FAILURE(step_next_unsent());
    } else if (p < 0.85) {
      if (!outage) {
        ASSERT_NO_FATAL_FAILURE(step_ack());
      }
    } else if (p < 0.92) {
      spool_->rewind();
      model_->rewind();
    } else {
      ASSERT_NO_FATAL_FAILURE(step_crash());
    }
    ASSERT_NO_FATAL_FAILURE(check());
    if (i % 16 == 0) {
      ASSERT_NO_FATAL_FAILURE(check_drain());
    }
  }
  // Every kind of event happened, so the run tested something.
  EXPECT_GT(stored_, c.steps / 10);
  if (c.policy == DropPolicy::kDropOldest) {
    EXPECT_GT(evicted_, 0);
  }
  EXPECT_GT(refused_full_ + evicted_, 0);
  EXPECT_GT(torn_, 0);
  EXPECT_GT(cut_, 0);
  EXPECT_GT(flipped_, 0);
  EXPECT_GT(garbage_, 0);
  EXPECT_GT(stale_seen_, 0);   // files were reused
  EXPECT_GT(stale_tails_, 0);  // and recovered after a kill with a stale tail
  RecordProperty("stored", stored_);
  RecordProperty("evicted", evicted_);
  RecordProperty("refused_full", refused_full_);
  RecordProperty("reopens", reopens_);
  RecordProperty("stale_tails_seen", stale_seen_);
  RecordProperty("killed_with_stale_tail", stale_tails_);
}

INSTANTIATE_TEST_SUITE_P(
    Policies, SpoolModelTest,
    ::testing::Values(
        Config{"newest_small_files", DropPolicy::kDropNewest, 64 << 10, 8 << 10, 1, 3000},
        Config{"oldest_small_files", DropPolicy::kDropOldest, 64 << 10, 8 << 10, 2, 3000},
        Config{"newest_big_files", DropPolicy::kDropNewest, 96 << 10, 1 << 20, 3, 3000},
        Config{"oldest_big_files", DropPolicy::kDropOldest, 96 << 10, 1 << 20, 4, 3000},
        Config{"oldest_tiny_files", DropPolicy::kDropOldest, 48 << 10, 512, 5, 3000},
        Config{"newest_tiny_files", DropPolicy::kDropNewest, 48 << 10, 512, 6, 3000}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace trawl::agent
