// Unit tests for the decode module: parse functions on hand-made bytes,
// the capture reader, TCP reassembly and the RTP tracker on synthetic streams.
#include <gtest/gtest.h>

#include "decode/analyzer.h"
#include "decode/capture_reader.h"
#include "decode/dns.h"
#include "decode/gsmtap.h"
#include "decode/record_writer.h"
#include "decode/rtp.h"
#include "decode/sctp.h"
#include "decode/sip.h"
#include "decode/tcp_reassembly.h"
#include "packet_builder.h"

namespace trawl::decode {
namespace {

using testing::ipv4_udp;
using testing::PcapBuilder;

TEST(Rtp, ParsesHeaderAndRejectsBadInput) {
  auto p = testing::rtp(8, 1000, 160000, 0xdeadbeef, 20);
  RtpHeader h;
  ASSERT_EQ(parse_rtp(p, h), nullptr);
  EXPECT_EQ(h.pt, 8);
  EXPECT_EQ(h.seq, 1000);
  EXPECT_EQ(h.timestamp, 160000u);
  EXPECT_EQ(h.ssrc, 0xdeadbeefu);
  EXPECT_EQ(h.payload_len, 20u);
  p[0] = 0x40;
  EXPECT_STREQ(parse_rtp(p, h), "rtp.bad_version");
  p[0] = 0x8f;  // 15 CSRCs that are not there
  EXPECT_STREQ(parse_rtp(p, h), "rtp.truncated");
  p[0] = 0xa0;  // padding count larger than the payload
  p.back() = 200;
  EXPECT_STREQ(parse_rtp(p, h), "rtp.bad_padding");
  EXPECT_STREQ(parse_rtp(std::span<const uint8_t>(p).first(5), h), "rtp.truncated");
}

// A perfectly paced G.711 stream with three packets missing: lost 3, one
// sequence error, zero jitter.
TEST(Rtp, TrackerCountsLossAndJitter) {
  std::vector<nlohmann::json> out;
  auto an = Analyzer::create({"rtp"}, [&](nlohmann::json&& j) { out.push_back(std::move(j)); }, {});
  ASSERT_TRUE(an.ok());
  for (int i = 0; i < 100; ++i) {
    if (i >= 40 && i < 43) continue;
    auto r = testing::rtp(8, static_cast<uint16_t>(65500 + i), 1000 + 160 * i, 42);  // wraps at 65535
    auto pkt = ipv4_udp(0x0a000001, 0x0a000002, 10000, 20000, r);
    Frame f{101, 1'000'000'000ull + 20'000'000ull * i, static_cast<uint32_t>(pkt.size()), pkt};
    (*an)->frame(f);
  }
  (*an)->finish();
  ASSERT_GE(out.size(), 1u);
  auto& s = out[0];
  EXPECT_EQ(s["kind"], "rtp");
  EXPECT_EQ(s["setup"], "heuristic");
  EXPECT_EQ(s["packets"], 97);
  EXPECT_EQ(s["expected"], 100);
  EXPECT_EQ(s["lost"], 3);
  EXPECT_EQ(s["sequence_errors"], 1);
  EXPECT_EQ(s["clock_rate"], 8000);
  EXPECT_DOUBLE_EQ(s["max_jitter_ms"].get<double>(), 0.0);
  EXPECT_NEAR(s["max_delta_ms"].get<double>(), 80.0, 1e-9);
  EXPECT_EQ(s["first_ts"], "1970-01-01T00:00:01.000000000Z");
}

// With an idle timeout (live runs), a silent stream is reported before the
// end and a later packet starts a new one.
TEST(Rtp, IdleStreamsAreEmittedEarly) {
  std::vector<nlohmann::json> out;
  AnalyzeOptions opt;
  opt.rtp_idle_timeout_ns = 10'000'000'000ull;
  auto an = Analyzer::create({"rtp"}, [&](nlohmann::json&& j) { out.push_back(std::move(j)); }, opt);
  ASSERT_TRUE(an.ok());
  auto send = [&](uint32_t ssrc, int i, uint64_t ts_ns) {
    auto r = testing::rtp(0, static_cast<uint16_t>(i), 160u * i, ssrc);
    auto pkt = ipv4_udp(0x0a000001, 0x0a000002, 10000, 20000, r);
    (*an)->frame(Frame{101, ts_ns, static_cast<uint32_t>(pkt.size()), pkt});
  };
  for (int i = 0; i < 5; ++i) send(1, i, 1'000'000'000ull + 20'000'000ull * i);
  for (int i = 0; i < 5; ++i) send(2, i, 30'000'000'000ull + 20'000'000ull * i);  // 29 s later
  ASSERT_EQ(out.size(), 1u);  // stream 1 reported while stream 2 runs
  EXPECT_EQ(out[0]["ssrc"], 1);
  EXPECT_EQ(out[0]["packets"], 5);
  (*an)->finish();
  ASSERT_GE(out.size(), 2u);
  EXPECT_EQ(out[1]["ssrc"], 2);
}

TEST(Dns, ParsesQueryAndAnswerWithCompression) {
  std::vector<uint8_t> m = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
                            3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1,
                            0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};
  DnsMessage d;
  ASSERT_EQ(parse_dns(m, d), nullptr);
  EXPECT_TRUE(d.response);
  EXPECT_EQ(d.id, 0x1234);
  EXPECT_EQ(d.qname, "www.example.com");
  EXPECT_EQ(d.qtype, 1);
  ASSERT_EQ(d.answers.size(), 1u);
  EXPECT_EQ(d.answers[0].name, "www.example.com");
  EXPECT_EQ(d.answers[0].data, "192.0.2.1");
  EXPECT_EQ(d.answers[0].ttl, 60u);
  // A pointer to itself loops.
  std::vector<uint8_t> loop = {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
  EXPECT_STREQ(parse_dns(loop, d), "dns.compression_loop");
  std::vector<uint8_t> cut = {0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 'a'};
  EXPECT_STREQ(parse_dns(cut, d), "dns.truncated_label");
  EXPECT_STREQ(parse_dns(std::span<const uint8_t>(cut).first(5), d), "dns.truncated_header");
}

TEST(Dns, UnansweredQueriesAreReported) {
  std::vector<nlohmann::json> out;
  DnsDecoder dec([&](nlohmann::json&& j) { out.push_back(std::move(j)); }, {});
  std::vector<uint8_t> q = {0, 7, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1};
  L4Packet p;
  p.src.family = p.dst.family = 4;
  p.src.b[0] = 10;
  p.dst.b[0] = 11;
  p.proto = kProtoUdp;
  p.sport = 5555;
  p.dport = 53;
  p.payload = q;
  dec.on_udp(p);
  dec.finish();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["status"], "unanswered");
  EXPECT_EQ(out[0]["qname"], "a");
  EXPECT_EQ(out[0]["client"], "10.0.0.0:5555");
}

TEST(Gsmtap, ParsesHeader) {
  std::vector<uint8_t> g = {2, 4, 1, 3, 0x40, 0x7b, 0xb0, 20, 0, 0, 0x12, 0x34, 5, 0, 1, 0, 0xaa};
  GsmtapHeader h;
  ASSERT_EQ(parse_gsmtap(g, h), nullptr);
  EXPECT_EQ(h.type, 1);
  EXPECT_EQ(h.timeslot, 3);
  EXPECT_EQ(h.arfcn, 123);
  EXPECT_TRUE(h.uplink);
  EXPECT_EQ(h.signal_dbm, -80);
  EXPECT_EQ(h.snr_db, 20);
  EXPECT_EQ(h.frame_number, 0x1234u);
  EXPECT_EQ(h.sub_type, 5);
  EXPECT_EQ(h.payload_len, 1u);
  g[0] = 9;
  EXPECT_STREQ(parse_gsmtap(g, h), "gsmtap.bad_version");
  g[0] = 2;
  g[1] = 40;
  EXPECT_STREQ(parse_gsmtap(g, h), "gsmtap.bad_header_length");
  EXPECT_STREQ(parse_gsmtap(std::span<const uint8_t>(g).first(10), h), "gsmtap.truncated");
}

TEST(Sip, FramesMessageAndFindsSdpMedia) {
  std::string body =
      "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
      "m=audio 4000 RTP/AVP 8 97 101\r\na=rtpmap:97 AMR-WB/16000/1\r\na=rtpmap:101 telephone-event/8000\r\n"
      "m=video 0 RTP/AVP 96\r\nm=audio 4002 RTP/AVP 0\r\nc=IN IP6 2001:db8::1\r\n";
  std::string msg = "INVITE sip:b@x SIP/2.0\r\nCall-ID: abc\r\nContent-Type: application/sdp\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body + "NEXT";
  SipMessage m;
  ASSERT_EQ(parse_sip(msg, m), SipParse::kOk);
  EXPECT_TRUE(m.request);
  EXPECT_EQ(m.method, "INVITE");
  EXPECT_EQ(m.call_id, "abc");
  EXPECT_EQ(m.body, body);
  std::vector<SdpMedia> media;
  ASSERT_TRUE(parse_sdp(m.body, media));
  ASSERT_EQ(media.size(), 2u);  // the port-0 video line is dropped
  EXPECT_EQ(media[0].port, 4000);
  EXPECT_EQ(media[0].addr.str(), "10.0.0.1");
  ASSERT_EQ(media[0].payloads.size(), 2u);
  EXPECT_EQ(media[0].payloads[0].name, "AMR-WB");
  EXPECT_EQ(media[0].payloads[0].clock_rate, 16000u);
  EXPECT_EQ(media[1].addr.str(), "2001:db8::1");
  EXPECT_EQ(parse_sip("INVITE sip:b@x SIP/2.0\r\nCall-ID: a", m), SipParse::kIncomplete);
  EXPECT_EQ(parse_sip("\x01\x02garbage\r\n\r\n", m), SipParse::kNotSip);
}

TEST(Sctp, ExtractsDataChunksAndCountsBadLengths) {
  std::vector<uint8_t> c = {0, 3, 0, 19, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 46, 'a', 'b', 'c', 0,  // DATA, padded
                            3, 0, 0, 8, 0, 0, 0, 0};                                              // SACK
  Anomalies an;
  std::vector<SctpDataChunk> got;
  EXPECT_TRUE(parse_sctp_chunks(c, an, [&](const SctpDataChunk& d) { got.push_back(d); }));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ppid, 46u);
  EXPECT_EQ(got[0].data.size(), 3u);
  c[3] = 2;  // length below the chunk header
  EXPECT_FALSE(parse_sctp_chunks(c, an, [](const SctpDataChunk&) {}));
  EXPECT_EQ(an.get("sctp.bad_chunk_length"), 1u);
}

class Collect : public StreamHandler {
 public:
  void on_stream_data(const StreamSegment& s) override {
    data[s.from_a].append(reinterpret_cast<const char*>(s.data.data()), s.data.size());
    src = s.src;
  }
  void on_stream_gap(uint64_t, bool from_a) override { data[from_a] += "|GAP|"; }
  void on_stream_close(uint64_t) override { ++closed; }
  std::string data[2];
  std::string src;
  int closed = 0;
};

TEST(TcpReassembly, ReordersDropsRetransmissionsAndReportsGaps) {
  Collect c;
  TcpReassembler r(c);
  auto seg = [&](uint32_t seq, std::string_view d, uint8_t flags, bool from_client = true) {
    L4Packet p;
    p.proto = kProtoTcp;
    p.src.family = p.dst.family = 4;
    p.src.b[3] = from_client ? 1 : 2;
    p.dst.b[3] = from_client ? 2 : 1;
    p.sport = from_client ? 40000 : 53;
    p.dport = from_client ? 53 : 40000;
    p.tcp_seq = seq;
    p.tcp_flags = flags;
    p.payload = as_bytes(d);
    p.payload_wire_len = static_cast<uint32_t>(d.size());
    r.add(p);
  };
  seg(0xfffffff0, "", 0x02);           // SYN: data starts at 0xfffffff1 (wraps)
  seg(0xfffffff1 + 5, "world", 0x10);  // ahead: buffered
  seg(0xfffffff1, "hello", 0x10);      // fills the hole
  seg(0xfffffff1, "hel", 0x10);        // retransmission
  seg(0xfffffff1 + 20, "late", 0x10);  // after a hole that never fills
  seg(100, "reply", 0x10, false);
  r.finish();
  EXPECT_EQ(c.data[1], "helloworld|GAP|late");
  EXPECT_EQ(c.data[0], "reply");
  EXPECT_EQ(c.closed, 1);
}

TEST(CaptureReader, ReadsPcapAndReportsTruncation) {
  PcapBuilder b(101);
  std::vector<uint8_t> pkt(30, 0x45);
  b.add(1'500'000, pkt);
  b.add(2'000'001, pkt);
  CaptureReader r(memory_byte_stream(b.bytes));
  ASSERT_EQ(r.next(), CaptureReader::Next::kFrame);
  EXPECT_EQ(r.frame().ts_ns, 1'500'000'000ull);
  EXPECT_EQ(r.frame().link_type, 101u);
  ASSERT_EQ(r.next(), CaptureReader::Next::kFrame);
  EXPECT_EQ(r.frame().ts_ns, 2'000'001'000ull);
  EXPECT_EQ(r.next(), CaptureReader::Next::kEnd);
  auto cut = b.bytes;
  cut.resize(cut.size() - 3);
  CaptureReader r2(memory_byte_stream(cut));
  EXPECT_EQ(r2.next(), CaptureReader::Next::kFrame);
  EXPECT_EQ(r2.next(), CaptureReader::Next::kCorrupt);
  EXPECT_NE(r2.error().find("truncated record"), std::string::npos);
  CaptureReader r3(memory_byte_stream({1, 2, 3, 4, 5}));
  EXPECT_EQ(r3.next(), CaptureReader::Next::kCorrupt);
}

TEST(RecordWriter, FastJsonIsByteIdenticalToNlohmannDump) {
  nlohmann::json j = {
      {"kind", "diameter"},
      {"plain", "host.example.org"},
      {"quote", "a\"b\\c"},
      {"control", std::string("tab\tnul\0x", 9)},
      {"del", "x\x7fy"},
      {"utf8", "caf\xc3\xa9"},
      {"bad_utf8", "a\xff\xfe" "b"},
      {"neg", -42},
      {"big", 18446744073709551615ull},
      {"zero", 0},
      {"floats", {0.5, 1.0, -2.25, 1e-7, 123456789.125, 1e300}},
      {"null", nullptr},
      {"flags", {true, false}},
      {"empty_obj", nlohmann::json::object()},
      {"empty_arr", nlohmann::json::array()},
      {"nested", {{"a\nb", {{"c", {1, "d", nullptr}}}}}},
  };
  EXPECT_EQ(record_to_json(j), j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  EXPECT_EQ(record_to_json(nlohmann::json("x")), "\"x\"");
  EXPECT_EQ(record_to_json(nlohmann::json()), "null");
}

TEST(Analyzer, RejectsUnknownDecoder) {
  auto an = Analyzer::create({"rtp", "smtp"}, [](nlohmann::json&&) {}, {});
  ASSERT_FALSE(an.ok());
  EXPECT_NE(an.error().message().find("unknown decoder 'smtp'"), std::string::npos);
}

}  // namespace
}  // namespace trawl::decode
