// Golden tests: trawl's numbers against tshark's on the shared captures
// (../shared/pcaps). One row per case. Skipped when tshark or the captures
// are missing.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "golden_util.h"

namespace trawl::decode::testing {
namespace {

namespace fs = std::filesystem;

class Golden : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kPcaps / "MANIFEST.tsv")) GTEST_SKIP() << "no shared captures at " << kPcaps;
    if (!have_tool("tshark")) GTEST_SKIP() << "tshark not installed";
    char tmpl[] = "/tmp/trawl-golden.XXXXXX";
    tmp_ = ::mkdtemp(tmpl);
  }
  void TearDown() override {
    if (!tmp_.empty()) fs::remove_all(tmp_);
  }
  fs::path tmp_;
};

// ------------------------------------------------------------------ RTP

// tshark -q -z rtp,streams, one map entry per stream:
// "src port dst port ssrc" -> "pkts lost min_d mean_d max_d min_j mean_j max_j".
std::map<std::string, std::string> tshark_rtp_streams(const fs::path& f, bool heuristic) {
  std::string out = run(std::string("tshark ") + (heuristic ? "--enable-heuristic rtp_udp " : "") +
                        "-q -z rtp,streams -r " + shq(f));
  std::map<std::string, std::string> m;
  for (const auto& line : split(out, '\n')) {
    std::vector<std::string> w;
    for (const auto& t : split(line, ' '))
      if (!t.empty()) w.push_back(t);
    // start end src sport dst dport ssrc payload... pkts lost (pct) 6 figures [X]
    if (w.size() < 17 || w[6].rfind("0x", 0) != 0) continue;
    size_t n = w.size();
    bool problem = w[n - 1] == "X";
    size_t last = problem ? n - 2 : n - 1;  // index of max jitter
    std::string key = w[2] + " " + w[3] + " " + w[4] + " " + w[5] + " " + w[6];
    std::string val = w[last - 8] + " " + w[last - 7];
    for (size_t i = last - 5; i <= last; ++i) val += " " + w[i];
    m[key] = val;
  }
  return m;
}

std::map<std::string, std::string> our_rtp_streams(const AnalyzeRun& r) {
  std::map<std::string, std::string> m;
  for (const auto& j : r.records) {
    if (j["kind"] != "rtp") continue;
    std::string key = fmt::format("{} {} {} {} {}", j["src_ip"].get<std::string>(), j["src_port"].get<int>(),
                                  j["dst_ip"].get<std::string>(), j["dst_port"].get<int>(),
                                  j["ssrc_hex"].get<std::string>());
    m[key] = fmt::format("{} {} {:.3f} {:.3f} {:.3f} {:.3f} {:.3f} {:.3f}", j["packets"].get<uint64_t>(),
                         j["lost"].get<int64_t>(), j["min_delta_ms"].get<double>(), j["mean_delta_ms"].get<double>(),
                         j["max_delta_ms"].get<double>(), j["min_jitter_ms"].get<double>(),
                         j["mean_jitter_ms"].get<double>(), j["max_jitter_ms"].get<double>());
  }
  return m;
}

struct RtpCase {
  const char* file;
  bool heuristic;     // ours with the heuristic, tshark with --enable-heuristic rtp_udp
  size_t min_streams;
};
const RtpCase kRtpCases[] = {
    {"sip_rtp/SIP_CALL_RTP_G711.pcap", false, 3},  // SDP-announced only (tshark's default)
    {"sip_rtp/SIP_CALL_RTP_G711.pcap", true, 5},   // plus the heuristic streams
    {"sip_rtp/ndpi_sip.pcap", true, 1},
    {"gtp/arkime_gtp_iphone_sll.pcap", true, 2},   // RTP over IPv6 in GTP-U, ~97% loss
    {"sip_rtp/open5gs_volte.pcapng", true, 4},     // AMR-WB in GTP-U, duplicates -> negative loss
};

void expect_same_rtp(const fs::path& f, bool heuristic, size_t min_streams) {
  auto theirs = tshark_rtp_streams(f, heuristic);
  AnalyzeOptions opt;
  opt.rtp_heuristic = heuristic;
  auto run = analyze(f, {"rtp"}, opt);
  ASSERT_TRUE(run.error.empty()) << run.error;
  auto ours = our_rtp_streams(run);
  EXPECT_GE(theirs.size(), min_streams) << f;
  EXPECT_EQ(ours, theirs) << f;
}

