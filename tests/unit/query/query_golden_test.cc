// Golden test of `trawl query` against tcpdump over real captures.
//
// Captures from ../shared/pcaps are written by two agents through the real
// SegmentWriter (edge1: plain pcapng, edge2: zstd frames; small rotation and
// block sizes, so there are many segments and blocks; edge2's last segment
// stays open, with an unfinished frame). Each capture is shifted in time so
// that the agents' packets interleave. For each filter and time window the
// query's output must equal, packet for packet and in the same order, what
// `tcpdump -r <capture> -w - FILTER` selects from the inputs, shifted the
// same way, stably sorted by time (ties: agent, then the order the agent
// sent them), which is the order the query promises. Also: the sealed
// segments read back with tshark/capinfos, a deleted or corrupted index
// gives the same answer, and corrupted bytes in a block lose exactly that
// block (reported) and nothing else.
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "core/clock.h"
#include "query/query.h"
#include "store/pcapng.h"
#include "store/segment_name.h"
#include "store/segment_writer.h"

namespace trawl::query {
namespace {

namespace fs = std::filesystem;
namespace png = store::pcapng;

constexpr uint64_t kT0 = 1'763'800'000'000'000'000ull;

struct Pkt {
  uint64_t ts = 0;
  std::string iface;
  std::vector<uint8_t> data;
  uint32_t orig_len = 0;
  bool operator==(const Pkt&) const = default;
};

struct Input {
  std::string agent;
  std::string rel;  // under ../shared/pcaps
  uint64_t shift = 0;
  std::string iface;
  uint16_t link_type = 0;
};

std::string pcaps(const std::string& rel) { return std::string(TRAWL_SHARED_PCAPS) + "/" + rel; }

std::vector<Pkt> read_pcap(const std::string& path, uint16_t* link_type = nullptr) {
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  std::vector<Pkt> out;
  if (!p) {
    ADD_FAILURE() << path << ": " << err;
    return out;
  }
  if (link_type) *link_type = static_cast<uint16_t>(pcap_datalink(p));
  pcap_pkthdr* h;
  const u_char* d;
  while (pcap_next_ex(p, &h, &d) == 1) {
    Pkt k;
    k.ts = static_cast<uint64_t>(h->ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(h->ts.tv_usec);
    k.data.assign(d, d + h->caplen);
    k.orig_len = h->len;
    out.push_back(std::move(k));
  }
  pcap_close(p);
  return out;
}

std::vector<Pkt> parse_pcapng(std::span<const uint8_t> bytes) {
  std::vector<Pkt> out;
  png::PcapngReader r(bytes);
  for (;;) {
    auto n = r.next();
    if (n == png::PcapngReader::Next::kEnd) break;
    if (n == png::PcapngReader::Next::kCorrupt) {
      ADD_FAILURE() << "query output corrupt: " << r.corrupt_reason();
      break;
    }
    if (const auto* e = std::get_if<png::EpbView>(&r.block().view)) {
      out.push_back({r.ts_ns(*e), std::string(r.interfaces()[e->interface_id].name),
                     std::vector<uint8_t>(e->data.begin(), e->data.end()), e->orig_len});
    }
  }
  return out;
}

class QueryGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(pcaps("MANIFEST.tsv")) || std::system("tcpdump --version >/dev/null 2>&1") != 0) return;
    char tmpl[] = "/tmp/trawl-query-golden-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    inputs_ = {
        {"edge1", "mixed/pcapplusplus_many_protocols.pcap"}, {"edge1", "tcp/arkime_wireshark_retrans.pcap"},
        {"edge1", "sip_rtp/heplify_sip_sctp.pcap"},          {"edge2", "mixed/pcapplusplus_example.pcap"},
        {"edge2", "sip_rtp/open5gs_volte.pcapng"},           {"edge2", "vxlan/tcpdump_vxlan_4789.pcap"},
        {"edge2", "sip_rtp/SIP_CALL_RTP_G711.pcap"},
    };
    FakeClock clock(kT0);
    std::map<std::string, std::unique_ptr<store::SegmentWriter>> writers;
    for (const std::string agent : {"edge1", "edge2"}) {
      store::SegmentOptions so;
      so.dir = dir_ / agent;
      so.agent = agent;
      so.agent_host = agent + ".example";
      so.rotate_bytes = 256u << 10;
      so.rotate_every_ns = 0;
      so.block_bytes = 24u << 10;
      so.zstd_level = agent == "edge2" ? 1 : 0;
      auto w = store::SegmentWriter::open(so, clock);
      ASSERT_TRUE(w.ok()) << w.error().message();
      writers[agent] = std::move(*w);
    }
    std::map<std::string, uint64_t> seq;
    for (size_t k = 0; k < inputs_.size(); ++k) {
      auto& in = inputs_[k];
      auto pkts = read_pcap(pcaps(in.rel), &in.link_type);
      ASSERT_FALSE(pkts.empty()) << in.rel;
      in.shift = kT0 + k * 100'000'000ull - pkts.front().ts;
      in.iface = fmt::format("in{}", k);
      auto& w = *writers[in.agent];
      std::vector<InterfaceInfo> ifaces = {{in.iface, in.link_type, 262144}};
      for (size_t i = 0; i < pkts.size(); i += 64) {
        ASSERT_TRUE(w.begin_batch(1, ++seq[in.agent], ifaces).ok());
        for (size_t j = i; j < std::min(pkts.size(), i + 64); ++j)
          w.packet({0, pkts[j].ts + in.shift, pkts[j].orig_len, pkts[j].data});
        ASSERT_TRUE(w.end_batch().ok());
        ASSERT_TRUE(w.sync().ok());
        ASSERT_TRUE(w.tick().ok());
      }
    }
    ASSERT_TRUE(writers["edge1"]->close().ok());
    open_writer_ = std::move(writers["edge2"]);  // its last segment stays open
    ASSERT_TRUE(open_writer_->open_segment_path().has_value());
  }
  static void TearDownTestSuite() {
    open_writer_.reset();
    if (!dir_.empty() && !std::getenv("TRAWL_TEST_KEEP")) fs::remove_all(dir_);
  }
  void SetUp() override {
    if (dir_.empty()) GTEST_SKIP() << "needs ../shared/pcaps and tcpdump";
  }

  // What tcpdump selects from the inputs, shifted, in the promised order.
  static std::vector<Pkt> expected(const std::string& filter, uint64_t from, uint64_t to,
                                   const std::vector<std::string>& agents = {"edge1", "edge2"}) {
    struct Keyed {
      uint64_t ts;
      size_t agent, pos;
      Pkt p;
    };
    std::vector<Keyed> all;
    size_t pos = 0;
    for (size_t a = 0; a < agents.size(); ++a) {
      for (const auto& in : inputs_) {
        if (in.agent != agents[a]) continue;
        std::string out = (dir_ / "ref.pcap").string();
        std::string cmd = fmt::format("tcpdump --time-stamp-precision=nano -r '{}' -w '{}' {} 2>/dev/null", pcaps(in.rel), out,
                                      filter.empty() ? "" : "'" + filter + "'");
        fs::remove(out);
        // tcpdump refuses a filter that does not apply to the capture's
        // link type (e.g. "vlan" on Linux cooked): nothing selected there,
        // which is what the query does too.
        if (std::system(cmd.c_str()) != 0 && !fs::exists(out)) continue;
        for (auto& p : read_pcap(out)) {
          p.ts += in.shift;
          p.iface = in.agent + "/" + in.iface;
          if (p.ts < from || p.ts > to) continue;
          all.push_back({p.ts, a, pos++, std::move(p)});
        }
      }
    }
    std::stable_sort(all.begin(), all.end(), [](const Keyed& x, const Keyed& y) {
      return std::tie(x.ts, x.agent, x.pos) < std::tie(y.ts, y.agent, y.pos);
    });
    std::vector<Pkt> out;
    for (auto& k : all) out.push_back(std::move(k.p));
    return out;
  }

  struct Run {
    std::vector<Pkt> packets;
    std::vector<uint8_t> bytes;
    QueryStats stats;
    std::vector<std::string> errors, notices;
  };
  static Run query(const std::string& filter, uint64_t from = 0, uint64_t to = UINT64_MAX,
                   std::vector<std::string> agents = {}) {
    Run run;
    QueryOptions o;
    o.data_dir = dir_;
    o.agents = std::move(agents);
    o.from_ns = from;
    o.to_ns = to;
    o.filter = filter;
    QueryCallbacks cb;
    cb.write = [&](std::span<const uint8_t> b) {
      run.bytes.insert(run.bytes.end(), b.begin(), b.end());
      return ok_status();
    };
    cb.on_error = [&](const std::string& m) { run.errors.push_back(m); };
    cb.on_notice = [&](const std::string& m) { run.notices.push_back(m); };
    auto r = run_query(o, cb);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
    if (r.ok()) run.stats = *r;
    run.packets = parse_pcapng(run.bytes);
    return run;
  }

  static void expect_same(const std::vector<Pkt>& got, const std::vector<Pkt>& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].ts, want[i].ts) << what << " packet " << i;
      ASSERT_EQ(got[i].iface, want[i].iface) << what << " packet " << i;
      ASSERT_EQ(got[i].data, want[i].data) << what << " packet " << i;
      ASSERT_EQ(got[i].orig_len, want[i].orig_len) << what << " packet " << i;
    }
  }

  static std::vector<fs::path> sealed_segments(const std::string& agent) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_ / agent)) {
      auto p = store::parse_segment_file_name(agent, e.path().filename().string());
      if (p && p->sealed) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  static inline fs::path dir_;
  static inline std::vector<Input> inputs_;
  static inline std::unique_ptr<store::SegmentWriter> open_writer_;
};

