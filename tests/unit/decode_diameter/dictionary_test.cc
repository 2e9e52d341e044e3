// Grammar parser: well-formed text, each error kind (with file:line:column),
// the embedded dictionary, and --dictionary directory overrides.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "decode/diameter_dictionary.h"

namespace trawl::decode {
namespace {

const char* kPrelude = R"(vendor 10415 TGPP
application 0 Base
avp Origin-Host 264 0 DiameterIdentity M - V
avp Origin-Realm 296 0 DiameterIdentity M - V
avp Session-Id 263 0 UTF8String M - V
avp Result-Code 268 0 Unsigned32 M - V
avp Vendor-Id 266 0 Unsigned32 M - V
avp Host-IP-Address 257 0 Address M - V
avp Experimental-Result 297 0 Grouped M - V
avp Experimental-Result-Code 298 0 Unsigned32 M - V
avp Supported-Features 628 TGPP Grouped V M -
avp Disconnect-Cause 273 0 Enumerated M - V
enum Disconnect-Cause REBOOTING 0
enum Disconnect-Cause BUSY 1
)";

Result<DiameterDictionary> parse(const std::string& body) {
  return DiameterDictionary::parse({{"t.ccf", std::string(kPrelude) + body}});
}

// Parses and returns the error message ("" on success).
std::string error_of(const std::string& body) {
  auto d = parse(body);
  return d.ok() ? "" : d.error().message();
}

TEST(DiameterDictionary, ParsesCommandsGroupedAvpsAndQualifiers) {
  auto d = parse(R"(
<Experimental-Result> ::= < AVP Header: 297 >
                          { Vendor-Id }
                          { Experimental-Result-Code }
<Supported-Features> ::= <AVP header: 628 10415>
                         { Vendor-Id }
                        *[ AVP ]
<XR> ::= < Diameter Header: 999, REQ, PXY, 16777251 >
         < Session-Id >
         { Origin-Host }
      1* { Host-IP-Address }
      *3 [ Vendor-Id ]
    2*5  [ AVP ]
<XA> ::= < Diameter Header: 999, PXY, 16777251 >
         < Session-Id >
         { Result-Code }
         [ Experimental-Result ]
)");
  // "2*5 [ AVP ]": an optional rule's minimum must be 0.
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find("t.ccf:27:5: an optional rule's minimum must be 0"),
            std::string::npos)
      << d.error().message();

  d = parse(R"(
<Experimental-Result> ::= < AVP-Header: 297 >
                          { Vendor-Id }
                          { Experimental-Result-Code }
<Supported-Features> ::= <AVP header: 628 10415>
                         { Vendor-Id }
                        *[ AVP ]
<XR> ::= < Diameter Header: 999, REQ, PXY, 16777251 >
         < Session-Id >
         { Origin-Host }
      1* { Host-IP-Address }
      *3 [ Vendor-Id ]
       * [ AVP ]
<XA> ::= < Diameter Header: 999, PXY 16777251 >
         < Session-Id >
         { Result-Code }
    0*0  [ Experimental-Result ]
)");
  ASSERT_TRUE(d.ok()) << d.error().message();
  const CommandDef* xr = d->find_command(999, 16777251, true);
  ASSERT_NE(xr, nullptr);
  EXPECT_EQ(xr->name, "XR");
  EXPECT_TRUE(xr->proxiable);
  const Grammar& g = d->grammar(xr->grammar);
  ASSERT_EQ(g.rules.size(), 5u);
  EXPECT_EQ(g.rules[0].kind, GrammarRule::Kind::kFixed);
  EXPECT_EQ(g.rules[0].min, 1u);
  EXPECT_EQ(g.rules[0].max, 1u);
  EXPECT_EQ(g.rules[1].kind, GrammarRule::Kind::kRequired);
  EXPECT_EQ(g.rules[2].min, 1u);
  EXPECT_EQ(g.rules[2].max, kUnbounded);
  EXPECT_EQ(g.rules[3].kind, GrammarRule::Kind::kOptional);
  EXPECT_EQ(g.rules[3].min, 0u);
  EXPECT_EQ(g.rules[3].max, 3u);
  EXPECT_EQ(g.wildcard_rule, 4);
  EXPECT_EQ(g.rule_of_avp[static_cast<size_t>(d->avp_index(266, 0))], 3);
  const CommandDef* xa = d->find_command(999, 16777251, false);
  ASSERT_NE(xa, nullptr);
  EXPECT_EQ(d->grammar(xa->grammar).rules[2].max, 0u);
  EXPECT_EQ(d->find_command(999, 4, true), nullptr);  // not in app 0 either
  const AvpDef* sf = d->find_avp(628, 10415);
  ASSERT_NE(sf, nullptr);
  EXPECT_EQ(sf->must, kAvpFlagV);
  EXPECT_EQ(sf->may, kAvpFlagM);
  EXPECT_GE(sf->grammar, 0);
  EXPECT_EQ(d->find_avp(628, 0), nullptr);
  const AvpDef* dc = d->find_avp(273, 0);
  EXPECT_EQ(d->enum_name(*dc, 1), "BUSY");
  EXPECT_EQ(d->enum_name(*dc, 7), "");
  EXPECT_EQ(d->application_name(0), "Base");
}

