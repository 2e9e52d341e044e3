// Message parsing and validation on hand-built messages: header fields,
// AVP framing (vendor, padding, grouped), every truncation point, and each
// grammar anomaly against the embedded dictionary.
#include <gtest/gtest.h>

#include "diameter_test_util.h"

namespace trawl::decode {
namespace {

using namespace test;  // NOLINT

const DiameterDictionary& dict() {
  static const DiameterDictionary d = [] {
    auto r = load_default_dictionary();
    EXPECT_TRUE(r.ok()) << r.error().message();
    return std::move(r).value();
  }();
  return d;
}

DiameterAnomalies validate(const Bytes& m, DiameterSummary* out = nullptr,
                           std::vector<std::string>* details = nullptr) {
  DiameterMessage msg = parse_diameter(m);
  DiameterSummary s = validate_diameter(msg, dict(), details);
  if (out) *out = s;
  return msg.anomalies;
}

Bytes cer(std::initializer_list<Bytes> extra = {}) {
  Bytes addr = {0, 1, 10, 0, 0, 1};
  Bytes m = message(257, kCmdFlagR, 0, 0x11223344, 0x55667788,
                    {avp_str(264, "a.example"), avp_str(296, "example"), avp(257, addr),
                     avp_u32(266, 10415), avp_str(269, "trawl", 0), cat(extra)});
  return m;
}

TEST(DiameterParse, HeaderAndAvps) {
  Bytes m = message(316, kCmdFlagR | kCmdFlagP, 16777251, 0xdeadbeef, 0x01020304,
                    {avp_str(263, "sess;1"), avp_u32(1405, 3, kAvpFlagM, 10415)});
  DiameterMessage msg = parse_diameter(m);
  EXPECT_TRUE(msg.header_ok);
  EXPECT_TRUE(msg.anomalies.empty());
  EXPECT_EQ(msg.header.version, 1);
  EXPECT_EQ(msg.header.length, m.size());
  EXPECT_TRUE(msg.header.request());
  EXPECT_FALSE(msg.header.error());
  EXPECT_EQ(msg.header.command_code, 316u);
  EXPECT_EQ(msg.header.application_id, 16777251u);
  EXPECT_EQ(msg.header.hop_by_hop, 0xdeadbeefu);
  EXPECT_EQ(msg.header.end_to_end, 0x01020304u);
  DiameterAvpReader r(msg.avps);
  DiameterAvp a;
  ASSERT_TRUE(r.next(a));
  EXPECT_EQ(a.code, 263u);
  EXPECT_EQ(a.vendor, 0u);
  EXPECT_EQ(std::string(a.data.begin(), a.data.end()), "sess;1");  // padding not included
  ASSERT_TRUE(r.next(a));
  EXPECT_EQ(a.code, 1405u);
  EXPECT_EQ(a.vendor, 10415u);
  EXPECT_EQ(a.flags, kAvpFlagV | kAvpFlagM);
  EXPECT_EQ(a.data.size(), 4u);
  EXPECT_FALSE(r.next(a));
  EXPECT_FALSE(r.error());
}

TEST(DiameterParse, EveryTruncationPointIsNamedNeverRead) {
  Bytes full = cer();
  for (size_t n = 0; n < full.size(); ++n) {
    // A copy of exactly n bytes, so ASan sees any read past the end.
    Bytes cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
    DiameterMessage msg = parse_diameter(cut);
    if (n < kDiameterHeaderBytes) {
      EXPECT_TRUE(msg.anomalies.has(DiameterAnomaly::kHeaderTruncated)) << n;
      EXPECT_FALSE(msg.header_ok);
    } else {
      EXPECT_TRUE(msg.anomalies.has(DiameterAnomaly::kBadMessageLength)) << n;
      // The AVP area ends inside an AVP unless n falls on an AVP boundary.
    }
    validate_diameter(msg, dict());  // must not crash either
  }
  EXPECT_TRUE(parse_diameter(full).anomalies.empty());
}

TEST(DiameterParse, AvpFramingErrors) {
  // AVP length smaller than its header.
  Bytes bad = message(280, kCmdFlagR, 0, 1, 1, {});
  Bytes avp_hdr = {0, 0, 1, 8, 0x40, 0, 0, 4};
  bad.insert(bad.end(), avp_hdr.begin(), avp_hdr.end());
  bad[3] = static_cast<uint8_t>(bad.size());
  EXPECT_TRUE(parse_diameter(bad).anomalies.has(DiameterAnomaly::kAvpBadLength));
  // V bit set but length 8 (no room for the vendor id).
  bad[bad.size() - 4] = 0xc0;
  bad[bad.size() - 1] = 8;
  EXPECT_TRUE(parse_diameter(bad).anomalies.has(DiameterAnomaly::kAvpBadLength));
  // AVP longer than the message.
  bad[bad.size() - 4] = 0x40;
  bad[bad.size() - 1] = 200;
  EXPECT_TRUE(parse_diameter(bad).anomalies.has(DiameterAnomaly::kAvpTruncated));
}

TEST(DiameterParse, HeaderAnomalies) {
  Bytes m = dwr(1);
  m[0] = 2;
  EXPECT_TRUE(parse_diameter(m).anomalies.has(DiameterAnomaly::kBadVersion));
  m = dwr(1);
  m[4] = kCmdFlagR | kCmdFlagE;
  EXPECT_TRUE(parse_diameter(m).anomalies.has(DiameterAnomaly::kBadCommandFlags));
  m = dwr(1);
  m[4] = kCmdFlagR | 0x01;
  EXPECT_TRUE(parse_diameter(m).anomalies.has(DiameterAnomaly::kBadCommandFlags));
  m = dwr(1);
  m[3] = 19;
  m[2] = 0;
  EXPECT_TRUE(parse_diameter(m).anomalies.has(DiameterAnomaly::kBadMessageLength));
  m = dwr(1);
  m.push_back(0);  // trailing byte beyond the length: fine, the length rules
  EXPECT_TRUE(parse_diameter(m).anomalies.empty());
}

TEST(DiameterValidate, WellFormedMessagesHaveNoAnomalies) {
  DiameterSummary s;  // its text fields view the message: keep the message alive
  auto cer_msg = cer();
  EXPECT_TRUE(validate(cer_msg, &s).empty());
  ASSERT_NE(s.command, nullptr);
  EXPECT_EQ(s.command->name, "CER");
  EXPECT_EQ(s.origin_host, "a.example");
  EXPECT_TRUE(validate(dwr(1)).empty());
  EXPECT_TRUE(validate(dwa(1), &s).empty());
  EXPECT_EQ(s.result_code, 2001u);
}

TEST(DiameterValidate, GrammarAnomalies) {
  std::vector<std::string> details;
  // Missing { Origin-Realm }.
  Bytes m = message(280, kCmdFlagR, 0, 1, 1, {avp_str(264, "a")});
  EXPECT_TRUE(validate(m, nullptr, &details).has(DiameterAnomaly::kMissingRequiredAvp));
  ASSERT_FALSE(details.empty());
  EXPECT_EQ(details[0], "missing_required_avp: Origin-Realm in DWR");
  // { Origin-Host } twice.
  m = message(280, kCmdFlagR, 0, 1, 1, {avp_str(264, "a"), avp_str(264, "b"), avp_str(296, "r")});
  EXPECT_TRUE(validate(m).has(DiameterAnomaly::kAvpTooMany));
  // Unknown AVP with the M bit (and without: fine, DWR has * [ AVP ]).
  m = message(280, kCmdFlagR, 0, 1, 1, {avp_str(264, "a"), avp_str(296, "r"), avp_u32(60000, 1)});
  EXPECT_TRUE(validate(m).has(DiameterAnomaly::kUnknownMandatoryAvp));
  m = message(280, kCmdFlagR, 0, 1, 1,
              {avp_str(264, "a"), avp_str(296, "r"), avp_u32(60000, 1, 0)});
  EXPECT_TRUE(validate(m).empty());
  // Fixed < Session-Id > not first (STR).
  Bytes str_avps[] = {avp_str(264, "a"), avp_str(296, "r"), avp_str(283, "r"), avp_u32(258, 4),
                      avp_u32(295, 1)};
  m = message(275, kCmdFlagR | kCmdFlagP, 4, 1, 1,
              {avp_str(263, "s"), str_avps[0], str_avps[1], str_avps[2], str_avps[3], str_avps[4]});
  EXPECT_TRUE(validate(m).empty());
  m = message(275, kCmdFlagR | kCmdFlagP, 4, 1, 1,
              {str_avps[0], avp_str(263, "s"), str_avps[1], str_avps[2], str_avps[3], str_avps[4]});
  EXPECT_TRUE(validate(m).has(DiameterAnomaly::kFixedAvpPosition));
  // Length wrong for the type: Result-Code of 3 bytes.
  m = message(280, 0, 0, 1, 1, {avp(268, {0, 7, 209}), avp_str(264, "a"), avp_str(296, "r")});
  EXPECT_TRUE(validate(m).has(DiameterAnomaly::kAvpLengthForType));
  // Address with family 1 but 16 bytes.
  Bytes bad_addr(18, 0);
  bad_addr[1] = 1;
  m = cer({avp(257, bad_addr)});
  EXPECT_TRUE(validate(m).has(DiameterAnomaly::kAvpLengthForType));
  // Not allowed: Experimental-Result has no * [ AVP ].
  m = message(316, kCmdFlagP, 16777251, 1, 1,
              {avp_str(263, "s"), avp_u32(277, 1), avp_str(264, "a"), avp_str(296, "r"),
               avp_group(297, {avp_u32(266, 10415), avp_u32(298, 5001), avp_u32(268, 2001)})});
  details.clear();
  EXPECT_TRUE(validate(m, nullptr, &details).has(DiameterAnomaly::kAvpNotAllowed));
  EXPECT_EQ(details.at(0), "avp_not_allowed: Result-Code in Experimental-Result");
  // Grouped AVP whose inside is broken.
  m = message(316, kCmdFlagP, 16777251, 1, 1,
              {avp_str(263, "s"), avp_u32(277, 1), avp_str(264, "a"), avp_str(296, "r"),
               avp(297, {0, 0, 1, 10, 0x40, 0, 0, 99})});
  EXPECT_TRUE(validate(m).has(DiameterAnomaly::kAvpTruncated));
  // Unknown command.
  m = message(9999, kCmdFlagR, 0, 1, 1, {avp_str(264, "a")});
  EXPECT_TRUE(validate(m).has(DiameterAnomaly::kUnknownCommand));
}

TEST(DiameterValidate, ExperimentalResultAndErrorAnswers) {
  DiameterSummary s;
  Bytes m = message(318, kCmdFlagP, 16777251, 1, 1,
                    {avp_str(263, "s"), avp_u32(277, 1), avp_str(264, "a"), avp_str(296, "r"),
                     avp_group(297, {avp_u32(266, 10415), avp_u32(298, 5001)})});
  EXPECT_TRUE(validate(m, &s).empty());
  EXPECT_FALSE(s.result_code);
  EXPECT_EQ(s.experimental_result_code, 5001u);
  EXPECT_EQ(s.experimental_result_vendor, 10415u);
  // An E-bit answer follows answer-message, not the CCA grammar (which would
  // want CC-Request-Type etc.).
  m = message(272, kCmdFlagP | kCmdFlagE, 4, 1, 1,
              {avp_str(263, "s"), avp_str(264, "a"), avp_str(296, "r"), avp_u32(268, 3002)});
  EXPECT_TRUE(validate(m, &s).empty());
  EXPECT_EQ(s.result_code, 3002u);
}

TEST(DiameterValidate, DeepNestingIsBounded) {
  // Proxy-Info (grouped, * [ AVP ]) nested 40 deep.
  Bytes inner = avp_str(280, "h");
  for (int i = 0; i < 40; ++i) inner = avp(284, inner);
  Bytes m = message(280, kCmdFlagR, 0, 1, 1, {avp_str(264, "a"), avp_str(296, "r"), inner});
  EXPECT_TRUE(validate(m).has(DiameterAnomaly::kAvpDepthExceeded));
}

}  // namespace
}  // namespace trawl::decode