const char* kFilters[] = {
    "",
    "tcp",
    "host 10.0.0.1 and host 54.192.94.30 and tcp port 55291 and tcp port 80",  // one conversation
    "host 200.57.7.196",
    "udp port 53 or icmp",
    "not tcp",
    "ip6",
    "host 203.0.113.250",  // matches nothing
    "vlan",                // not understood by the index: every block is a candidate
    "net 10.0.0.0/8 and not port 80",
    "sctp or host 10.4.128.21",
    "udp port 4789",
};

TEST_F(QueryGolden, MatchesTcpdumpForFiltersAndWindows) {
  const uint64_t windows[][2] = {
      {0, UINT64_MAX},
      {kT0 + 2'000'000'000ull, kT0 + 9'000'000'000ull},  // crosses many segments of both agents
  };
  for (const char* f : kFilters) {
    for (const auto& w : windows) {
      std::string what = fmt::format("filter \"{}\" window [{}, {}]", f, w[0], w[1]);
      auto run = query(f, w[0], w[1]);
      EXPECT_TRUE(run.errors.empty()) << what;
      expect_same(run.packets, expected(f, w[0], w[1]), what);
      if (::testing::Test::HasFatalFailure()) return;
      if (std::string(f) == "host 203.0.113.250") {
        EXPECT_TRUE(run.packets.empty());
        // Only blocks with ARP (which "host X" also matches) stay candidates.
        EXPECT_LT(run.stats.candidate_blocks * 4, run.stats.blocks) << "the index should rule out most blocks";
      }
      if (w[1] == UINT64_MAX && std::string(f).starts_with("host 10.0.0.1 and")) {
        EXPECT_LT(run.stats.candidate_blocks * 4, run.stats.blocks) << "index should narrow a conversation";
      }
    }
  }
}