TEST(DiameterDictionary, BaseCommandsServeEveryApplication) {
  auto d = parse(R"(
<DWR> ::= < Diameter Header: 280, REQ >
          { Origin-Host }
          * [ AVP ]
)");
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_NE(d->find_command(280, 0, true), nullptr);
  EXPECT_NE(d->find_command(280, 16777238, true), nullptr);
  EXPECT_EQ(d->find_command(280, 0, false), nullptr);
}

struct BadCase {
  const char* text;
  const char* error;  // substring of the message, with its position
};

class DiameterDictionaryErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(DiameterDictionaryErrors, NamesFileLineColumnAndWhy) {
  std::string e = error_of(GetParam().text);
  EXPECT_NE(e.find(GetParam().error), std::string::npos) << "got: " << e;
}

// kPrelude has 14 lines; the case text starts on line 15.
INSTANTIATE_TEST_SUITE_P(
    Cases, DiameterDictionaryErrors,
    ::testing::Values(
        BadCase{"bogus 1 2\n", "t.ccf:15:1: expected 'vendor', 'application', 'avp', 'enum'"},
        BadCase{"avp X 1 0 Weird M - V\n", "t.ccf:15:11: unknown AVP data type 'Weird'"},
        BadCase{"avp X 1 0 Unsigned32 MX - V\n", "t.ccf:15:22: bad AVP flags 'MX'"},
        BadCase{"avp X 1 0 Unsigned32 M M V\n", "a flag is in more than one of MUST/MAY/MUST NOT"},
        BadCase{"avp X 1 ACME Unsigned32 M - V\n", "t.ccf:15:9: unknown vendor 'ACME'"},
        BadCase{"avp X 99999999999 0 Unsigned32 M - V\n",
                "t.ccf:15:7: AVP code '99999999999' is out of range"},
        BadCase{"avp X 1 0 Unsigned32 M -\n", "avp: missing MUST NOT flags"},
        BadCase{"avp X 1 0 Unsigned32 M - V extra\n",
                "t.ccf:15:28: unexpected 'extra' after the avp line"},
        BadCase{"avp Origin-Host 1 0 Unsigned32 M - V\n",
                "avp name Origin-Host already defined at t.ccf:3"},
        BadCase{"avp Other 264 0 Unsigned32 M - V\n",
                "t.ccf:15: avp Other redefines code 264 vendor 0"},
        BadCase{"enum Nope A 1\n", "t.ccf:15:1: enum for unknown AVP Nope"},
        BadCase{"enum Origin-Host A 1\n", "only Enumerated, Unsigned32 and Integer32 take names"},
        BadCase{"enum Disconnect-Cause AGAIN 1\n", "enum value 1 of Disconnect-Cause named twice"},
        BadCase{"enum Disconnect-Cause X one\n", "t.ccf:15:25: enum: expected a number"},
        BadCase{"vendor 1 TGPP\n", "vendor TGPP already has id 10415"},
        BadCase{"avp X 1 0 Unsigned32 M - V $\n", "t.ccf:15:28: unexpected character '$'"},
        BadCase{"<X> = < Diameter Header: 1 >\n", "t.ccf:15:5: unexpected character '='"},
        BadCase{"<X> < Diameter Header: 1 >\n", "t.ccf:15:5: expected '::=' after <X>, found '<'"},
        BadCase{"<X> ::= < Diameter Heder: 1 >\n",
                "t.ccf:15:20: expected 'Diameter Header:', found 'Heder'"},
        BadCase{"<X> ::= < Diameter Header: 1, FOO > { Origin-Host }\n",
                "t.ccf:15:31: expected REQ, PXY, ERR, an application id or '>'"},
        BadCase{"<X> ::= < Diameter Header: 1 REQ > { Origin-Host }\n",
                "t.ccf:15:30: expected ',' before 'REQ'"},
        BadCase{"<X> ::= < Diameter Header: 1, REQ, REQ > { Origin-Host }\n", "'REQ' repeated"},
        BadCase{"<X> ::= < Diameter Header: 1 >\n", "definition has no AVP rules"},
        BadCase{"<X> ::= < Diameter Header: 1 > { Origin-Host ]\n",
                "t.ccf:15:46: expected '}' to close '{ Origin-Host', found ']'"},
        BadCase{"<X> ::= < Diameter Header: 1 > { Origin-Host\n",
                "expected '}' to close '{ Origin-Host', found end of file"},
        BadCase{"<X> ::= < Diameter Header: 1 > { Nope }\n", "t.ccf:15:34: unknown AVP Nope in X"},
        BadCase{"<X> ::= < Diameter Header: 1 > { Origin-Host } [ Origin-Host ]\n",
                "t.ccf:15:50: Origin-Host listed twice in X"},
        BadCase{"<X> ::= < Diameter Header: 1 > *[ AVP ] *[ AVP ]\n", "'AVP' listed twice in X"},
        BadCase{"<X> ::= < Diameter Header: 1 > < AVP >\n",
                "t.ccf:15:34: the wildcard 'AVP' cannot be a fixed rule"},
        BadCase{"<X> ::= < Diameter Header: 1 > 3*2 [ Origin-Host ]\n",
                "t.ccf:15:32: qualifier minimum 3 exceeds maximum 2"},
        BadCase{"<X> ::= < Diameter Header: 1 > 0*2 { Origin-Host }\n",
                "a required rule needs a minimum of at least 1"},
        BadCase{"<X> ::= < Diameter Header: 1 > 1*2 [ Origin-Host ]\n",
                "an optional rule's minimum must be 0"},
        BadCase{"<X> ::= < Diameter Header: 1 > 2 { Origin-Host }\n",
                "t.ccf:15:34: expected '*' after the qualifier minimum"},
        BadCase{"<X> ::= < Diameter Header: 1 > { 3 }\n",
                "t.ccf:15:34: expected an AVP name (a name), found '3'"},
        BadCase{"<X> ::= < Diameter Header: 1 > { Origin-Host }\n<Y> ::= < Diameter Header: 1 > { "
                "Origin-Host }\n",
                "t.ccf:16: command Y (1, application 0) already defined at t.ccf:15"},
        BadCase{"<Nope> ::= < AVP Header: 5 > { Origin-Host }\n",
                "t.ccf:15:1: grouped AVP Nope has no 'avp' line"},
        BadCase{"<Origin-Host> ::= < AVP Header: 264 > { Vendor-Id }\n",
                "Origin-Host is DiameterIdentity, not Grouped"},
        BadCase{"<Experimental-Result> ::= < AVP Header: 298 > { Vendor-Id }\n",
                "AVP header of Experimental-Result says code 298"},
        BadCase{"<Supported-Features> ::= < AVP Header: 628 10 > { Vendor-Id }\n",
                "says code 628 vendor 10"},
        BadCase{"<Experimental-Result> ::= < AVP Header: 297 > { Vendor-Id }\n"
                "<Experimental-Result> ::= < AVP Header: 297 > { Vendor-Id }\n",
                "grouped AVP Experimental-Result defined twice"},
        BadCase{"<X> ::= < AVP Header 297 > { Vendor-Id }\n",
                "t.ccf:15:22: expected ':' after 'AVP Header'"}));