TEST_F(Golden, RtpStreamsEqualTshark) {
  for (const auto& c : kRtpCases) {
    SCOPED_TRACE(c.file);
    expect_same_rtp(kPcaps / c.file, c.heuristic, c.min_streams);
  }
}

// Loss made by deleting RTP packets from a real capture with editcap.
TEST_F(Golden, RtpLossFromEditcapEqualsTshark) {
  if (!have_tool("editcap")) GTEST_SKIP() << "editcap not installed";
  fs::path src = kPcaps / "sip_rtp/SIP_CALL_RTP_G711.pcap";
  // RTP frames of the 0x58F33DEA stream, found by tshark.
  std::string frames = run("tshark -r " + shq(src) +
                           " -d udp.port==8000,rtp -Y 'rtp.ssrc==0x58f33dea && udp.srcport==40376' -T fields -e frame.number");
  auto list = split(frames, '\n');
  ASSERT_GT(list.size(), 400u);
  std::string del = list[100] + " " + list[101] + " " + list[102] + " " + list[250] + " " + list[300] + "-" +
                    list[300];  // 5 packets, one a range of one
  fs::path lossy = tmp_ / "lossy.pcap";
  int rc = -1;
  run("editcap " + shq(src) + " " + shq(lossy) + " " + del, &rc);
  ASSERT_EQ(rc, 0);
  expect_same_rtp(lossy, false, 3);
  AnalyzeOptions sdp_only;
  sdp_only.rtp_heuristic = false;
  auto run2 = analyze(lossy, {"rtp"}, sdp_only);
  int64_t lost = 0;
  for (const auto& j : run2.records)
    if (j["kind"] == "rtp" && j["ssrc_hex"] == "0x58F33DEA") lost = j["lost"].get<int64_t>();
  EXPECT_EQ(lost, 5);
}

// ------------------------------------------------------------------ DNS

// Answered transactions as "id qname rcode answers latency_s".
TEST_F(Golden, DnsTransactionsEqualTshark) {
  const char* files[] = {"dns/pcapplusplus_DnsPackets.pcap", "dns/tcpdump_dns_tcp.pcap", "dns/tcpdump_dns_udp.pcap",
                         "dns/tcpdump_dnssec.pcap",          "dns/tcpdump_edns_opts.pcap",
                         "formats/zeek_pcapng_multi_interface.pcapng",
                         "formats/pcapplusplus_many_interfaces_mixed_linktypes.pcapng",
                         "formats/pcapplusplus_raw_ip.pcap", "formats/pcapplusplus_null_loopback.pcap",
                         "mixed/pcapplusplus_many_protocols.pcap", "gtp/arkime_gtp_iphone_sll.pcap"};
  for (const char* name : files) {
    SCOPED_TRACE(name);
    fs::path f = kPcaps / name;
    std::multiset<std::string> theirs, ours;
    size_t their_queries = 0, their_responses = 0;
    std::string out = run("tshark -r " + shq(f) +
                          " -Y 'dns && (udp.port==53 || tcp.port==53)' -T fields -E separator=/t -e dns.flags.response"
                          " -e dns.id -e dns.qry.name -e dns.flags.rcode -e dns.count.answers -e dns.time");
    for (const auto& line : split(out, '\n')) {
      auto w = split(line, '\t');
      if (w.size() < 6) continue;
      if (w[0] == "0" || w[0] == "False") {
        ++their_queries;
        continue;
      }
      ++their_responses;
      if (w[5].empty()) continue;
      unsigned id = std::stoul(w[1], nullptr, 16);
      theirs.insert(fmt::format("{} {} {} {} {:.6f}", id, w[2], w[3], w[4], std::stod(w[5])));
    }
    auto r = analyze(f, {"dns"});
    ASSERT_TRUE(r.error.empty()) << r.error;
    size_t our_queries = 0, our_responses = 0;
    for (const auto& j : r.records) {
      if (j["kind"] != "dns") continue;
      if (j.contains("query_ts_ns")) our_queries += 1 + j["retransmissions"].get<uint32_t>();
      if (j.contains("response_ts_ns")) ++our_responses;
      if (j["status"] != "answered") continue;
      ours.insert(fmt::format("{} {} {} {} {:.6f}", j["id"].get<int>(), j["qname"].get<std::string>(),
                              j["rcode"].get<int>(), j["answer_count"].get<int>(), j["latency_ms"].get<double>() / 1000));
    }
    EXPECT_EQ(ours, theirs);
    EXPECT_EQ(our_queries, their_queries);
    EXPECT_EQ(our_responses, their_responses);
  }
}