TEST_F(QueryGolden, OneAgentAndTheOpenSegment) {
  auto run = query("", 0, UINT64_MAX, {"edge2"});
  expect_same(run.packets, expected("", 0, UINT64_MAX, {"edge2"}), "edge2 only");
  // The open segment's packets are there: the newest input's last packet.
  ASSERT_FALSE(run.packets.empty());
  auto open = open_writer_->open_segment_path();
  ASSERT_TRUE(open.has_value());
  fs::path journal = open->parent_path() / store::index_file_name(open->filename().string());
  EXPECT_TRUE(fs::exists(journal)) << journal;
}

TEST_F(QueryGolden, SealedSegmentsReadWithTsharkAndCapinfos) {
  if (std::system("tshark -v >/dev/null 2>&1") != 0) GTEST_SKIP() << "no tshark";
  for (const std::string agent : {"edge1", "edge2"}) {
    auto segs = sealed_segments(agent);
    ASSERT_GE(segs.size(), 3u) << agent;
    for (const auto& s : {segs.front(), segs.back()}) {
      std::string cmd = fmt::format("tshark -r '{}' 2>/dev/null | wc -l > '{}/n.txt'; capinfos -c -M '{}' >/dev/null 2>&1",
                                    s.string(), dir_.string(), s.string());
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
      std::ifstream n(dir_ / "n.txt");
      uint64_t lines = 0;
      n >> lines;
      auto seg = store::pcapng::MappedFile::open(s);
      ASSERT_TRUE(seg.ok());
      fs::path idx = s;
      idx += ".idx";
      auto index = store::read_index_file(idx, false);
      ASSERT_TRUE(index.ok()) << index.error().message();
      EXPECT_EQ(lines, index->packets) << s;
    }
  }
}