TEST(DiameterDictionary, EmbeddedDictionaryLoads) {
  auto d = load_default_dictionary();
  ASSERT_TRUE(d.ok()) << d.error().message();
  // Base, credit control, S6a, Gx, Cx commands.
  for (uint32_t code : {257u, 258u, 271u, 274u, 275u, 280u, 282u})
    EXPECT_NE(d->find_command(code, 0, true), nullptr) << code;
  EXPECT_EQ(d->find_command(272, 4, true)->name, "CCR");
  EXPECT_NE(d->find_command(272, 16777238, true), d->find_command(272, 4, true));
  EXPECT_EQ(d->find_command(316, 16777251, false)->name, "ULA");
  EXPECT_EQ(d->find_command(302, 16777216, true)->name, "LIR");
  EXPECT_EQ(d->find_command(258, 16777238, true)->application, 16777238u);
  EXPECT_EQ(d->find_command(258, 4, true)->application, 0u);  // base RAR
  ASSERT_NE(d->error_answer(), nullptr);
  EXPECT_EQ(d->application_name(16777251), "S6a");
  EXPECT_EQ(d->find_avp(263, 0)->name, "Session-Id");
  EXPECT_EQ(d->find_avp(1400, 10415)->name, "Subscription-Data");
  EXPECT_EQ(d->enum_name(*d->find_avp(268, 0), 2001), "DIAMETER_SUCCESS");
}

TEST(DiameterDictionary, DirectoryOverridesAndExtends) {
  auto dir = std::filesystem::temp_directory_path() /
             ("trawl-diameter-dict-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "extra.ccf") << "application 99 Test\n"
                                        "avp Test-AVP 70000 0 Unsigned32 M - V\n"
                                        "<TR> ::= < Diameter Header: 70000, REQ > { Test-AVP }\n";
    std::ofstream(dir / "notes.txt") << "ignored\n";
  }
  auto d = load_dictionary(dir);
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_NE(d->find_command(70000, 99, true), nullptr);
  EXPECT_NE(d->find_command(316, 16777251, true), nullptr);  // embedded files still there

  // Same name as an embedded file: replaces it (cx.ccf without LIR/LIA).
  std::ofstream(dir / "cx.ccf") << "# empty on purpose\n";
  d = load_dictionary(dir);
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->find_command(302, 16777216, true), nullptr);

  // Errors name the file on disk.
  std::ofstream(dir / "extra.ccf") << "avp Broken\n";
  d = load_dictionary(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find((dir / "extra.ccf").string() + ":1:"), std::string::npos)
      << d.error().message();
  std::filesystem::remove_all(dir);

  d = load_dictionary(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find("reading dictionary directory"), std::string::npos);
}

}  // namespace
}  // namespace trawl::decode
