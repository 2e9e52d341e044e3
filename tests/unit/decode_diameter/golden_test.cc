// Golden test against tshark over every real capture with Diameter: the
// Diameter PDUs come from tshark itself (-T json -x: diameter_raw plus the
// IP/TCP/SCTP fields and frame times), since decapsulation and TCP
// reassembly are another module's job. They are fed to DiameterTracker, and
// its transactions are compared with
//   tshark -T fields -e diameter.cmd.code -e diameter.flags.request
//          -e diameter.hopbyhopid -e diameter.Result-Code ...
// (same transactions, same result codes). Grammar validation must report
// nothing on these captures except the non-conformances named in
// docs/diameter.md. Skipped when tshark or the captures are missing.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "decode/diameter.h"

namespace trawl::decode {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

bool have_tshark() { return std::system("tshark -v >/dev/null 2>&1") == 0; }

std::vector<uint8_t> unhex(const std::string& h) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
  return out;
}

// --no-duplicate-keys turns repeated fields/layers into arrays: take the
// innermost (last) one.
const json* last(const json& layers, const char* key) {
  auto it = layers.find(key);
  if (it == layers.end()) return nullptr;
  if (it->is_array() && !it->empty() && !it->front().is_string()) return &it->back();
  return &*it;
}
std::string field(const json* obj, const char* key) {
  if (!obj) return {};
  auto it = obj->find(key);
  if (it == obj->end()) return {};
  if (it->is_array()) return it->back().get<std::string>();
  return it->get<std::string>();
}

uint64_t epoch_ns(const std::string& s) {
  auto dot = s.find('.');
  uint64_t secs = std::stoull(s.substr(0, dot));
  std::string frac = dot == std::string::npos ? "" : s.substr(dot + 1);
  frac.resize(9, '0');
  return secs * 1000000000ULL + std::stoull(frac);
}

// All Result-Code (268) values of a message, nested ones included, in wire
// order: what tshark's diameter.Result-Code field lists.
void result_codes(std::span<const uint8_t> avps, const DiameterDictionary& dict, int depth,
                  std::vector<uint32_t>& out) {
  DiameterAvpReader r(avps);
  DiameterAvp a;
  while (r.next(a)) {
    if (a.code == 268 && a.vendor == 0 && a.data.size() == 4)
      out.push_back((uint32_t{a.data[0]} << 24) | (a.data[1] << 16) | (a.data[2] << 8) | a.data[3]);
    const AvpDef* d = dict.find_avp(a.code, a.vendor);
    if (d && d->type == AvpType::kGrouped && depth < 8) result_codes(a.data, dict, depth + 1, out);
  }
}

struct Row {  // one tshark fields line
  uint32_t cmd = 0;
  bool request = false;
  uint32_t hbh = 0;
  std::string result_codes;
  std::string exp_codes;
};

struct Capture {
  std::string path;
  // Non-conformances of the capture itself (docs/diameter.md), name -> count.
  std::map<std::string, uint64_t> expected_anomalies;
};

class DiameterGolden : public ::testing::TestWithParam<Capture> {};