TEST_F(QueryGolden, QueryOutputReadsWithCapinfos) {
  auto run = query("tcp", 0, UINT64_MAX);
  fs::path out = dir_ / "out.pcapng";
  std::ofstream(out, std::ios::binary).write(reinterpret_cast<const char*>(run.bytes.data()),
                                             static_cast<std::streamsize>(run.bytes.size()));
  std::string cmd = fmt::format("capinfos -c -M '{}' > '{}/ci.txt' 2>&1", out.string(), dir_.string());
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream ci(dir_ / "ci.txt");
  std::string text((std::istreambuf_iterator<char>(ci)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find(fmt::format("{}", run.packets.size())), std::string::npos) << text;
}

TEST_F(QueryGolden, MissingOrCorruptIndexGivesTheSameAnswer) {
  const char* f = "host 200.57.7.196 or tcp port 80";
  auto want = expected(f, 0, UINT64_MAX);
  for (const std::string agent : {"edge1", "edge2"}) {
    auto segs = sealed_segments(agent);
    fs::path idx1 = segs[1];
    idx1 += ".idx";
    fs::path idx2 = segs[2];
    idx2 += ".idx";
    ASSERT_TRUE(fs::remove(idx1));
    {
      std::fstream io(idx2, std::ios::in | std::ios::out | std::ios::binary);
      io.seekp(200);
      io.write("garbage!", 8);
    }
  }
  auto run = query(f);
  expect_same(run.packets, want, "after losing indexes");
  EXPECT_EQ(run.stats.indexes_rebuilt, 4u);
  EXPECT_EQ(run.notices.size(), 4u);
  // Written back: the next query needs no rebuild.
  auto again = query(f);
  EXPECT_EQ(again.stats.indexes_rebuilt, 0u);
  expect_same(again.packets, want, "after the rewrite");
}

TEST_F(QueryGolden, CorruptBytesLoseOnlyTheirBlock) {
  // Last in the suite: it damages a segment for good.
  const char* f = "";
  auto want = expected(f, 0, UINT64_MAX);
  for (const std::string agent : {"edge2", "edge1"}) {
    auto segs = sealed_segments(agent);
    const fs::path seg = segs[segs.size() / 2];
    fs::path idx_path = seg;
    idx_path += ".idx";
    auto idx = store::read_index_file(idx_path, false);
    ASSERT_TRUE(idx.ok());
    ASSERT_GE(idx->blocks.size(), 3u);
    const auto& blk = idx->blocks[idx->blocks.size() / 2];
    // The packets of that block, read before the damage.
    auto file = store::pcapng::MappedFile::open(seg);
    ASSERT_TRUE(file.ok());
    auto raw = store::decode_block_bytes(file->bytes(), idx->compressed, blk);
    ASSERT_TRUE(raw.ok());
    std::vector<png::PcapngReader::Interface> ifs;
    for (size_t b = 0; &idx->blocks[b] != &blk; ++b)
      for (const auto& i : idx->blocks[b].new_interfaces) ifs.push_back({i.link_type, i.snaplen, i.name, 9});
    png::PcapngReader r(*raw, ifs);
    std::vector<std::pair<uint64_t, std::vector<uint8_t>>> lost;
    while (r.next() == png::PcapngReader::Next::kBlock)
      if (const auto* e = std::get_if<png::EpbView>(&r.block().view))
        lost.push_back({r.ts_ns(*e), std::vector<uint8_t>(e->data.begin(), e->data.end())});
    ASSERT_FALSE(lost.empty());
    {
      std::fstream io(seg, std::ios::in | std::ios::out | std::ios::binary);
      io.seekp(static_cast<std::streamoff>(blk.file_offset + blk.file_size / 2));
      io.write("\xde\xad\xbe\xef\xde\xad\xbe\xef", 8);
    }
    for (const auto& [ts, data] : lost) {
      auto it = std::find_if(want.begin(), want.end(), [&](const Pkt& p) { return p.ts == ts && p.data == data; });
      ASSERT_NE(it, want.end());
      want.erase(it);
    }
    auto run = query(f);
    const size_t damaged = agent == "edge2" ? 1 : 2;  // the first damage stays
    ASSERT_EQ(run.errors.size(), damaged);
    const auto& msg = run.errors[agent == "edge2" ? 0 : 0];
    bool named = false;
    for (const auto& m : run.errors)
      named = named || (m.find(seg.filename().string()) != std::string::npos &&
                        m.find(fmt::format("offset {}", blk.file_offset)) != std::string::npos);
    EXPECT_TRUE(named) << msg;
    EXPECT_EQ(run.stats.damaged_blocks, damaged);
    expect_same(run.packets, want, "with a damaged block in " + agent);
  }
}

}  // namespace
}  // namespace trawl::query