// ------------------------------------------------------------------ Diameter

// End to end: capture reader -> decapsulation -> TCP reassembly / SCTP ->
// Diameter tracker, against
//   tshark -T fields -e diameter.cmd.code -e diameter.flags.request
//          -e diameter.hopbyhopid -e diameter.Result-Code
//          -e diameter.Experimental-Result-Code
// One entry per transaction: "cmd hop-by-hop status result exp-result",
// where tshark's rows are paired request -> later answer of the same command
// and hop-by-hop id. tshark lists every Result-Code of a message (nested ones
// too); the record has the top-level one, which must be among them, and is
// compared as tshark's when there is exactly one.
TEST_F(Golden, DiameterTransactionsEqualTshark) {
  // The captures' own non-conformances (docs/diameter.md); nothing else may
  // be reported, by the decoder or by decapsulation / TCP / SCTP.
  struct Case {
    const char* file;
    std::map<std::string, uint64_t> anomalies;
  };
  const Case cases[] = {
      {"diameter/magma_gx_gy_combined_03.pcapng",
       {{"diameter.avp_not_allowed", 1}, {"diameter.missing_required_avp", 1}}},
      {"diameter/ndpi_diameter_ccr_cca.pcap", {}},
      {"diameter/open5gs_testattach.pcapng", {{"diameter.missing_required_avp", 20}}},
      {"diameter/pypacker_diameter_cea.pcap", {}},
      {"sip_rtp/open5gs_volte.pcapng", {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    fs::path f = kPcaps / c.file;
    struct Txn {
      uint32_t cmd, hbh;
      bool request, answer;
      std::string rc, exp;
    };
    std::vector<Txn> txns;
    size_t their_messages = 0;
    std::string out = run("tshark -r " + shq(f) +
                          " -Y diameter -T fields -E occurrence=a -E aggregator=, -E separator=/t"
                          " -e diameter.cmd.code -e diameter.flags.request -e diameter.hopbyhopid"
                          " -e diameter.Result-Code -e diameter.Experimental-Result-Code");
    for (const auto& line : split(out, '\n')) {
      auto w = split(line, '\t');
      if (w.size() < 5) continue;
      ASSERT_EQ(w[0].find(','), std::string::npos) << "one Diameter message per frame expected: " << line;
      ++their_messages;
      Txn t{static_cast<uint32_t>(std::stoul(w[0])), static_cast<uint32_t>(std::stoul(w[2], nullptr, 16)), false,
            false, w[3], w[4]};
      if (w[1] == "1" || w[1] == "True") {
        t.request = true;
        txns.push_back(t);
        continue;
      }
      auto open = std::find_if(txns.begin(), txns.end(), [&](const Txn& x) {
        return x.request && !x.answer && x.cmd == t.cmd && x.hbh == t.hbh;
      });
      if (open == txns.end()) {
        t.answer = true;
        txns.push_back(t);
      } else {
        open->answer = true;
        open->rc = t.rc;
        open->exp = t.exp;
      }
    }
    std::multiset<std::string> theirs, ours;
    std::map<std::string, std::string> all_codes;  // "cmd hbh" -> tshark's Result-Code list
    for (const Txn& t : txns) {
      const char* status = t.request && t.answer ? "answered" : t.request ? "unanswered" : "unsolicited";
      std::string rc = t.rc.find(',') == std::string::npos ? t.rc : "nested";
      theirs.insert(fmt::format("{} {} {} {} {}", t.cmd, t.hbh, status, rc, t.exp));
      all_codes[fmt::format("{} {}", t.cmd, t.hbh)] = t.rc;
    }
    auto r = analyze(f, {"diameter"});
    ASSERT_TRUE(r.error.empty()) << r.error;
    for (const auto& j : r.records) {
      if (j["kind"] != "diameter") continue;
      uint32_t cmd = j["command_code"], hbh = j["hop_by_hop"];
      std::string rc = j["result_code"].is_null() ? "" : std::to_string(j["result_code"].get<uint32_t>());
      std::string list = all_codes[fmt::format("{} {}", cmd, hbh)];
      if (list.find(',') != std::string::npos) {
        EXPECT_NE(("," + list + ",").find("," + rc + ","), std::string::npos) << j.dump();
        rc = "nested";
      }
      std::string exp = j["experimental_result_code"].is_null()
                            ? ""
                            : std::to_string(j["experimental_result_code"].get<uint32_t>());
      ours.insert(fmt::format("{} {} {} {} {}", cmd, hbh, j["status"].get<std::string>(), rc, exp));
    }
    EXPECT_GT(theirs.size(), 0u);
    EXPECT_EQ(ours, theirs);
    uint64_t our_messages = 0;
    for (const auto& j : r.records)
      if (j["kind"] == "diameter") our_messages += j["status"] == "answered" ? 2 : 1;
    EXPECT_EQ(our_messages, their_messages);
    std::map<std::string, uint64_t> anomalies;
    for (const auto& j : r.records)
      if (j["kind"] == "summary")
        for (const auto& [k, v] : j["anomalies"].items()) anomalies[k] += v.get<uint64_t>();
    EXPECT_EQ(anomalies, c.anomalies);
    // `all` runs the Diameter row too, with the same records.
    auto every = analyze(f, {"all"});
    std::vector<std::string> only, with_all;
    for (const auto& j : r.records)
      if (j["kind"] == "diameter") only.push_back(j.dump());
    for (const auto& j : every.records)
      if (j["kind"] == "diameter") with_all.push_back(j.dump());
    EXPECT_EQ(with_all, only);
  }
}

// ------------------------------------------------------------------ GSMTAP

TEST_F(Golden, GsmtapCountsEqualTshark) {
  fs::path f = kPcaps / "gsmtap/pysim_trace_gsmtap_sim.pcapng";
  // tshark 4.0 puts no header fields in the tree for SIM frames, so count
  // frames per carried protocol: type 4 (SIM) is dissected as gsm_sim.
  size_t total = split(run("tshark -r " + shq(f) + " -Y 'frame.protocols contains \"gsmtap\"' -T fields -e frame.number"),
                       '\n').size() - 1;
  size_t sim = split(run("tshark -r " + shq(f) + " -Y 'udp.port==4729 && gsm_sim' -T fields -e frame.number"), '\n').size() - 1;
  auto r = analyze(f, {"gsmtap"});
  ASSERT_TRUE(r.error.empty()) << r.error;
  uint64_t frames = 0, type4 = 0, per_frame = 0;
  for (const auto& j : r.records) {
    if (j["kind"] == "gsmtap") {
      ++per_frame;
      EXPECT_EQ(j["version"], 2);
      EXPECT_EQ(j["hdr_len"], 16);
    }
    if (j["kind"] != "gsmtap_counts") continue;
    frames = j["frames"];
    for (const auto& t : j["by_type"])
      if (t["type"] == 4) type4 = t["frames"];
  }
  EXPECT_EQ(total, 957u);
  EXPECT_EQ(frames, total);
  EXPECT_EQ(per_frame, total);
  EXPECT_EQ(type4, sim);
}

// ------------------------------------------------------------------ decapsulation

// Inner packets found through tunnels, against tshark's counts.
class CountingHandler : public L4Handler {
 public:
  void on_l4(const L4Packet& p) override {
    if (p.tunnel_depth > 0) ++inner[p.proto];
    ++all[p.proto];
  }
  std::map<uint8_t, uint64_t> inner, all;
};

struct DecapCase {
  const char* file;
  const char* tshark_extra;
  const char* filter;  // frames tshark sees carrying the inner protocol
  uint8_t proto;
};
const DecapCase kDecapCases[] = {
    {"vxlan/tcpdump_vxlan_4789.pcap", "", "vxlan && icmp", 1},
    {"vxlan/tcpdump_vxlan_8472.pcap", "-d udp.port==8472,vxlan", "vxlan && icmp", 1},
    {"vxlan/zeek_vxlan_encapsulated_http.pcap", "", "vxlan && tcp", kProtoTcp},
    {"gtp/pcapplusplus_gtp_u.pcap", "", "gtp && icmp", 1},
    {"gtp/zeek_gtp1_gn_fragmentation.pcap", "", "gtp && tcp", kProtoTcp},  // outer IP fragments
    {"gtp/arkime_gtp_iphone_sll.pcap", "", "gtp && dns", kProtoUdp},  // not the UDP quoted in ICMP errors
};

TEST_F(Golden, TunnelsAndFragmentsEqualTshark) {
  for (const auto& c : kDecapCases) {
    SCOPED_TRACE(c.file);
    fs::path f = kPcaps / c.file;
    size_t theirs = split(run(std::string("tshark ") + c.tshark_extra + " -r " + shq(f) + " -Y '" + c.filter +
                              "' -T fields -e frame.number"),
                          '\n').size() - 1;
    CountingHandler h;
    Decapsulator d(h);
    auto r = CaptureReader::open(f.string());
    ASSERT_TRUE(r.ok());
    uint64_t dns_inner = 0;
    struct Dns : L4Handler {
      CountingHandler* base;
      uint64_t* n;
      void on_l4(const L4Packet& p) override {
        base->on_l4(p);
        if (p.tunnel_depth > 0 && p.proto == kProtoUdp && (p.sport == 53 || p.dport == 53)) ++*n;
      }
    } dh;
    dh.base = &h;
    dh.n = &dns_inner;
    Decapsulator d2(dh);
    while ((*r)->next() == CaptureReader::Next::kFrame) d2.decode((*r)->frame());
    uint64_t ours = c.proto == kProtoUdp ? dns_inner : h.inner[c.proto];
    EXPECT_GT(theirs, 0u);
    EXPECT_EQ(ours, theirs);
  }
}

// ------------------------------------------------------------------ formats and malformed input

TEST_F(Golden, EveryFormatReadsToTheEndWithTsharksFrameCount) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kPcaps / "formats")) files.push_back(e.path());
  // zstd: the same capture split in two independently compressed frames.
  if (have_tool("zstd")) {
    fs::path src = kPcaps / "sip_rtp/SIP_CALL_RTP_G711.pcap";
    fs::path z = tmp_ / "two_frames.pcap.zst";
    run("head -c 400000 " + shq(src) + " | zstd -q -c > " + shq(z) + " && tail -c +400001 " + shq(src) +
        " | zstd -q -c >> " + shq(z));
    files.push_back(z);
  }
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    std::string count = run("capinfos -c -M -T -r " + shq(f) + " | cut -f2");
    if (f.extension() == ".zst") count = run("zstd -dc " + shq(f) + " | capinfos -c -M -T -r - | cut -f2");
    auto r = analyze(f, {"all"});
    EXPECT_FALSE(r.corrupt) << r.error;
    EXPECT_EQ(std::to_string(r.frames), split(count, '\n')[0]);
  }
}

TEST_F(Golden, MalformedCapturesAreCountedNotFatal) {
  std::map<std::string, uint64_t> totals;
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(kPcaps / "malformed")) {
    SCOPED_TRACE(e.path().string());
    auto r = analyze(e.path(), {"all"});
    bool summary = false;
    for (const auto& j : r.records) {
      if (j["kind"] != "summary") continue;
      summary = true;
      for (const auto& [k, v] : j["anomalies"].items()) totals[k] += v.get<uint64_t>();
    }
    EXPECT_TRUE(summary);
    ++n;
  }
  EXPECT_GE(n, 18u);
  // Each kind of fault shows up under its name.
  EXPECT_GT(totals["link.unsupported_type"], 0u);
  EXPECT_GT(totals["ip.bad_total_length"], 0u);
  EXPECT_GT(totals["ip.truncated"], 0u);
  EXPECT_GT(totals["udp.truncated"], 0u);
  EXPECT_GT(totals["sctp.truncated"], 0u);
  EXPECT_GT(totals["tcp.truncated"] + totals["tcp.bad_header_length"], 0u);
}

}  // namespace
}  // namespace trawl::decode::testing
