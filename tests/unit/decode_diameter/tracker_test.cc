// DiameterTracker: TCP framing over arbitrary chunking, gaps and garbage,
// request/answer matching per connection, unanswered and unsolicited
// transactions, SCTP chunks, and the record fields.
#include <gtest/gtest.h>

#include <map>

#include "diameter_test_util.h"

namespace trawl::decode {
namespace {

using namespace test;  // NOLINT
using nlohmann::json;

const DiameterDictionary& dict() {
  static const DiameterDictionary d = std::move(load_default_dictionary()).value();
  return d;
}

struct Harness {
  std::vector<json> out;
  DiameterTracker tracker{dict(), [this](json&& j) { out.push_back(std::move(j)); }};

  void send(uint64_t conn, bool from_a, const Bytes& b, uint64_t ts_ns, bool sctp = false) {
    DiameterSegment s;
    s.conn_id = conn;
    s.from_a = from_a;
    s.src = from_a ? "10.0.0.1:40000" : "[2001:db8::2]:3868";
    s.dst = from_a ? "[2001:db8::2]:3868" : "10.0.0.1:40000";
    s.sctp = sctp;
    s.ts_ns = ts_ns;
    s.data = b;
    tracker.on_data(s);
  }
  std::map<std::string, uint64_t> anomalies() const {
    std::map<std::string, uint64_t> m;
    for (auto& [k, v] : tracker.anomalies()) m[k] = v;
    return m;
  }
};

TEST(DiameterTracker, MatchesAnswerToRequestWithFields) {
  Harness h;
  h.send(1, true, dwr(0xabc, 0xdef), 1'000'000'000);
  EXPECT_TRUE(h.out.empty());
  h.send(1, false, dwa(0xabc, 0xdef), 1'002'500'000);
  ASSERT_EQ(h.out.size(), 1u);
  const json& r = h.out[0];
  EXPECT_EQ(r["type"], "diameter");
  EXPECT_EQ(r["status"], "answered");
  EXPECT_EQ(r["transport"], "tcp");
  EXPECT_EQ(r["ts"], "1970-01-01T00:00:01.000000000Z");
  EXPECT_EQ(r["ts_ns"], 1'000'000'000u);
  EXPECT_EQ(r["client"], "10.0.0.1:40000");
  EXPECT_EQ(r["server"], "[2001:db8::2]:3868");
  EXPECT_EQ(r["command_code"], 280);
  EXPECT_EQ(r["command"], "DWR");
  EXPECT_EQ(r["application_id"], 0);
  EXPECT_EQ(r["application"], "Diameter-Common-Messages");
  EXPECT_EQ(r["hop_by_hop"], 0xabc);
  EXPECT_EQ(r["end_to_end"], 0xdef);
  EXPECT_EQ(r["origin_host"], "peer-a.example");
  EXPECT_EQ(r["origin_realm"], "example");
  EXPECT_TRUE(r["destination_host"].is_null());
  EXPECT_TRUE(r["session_id"].is_null());
  EXPECT_EQ(r["answer_origin_host"], "peer-b.example");
  EXPECT_DOUBLE_EQ(r["latency_ms"].get<double>(), 2.5);
  EXPECT_EQ(r["result_code"], 2001);
  EXPECT_EQ(r["result_class"], "success");
  EXPECT_EQ(r["error_bit"], false);
  EXPECT_TRUE(r["anomalies"].empty());
  EXPECT_TRUE(h.tracker.anomalies().empty());
}

TEST(DiameterTracker, ResultClasses) {
  Harness h;
  uint32_t codes[] = {1001, 2002, 3002, 4001, 5012, 7000};
  const char* classes[] = {"informational",     "success",           "protocol_error",
                           "transient_failure", "permanent_failure", "unknown"};
  for (uint32_t i = 0; i < 6; ++i) {
    h.send(1, true, dwr(i), i);
    h.send(1, false, dwa(i, 7, codes[i]), i + 1);
    ASSERT_EQ(h.out.size(), i + 1);
    EXPECT_EQ(h.out.back()["result_class"], classes[i]);
  }
}

TEST(DiameterTracker, EveryChunkingOfAStreamGivesTheSameRecords) {
  Bytes stream = cat({dwr(1), dwr(2), dwr(3)});
  Bytes answers = cat({dwa(2), dwa(1), dwa(3)});
  for (size_t chunk = 1; chunk <= stream.size(); chunk += (chunk < 8 ? 1 : 13)) {
    Harness h;
    for (size_t i = 0; i < stream.size(); i += chunk)
      h.send(7, true,
             Bytes(stream.begin() + static_cast<ptrdiff_t>(i),
                   stream.begin() + static_cast<ptrdiff_t>(std::min(stream.size(), i + chunk))),
             10);
    for (size_t i = 0; i < answers.size(); i += chunk)
      h.send(7, false,
             Bytes(answers.begin() + static_cast<ptrdiff_t>(i),
                   answers.begin() + static_cast<ptrdiff_t>(std::min(answers.size(), i + chunk))),
             20);
    ASSERT_EQ(h.out.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(h.out[0]["hop_by_hop"], 2);
    EXPECT_EQ(h.out[1]["hop_by_hop"], 1);
    for (const json& r : h.out) EXPECT_EQ(r["status"], "answered");
    EXPECT_TRUE(h.tracker.anomalies().empty()) << "chunk " << chunk;
    h.tracker.finish();
    EXPECT_EQ(h.out.size(), 3u);
  }
}

TEST(DiameterTracker, UnansweredOnCloseAndUnsolicited) {
  Harness h;
  h.send(1, true, dwr(1), 5);
  h.send(1, true, dwr(2), 6);
  h.send(1, false, dwa(2), 7);
  h.send(1, false, dwa(99), 8);  // nobody asked
  ASSERT_EQ(h.out.size(), 2u);
  EXPECT_EQ(h.out[1]["status"], "unsolicited");
  EXPECT_EQ(h.out[1]["client"], "10.0.0.1:40000");  // the answer went to A
  EXPECT_EQ(h.out[1]["command"], "DWA");
  EXPECT_EQ(h.out[1]["result_code"], 2001);
  EXPECT_TRUE(h.out[1]["latency_ms"].is_null());
  h.tracker.on_close(1);
  ASSERT_EQ(h.out.size(), 3u);
  EXPECT_EQ(h.out[2]["status"], "unanswered");
  EXPECT_EQ(h.out[2]["hop_by_hop"], 1);
  EXPECT_TRUE(h.out[2]["result_code"].is_null());
  h.tracker.finish();
  EXPECT_EQ(h.out.size(), 3u);
}

TEST(DiameterTracker, ConnectionsAndDirectionsAreSeparate) {
  Harness h;
  h.send(1, true, dwr(5), 1);
  h.send(2, true, dwr(5), 2);  // same ids, another connection
  h.send(1, true, dwa(5), 3);  // answer from the requester's own side: no match
  h.send(2, false, dwa(5), 4);
  ASSERT_EQ(h.out.size(), 2u);
  EXPECT_EQ(h.out[0]["status"], "unsolicited");
  EXPECT_EQ(h.out[1]["status"], "answered");
  EXPECT_EQ(h.out[1]["ts_ns"], 2);
  h.tracker.finish();
  ASSERT_EQ(h.out.size(), 3u);
  EXPECT_EQ(h.out[2]["status"], "unanswered");
  EXPECT_EQ(h.out[2]["ts_ns"], 1);
}

TEST(DiameterTracker, GapResyncsAtTheNextHeader) {
  Harness h;
  Bytes first = dwr(1);
  h.send(1, true, Bytes(first.begin(), first.begin() + 10), 1);  // half a message, then loss
  h.tracker.on_gap(1, true);
  Bytes junk = {9, 9, 9, 1, 0, 0};  // tail of the lost message
  h.send(1, true, cat({junk, dwr(2)}), 2);
  h.send(1, false, dwa(2), 3);
  ASSERT_EQ(h.out.size(), 1u);
  EXPECT_EQ(h.out[0]["hop_by_hop"], 2);
  EXPECT_EQ(h.anomalies(), (std::map<std::string, uint64_t>{{"diameter.stream_gap", 1}}));
}

TEST(DiameterTracker, GarbageAndOversizeAreSkipped) {
  Harness h;
  Bytes garbage(100, 0x41);
  h.send(1, true, cat({garbage, dwr(1)}), 1);
  h.send(1, false, dwa(1), 2);
  ASSERT_EQ(h.out.size(), 1u);
  // A header claiming 16 MiB: over the 1 MiB default cap.
  Bytes huge = dwr(2);
  huge[1] = 0xff;
  h.send(1, true, cat({huge, dwr(3)}), 3);
  h.send(1, false, dwa(3), 4);
  ASSERT_EQ(h.out.size(), 2u);
  EXPECT_EQ(h.out[1]["hop_by_hop"], 3);
  auto a = h.anomalies();
  EXPECT_EQ(a["diameter.stream_garbage"], 1u);
  EXPECT_EQ(a["diameter.message_too_long"], 1u);
}

TEST(DiameterTracker, TruncatedAtClose) {
  Harness h;
  Bytes m = dwr(1);
  h.send(1, true, Bytes(m.begin(), m.end() - 3), 1);
  h.tracker.finish();
  EXPECT_TRUE(h.out.empty());
  EXPECT_EQ(h.anomalies()["diameter.stream_truncated"], 1u);
}

TEST(DiameterTracker, Sctp) {
  Harness h;
  h.send(3, true, dwr(1), 1, true);
  h.send(3, false, dwa(1), 2, true);
  ASSERT_EQ(h.out.size(), 1u);
  EXPECT_EQ(h.out[0]["transport"], "sctp");
  // Two messages in one chunk, then a cut one.
  h.send(3, true, cat({dwr(2), dwr(3)}), 3, true);
  Bytes cut = dwr(4);
  cut.resize(cut.size() - 1);
  h.send(3, true, cut, 4, true);
  h.send(3, true, Bytes{7, 7}, 5, true);
  EXPECT_EQ(h.anomalies()["diameter.sctp_partial_message"], 2u);
  h.tracker.finish();
  EXPECT_EQ(h.out.size(), 3u);
}

TEST(DiameterTracker, DuplicatesRetransmissionsAndMismatches) {
  Harness h;
  h.send(1, true, dwr(1), 1);
  Bytes again = dwr(1);
  again[4] |= kCmdFlagT;
  h.send(1, true, again, 2);  // retransmission: same transaction
  EXPECT_TRUE(h.out.empty());
  h.send(1, true, dwr(1), 3);  // reuse without T: the first is reported
  ASSERT_EQ(h.out.size(), 1u);
  EXPECT_EQ(h.out[0]["status"], "unanswered");
  EXPECT_EQ(h.out[0]["anomalies"], json::array({"diameter.duplicate_request"}));
  // Answer with another command code but the same ids.
  Bytes wrong =
      message(282, 0, 0, 1, 7, {avp_u32(268, 2001), avp_str(264, "b"), avp_str(296, "r")});
  h.send(1, false, wrong, 4);
  ASSERT_EQ(h.out.size(), 2u);
  EXPECT_EQ(h.out[1]["status"], "answered");
  EXPECT_EQ(h.out[1]["anomalies"], json::array({"diameter.answer_command_mismatch"}));
  EXPECT_EQ(h.out[1]["ts_ns"], 3);
}

TEST(DiameterTracker, PendingRequestsAreBounded) {
  std::vector<json> out;
  DiameterTracker::Options o;
  o.max_pending_per_connection = 2;
  DiameterTracker t(
      dict(), [&](json&& j) { out.push_back(std::move(j)); }, o);
  for (uint32_t i = 0; i < 3; ++i) {
    Bytes m = dwr(i);
    t.on_data({1, true, "a:1", "b:2", false, i, m});
  }
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["hop_by_hop"], 2);
  EXPECT_EQ(out[0]["anomalies"], json::array({"diameter.too_many_pending"}));
}

TEST(DiameterTracker, AnomaliesReachTheRecord) {
  Harness h;
  Bytes bad = message(280, kCmdFlagR, 0, 1, 7, {avp_str(264, "a")});  // no Origin-Realm
  h.send(1, true, bad, 1);
  h.send(1, false, dwa(1), 2);
  ASSERT_EQ(h.out.size(), 1u);
  EXPECT_EQ(h.out[0]["anomalies"], json::array({"diameter.missing_required_avp"}));
  EXPECT_EQ(h.out[0]["anomaly_details"],
            json::array({"request: missing_required_avp: Origin-Realm in DWR"}));
  // Non-printable bytes in identities are escaped, so the JSON always dumps.
  Bytes odd = message(280, kCmdFlagR, 0, 2, 7, {avp_str(264, "\xff\x01x"), avp_str(296, "r")});
  h.send(1, true, odd, 3);
  h.tracker.finish();
  ASSERT_EQ(h.out.size(), 2u);
  EXPECT_EQ(h.out[1]["origin_host"], "\\xff\\x01x");
  EXPECT_NO_THROW(h.out[1].dump());
}

}  // namespace
}  // namespace trawl::decode