TEST_P(DiameterGolden, MatchesTshark) {
  const Capture& cap = GetParam();
  fs::path file = fs::path(TRAWL_SHARED_PCAPS) / cap.path;
  if (!have_tshark() || !fs::exists(file)) GTEST_SKIP() << "tshark or " << file << " missing";
  auto dict = load_default_dictionary();
  ASSERT_TRUE(dict.ok()) << dict.error().message();

  // Reference: tshark's fields.
  std::vector<Row> rows;
  {
    std::istringstream in(run("tshark -r '" + file.string() +
                              "' -Y diameter -T fields -E occurrence=a -E aggregator=, "
                              "-e diameter.cmd.code -e diameter.flags.request "
                              "-e diameter.hopbyhopid -e diameter.Result-Code "
                              "-e diameter.Experimental-Result-Code"));
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> f;
      std::stringstream ss(line);
      for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
      f.resize(5);
      ASSERT_EQ(f[0].find(','), std::string::npos) << "one Diameter message per frame expected";
      Row r;
      r.cmd = static_cast<uint32_t>(std::stoul(f[0]));
      r.request = f[1] == "1" || f[1] == "True";
      r.hbh = static_cast<uint32_t>(std::stoul(f[2], nullptr, 16));
      r.result_codes = f[3];
      r.exp_codes = f[4];
      rows.push_back(r);
    }
  }
  ASSERT_FALSE(rows.empty());

  // Feed the PDUs to the tracker.
  std::vector<json> records;
  DiameterTracker tracker(*dict, [&](json&& j) { records.push_back(std::move(j)); });
  std::map<std::pair<std::string, std::string>, uint64_t> conn_ids;  // sorted endpoints -> id
  std::map<uint64_t, std::string> side_a;
  // Answer bytes by (cmd, hbh, occurrence) for the nested Result-Code check.
  std::multimap<std::pair<uint32_t, uint32_t>, std::vector<uint32_t>> answer_codes;
  json packets = json::parse(
      run("tshark -r '" + file.string() + "' -Y diameter -T json -x --no-duplicate-keys"));
  size_t messages = 0;
  for (const json& pkt : packets) {
    const json& layers = pkt["_source"]["layers"];
    const json* frame = last(layers, "frame");
    const json* ip = last(layers, "ip");
    const json* ip6 = last(layers, "ipv6");
    const json* tcp = last(layers, "tcp");
    const json* sctp = last(layers, "sctp");
    std::string src_ip = ip ? field(ip, "ip.src") : "[" + field(ip6, "ipv6.src") + "]";
    std::string dst_ip = ip ? field(ip, "ip.dst") : "[" + field(ip6, "ipv6.dst") + "]";
    bool is_sctp = sctp && !tcp;
    const json* l4 = is_sctp ? sctp : tcp;
    ASSERT_NE(l4, nullptr);
    std::string src = src_ip + ":" + field(l4, is_sctp ? "sctp.srcport" : "tcp.srcport");
    std::string dst = dst_ip + ":" + field(l4, is_sctp ? "sctp.dstport" : "tcp.dstport");
    auto key = std::minmax(src, dst);
    auto [it, fresh] = conn_ids.emplace(
        std::pair{key.first + (is_sctp ? "/sctp" : "/tcp"), key.second}, conn_ids.size() + 1);
    uint64_t conn = it->second;
    if (fresh) side_a[conn] = src;
    auto raw = layers.find("diameter_raw");
    ASSERT_NE(raw, layers.end());
    std::vector<json> pdus;
    if (raw->front().is_array()) {
      for (const json& r : *raw) pdus.push_back(r);
    } else {
      pdus.push_back(*raw);
    }
    for (const json& pdu : pdus) {
      std::vector<uint8_t> bytes = unhex(pdu[0].get<std::string>());
      DiameterSegment seg;
      seg.conn_id = conn;
      seg.from_a = side_a[conn] == src;
      seg.src = src;
      seg.dst = dst;
      seg.sctp = is_sctp;
      seg.ts_ns = epoch_ns(field(frame, "frame.time_epoch"));
      seg.data = bytes;
      tracker.on_data(seg);
      ++messages;
      DiameterMessage m = parse_diameter(bytes);
      if (!m.header.request()) {
        std::vector<uint32_t> codes;
        result_codes(m.avps, *dict, 0, codes);
        answer_codes.emplace(std::pair{m.header.command_code, m.header.hop_by_hop}, codes);
      }
    }
  }
  tracker.finish();
  EXPECT_EQ(messages, rows.size());
  EXPECT_EQ(tracker.messages(), rows.size());

  // Expected transactions from tshark's rows: each answer pairs with an
  // earlier request of the same command and hop-by-hop id.
  struct Txn {
    bool request = false, answer = false;
    std::string result_codes, exp_codes;
  };
  std::multimap<std::pair<uint32_t, uint32_t>, Txn> expected;
  for (const Row& r : rows) {
    auto k = std::pair{r.cmd, r.hbh};
    if (r.request) {
      expected.emplace(k, Txn{true, false, "", ""});
      continue;
    }
    auto range = expected.equal_range(k);
    auto open = std::find_if(range.first, range.second,
                             [](const auto& e) { return e.second.request && !e.second.answer; });
    if (open == range.second) {
      expected.emplace(k, Txn{false, true, r.result_codes, r.exp_codes});
    } else {
      open->second.answer = true;
      open->second.result_codes = r.result_codes;
      open->second.exp_codes = r.exp_codes;
    }
  }

  ASSERT_EQ(records.size(), expected.size());
  for (const json& rec : records) {
    auto k = std::pair{rec["command_code"].get<uint32_t>(), rec["hop_by_hop"].get<uint32_t>()};
    std::string status = rec["status"];
    auto range = expected.equal_range(k);
    auto match = std::find_if(range.first, range.second, [&](const auto& e) {
      const Txn& t = e.second;
      std::string s = t.request && t.answer ? "answered" : t.request ? "unanswered" : "unsolicited";
      return s == status;
    });
    ASSERT_NE(match, range.second) << rec.dump();
    const Txn& t = match->second;
    if (t.answer) {
      // Top-level Result-Code is one of tshark's values, and our parse lists
      // exactly tshark's Result-Code values (nested ones included).
      std::string ours;
      auto codes = answer_codes.find(k);
      ASSERT_NE(codes, answer_codes.end());
      for (uint32_t c : codes->second) ours += (ours.empty() ? "" : ",") + std::to_string(c);
      answer_codes.erase(codes);
      EXPECT_EQ(ours, t.result_codes) << rec.dump();
      if (rec["result_code"].is_null()) {
        EXPECT_TRUE(t.result_codes.empty() || t.result_codes.find(',') != std::string::npos)
            << rec.dump();
      } else {
        EXPECT_NE(("," + t.result_codes + ",")
                      .find("," + std::to_string(rec["result_code"].get<uint32_t>()) + ","),
                  std::string::npos)
            << rec.dump();
      }
      std::string exp = rec["experimental_result_code"].is_null()
                            ? ""
                            : std::to_string(rec["experimental_result_code"].get<uint32_t>());
      EXPECT_EQ(exp, t.exp_codes) << rec.dump();
    }
    expected.erase(match);
  }
  EXPECT_TRUE(expected.empty());

  std::map<std::string, uint64_t> got;
  for (const auto& [name, n] : tracker.anomalies()) got[name] = n;
  EXPECT_EQ(got, cap.expected_anomalies);
  if (got != cap.expected_anomalies) {
    for (const json& rec : records)
      if (!rec["anomalies"].empty()) ADD_FAILURE() << rec.dump();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Captures, DiameterGolden,
    ::testing::Values(
        Capture{"diameter/ndpi_diameter_ccr_cca.pcap", {}},
        Capture{"diameter/pypacker_diameter_cea.pcap", {}},
        // Gx Supported-Features without { Vendor-Id } (TS 29.229
        // 6.3.29) in 10 CCRs and their 10 CCAs.
        Capture{"diameter/open5gs_testattach.pcapng", {{"diameter.missing_required_avp", 20}}},
        // One Gx CCA carries Redirect-Server (RFC 4006) holding only
        // Redirect-Support, which belongs in Redirect-Information.
        Capture{"diameter/magma_gx_gy_combined_03.pcapng",
                {{"diameter.avp_not_allowed", 1}, {"diameter.missing_required_avp", 1}}},
        Capture{"sip_rtp/open5gs_volte.pcapng", {}}),
    [](const ::testing::TestParamInfo<Capture>& info) {
      std::string n = fs::path(info.param.path).stem().string();
      for (char& c : n)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

}  // namespace
}  // namespace trawl::decode
