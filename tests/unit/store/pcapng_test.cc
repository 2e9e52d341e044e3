#include "store/pcapng.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "core/bytes.h"
#include "store_test_util.h"

namespace trawl::store::pcapng {
namespace {

using Next = PcapngReader::Next;

std::vector<uint8_t> frame(size_t n, uint8_t seed = 1) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

// SHB, 2 IDBs, EPBs of every padding, ISB, GAP, BATCH, SEAL; returns block offsets.
std::vector<uint8_t> sample_file(std::vector<size_t>* block_ends = nullptr) {
  std::vector<uint8_t> out;
  auto mark = [&] {
    if (block_ends) block_ends->push_back(out.size());
  };
  encode_shb(out, {.hardware = "edge1.example", .os = "Linux", .userappl = "trawl test",
                   .comment = "agent=edge1 host=edge1.example"});
  mark();
  encode_idb(out, {"eth0", 1, 262144});
  mark();
  encode_idb(out, {"wlan0", 127, 65535});
  mark();
  for (size_t n = 0; n < 8; ++n) {
    auto d = frame(60 + n);
    encode_epb(out, n % 2, {0, 1'700'000'000'000'000'000ull + n, static_cast<uint32_t>(100 + n), d});
    mark();
  }
  encode_isb(out, 0, {0, 1'700'000'001'000'000'000ull, 1000, 5, 2, 3}, 1'700'000'000'000'000'000ull,
             "agent dropped 3");
  mark();
  encode_trawl_record(out, GapRecord{kAllInterfaces, GapReason::kSpoolFull, 10, 20, 30, 40},
                      "trawl gap");
  mark();
  encode_trawl_record(out, BatchMark{7, 42});
  mark();
  encode_trawl_record(out, SealRecord{7, 42, 8, 1, 2});
  mark();
  return out;
}

TEST(Pcapng, RoundTripsEveryBlockType) {
  auto bytes = sample_file();
  PcapngReader r(bytes);

  ASSERT_EQ(r.next(), Next::kBlock);
  const auto& shb = std::get<ShbView>(r.block().view);
  EXPECT_EQ(shb.major, 1);
  EXPECT_EQ(shb.minor, 0);
  EXPECT_EQ(shb.section_length, -1);
  EXPECT_EQ(find_string_option(shb.options, kShbHardware), "edge1.example");
  EXPECT_EQ(find_string_option(shb.options, kShbOs), "Linux");
  EXPECT_EQ(find_string_option(shb.options, kShbUserAppl), "trawl test");
  EXPECT_EQ(find_string_option(shb.options, kOptComment), "agent=edge1 host=edge1.example");

  ASSERT_EQ(r.next(), Next::kBlock);
  auto idb = std::get<IdbView>(r.block().view);
  EXPECT_EQ(idb.link_type, 1);
  EXPECT_EQ(idb.snaplen, 262144u);
  EXPECT_EQ(idb.name(), "eth0");
  EXPECT_EQ(idb.tsresol(), 9);
  ASSERT_EQ(r.next(), Next::kBlock);
  idb = std::get<IdbView>(r.block().view);
  EXPECT_EQ(idb.link_type, 127);
  EXPECT_EQ(idb.snaplen, 65535u);
  EXPECT_EQ(idb.name(), "wlan0");
  ASSERT_EQ(r.interfaces().size(), 2u);

  for (size_t n = 0; n < 8; ++n) {
    ASSERT_EQ(r.next(), Next::kBlock);
    const auto& epb = std::get<EpbView>(r.block().view);
    EXPECT_EQ(r.block().total_length % 4, 0u);
    EXPECT_EQ(epb.interface_id, n % 2);
    EXPECT_EQ(r.ts_ns(epb), 1'700'000'000'000'000'000ull + n);
    EXPECT_EQ(epb.caplen, 60 + n);
    EXPECT_EQ(epb.orig_len, 100 + n);
    auto want = frame(60 + n);
    EXPECT_TRUE(std::equal(epb.data.begin(), epb.data.end(), want.begin(), want.end()));
    EXPECT_TRUE(epb.options.empty());
  }

  ASSERT_EQ(r.next(), Next::kBlock);
  const auto& isb = std::get<IsbView>(r.block().view);
  EXPECT_EQ(isb.interface_id, 0u);
  EXPECT_EQ(isb.timestamp, 1'700'000'001'000'000'000ull);
  EXPECT_EQ(find_u64_option(isb.options, kIsbIfRecv), 1000u);
  EXPECT_EQ(find_u64_option(isb.options, kIsbOsDrop), 5u);
  EXPECT_EQ(find_u64_option(isb.options, kIsbIfDrop), 2u);
  EXPECT_EQ(find_u64_option(isb.options, kIsbUsrDeliv), 1000u - 5 - 3);
  EXPECT_EQ(find_string_option(isb.options, kOptComment), "agent dropped 3");
  {
    OptionReader o(isb.options);
    OptionView v;
    bool start = false, end = false;
    while (o.next(v)) {
      ByteReader br(v.value);
      uint64_t ts = (uint64_t{br.u32le()} << 32) | br.u32le();
      if (v.code == kIsbStartTime) start = ts == 1'700'000'000'000'000'000ull;
      if (v.code == kIsbEndTime) end = ts == 1'700'000'001'000'000'000ull;
    }
    EXPECT_TRUE(start);
    EXPECT_TRUE(end);
  }

  ASSERT_EQ(r.next(), Next::kBlock);
  EXPECT_EQ(r.block().type, kNrbType);
  auto rec = decode_trawl_record(r.block());
  ASSERT_TRUE(rec);
  EXPECT_EQ(std::get<GapRecord>(*rec),
            (GapRecord{kAllInterfaces, GapReason::kSpoolFull, 10, 20, 30, 40}));
  EXPECT_EQ(find_string_option(std::get<NrbView>(r.block().view).options, kOptComment),
            "trawl gap");
  ASSERT_EQ(r.next(), Next::kBlock);
  rec = decode_trawl_record(r.block());
  ASSERT_TRUE(rec);
  EXPECT_EQ(std::get<BatchMark>(*rec), (BatchMark{7, 42}));
  ASSERT_EQ(r.next(), Next::kBlock);
  rec = decode_trawl_record(r.block());
  ASSERT_TRUE(rec);
  EXPECT_EQ(std::get<SealRecord>(*rec), (SealRecord{7, 42, 8, 1, 2}));

  EXPECT_EQ(r.next(), Next::kEnd);
  EXPECT_EQ(r.next(), Next::kEnd);
  EXPECT_EQ(r.valid_end(), bytes.size());
}

TEST(Pcapng, EpbCarriesExtraOptions) {
  std::vector<uint8_t> out;
  encode_shb(out, {});
  encode_idb(out, {"eth0", 1, 65535});
  std::vector<uint8_t> opts;
  encode_option(opts, kOptComment, as_bytes("hello, gap"));
  auto d = frame(61);
  encode_epb(out, 0, {0, 5, 61, d}, opts);
  PcapngReader r(out);
  ASSERT_EQ(r.next(), Next::kBlock);
  EXPECT_TRUE(std::get<ShbView>(r.block().view).options.empty());
  ASSERT_EQ(r.next(), Next::kBlock);
  ASSERT_EQ(r.next(), Next::kBlock);
  const auto& epb = std::get<EpbView>(r.block().view);
  EXPECT_EQ(epb.caplen, 61u);
  EXPECT_EQ(find_string_option(epb.options, kOptComment), "hello, gap");
  EXPECT_EQ(r.next(), Next::kEnd);
}

TEST(Pcapng, EpbEncodingDoesNotAllocateOnceGrown) {
  std::vector<uint8_t> out;
  out.reserve(1 << 20);
  const auto* data = out.data();
  auto d = frame(1514);
  for (int i = 0; i < 500; ++i) encode_epb(out, 0, {0, uint64_t(i), 1514, d});
  EXPECT_EQ(out.data(), data);
  EXPECT_EQ(out.size(), 500u * (32 + 1516));
}

TEST(Pcapng, JumboAndMaxSnaplenFrames) {
  std::vector<uint8_t> out;
  encode_shb(out, {});
  encode_idb(out, {"eth0", 1, kMaxSnaplen});
  for (size_t n : {size_t{9014}, size_t{kMaxSnaplen}}) {
    auto d = frame(n);
    encode_epb(out, 0, {0, 1, static_cast<uint32_t>(n), d});
  }
  PcapngReader r(out);
  ASSERT_EQ(r.next(), Next::kBlock);
  ASSERT_EQ(r.next(), Next::kBlock);
  ASSERT_EQ(r.next(), Next::kBlock);
  EXPECT_EQ(std::get<EpbView>(r.block().view).caplen, 9014u);
  ASSERT_EQ(r.next(), Next::kBlock);
  EXPECT_EQ(std::get<EpbView>(r.block().view).caplen, kMaxSnaplen);
  EXPECT_EQ(r.next(), Next::kEnd);
}

TEST(Pcapng, EveryTruncationIsCorruptAtTheCutBlock) {
  std::vector<size_t> ends;
  auto bytes = sample_file(&ends);
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {
    PcapngReader r(std::span<const uint8_t>(bytes).first(cut));
    size_t blocks = 0;
    Next n;
    while ((n = r.next()) == Next::kBlock) ++blocks;
    size_t complete = std::upper_bound(ends.begin(), ends.end(), cut) - ends.begin();
    size_t boundary = complete ? ends[complete - 1] : 0;
    ASSERT_EQ(blocks, complete) << "cut " << cut;
    ASSERT_EQ(r.valid_end(), boundary) << "cut " << cut;
    if (cut == boundary) {
      ASSERT_EQ(n, Next::kEnd) << "cut " << cut;
    } else {
      ASSERT_EQ(n, Next::kCorrupt) << "cut " << cut;
      ASSERT_EQ(r.corrupt_offset(), boundary);
      ASSERT_NE(r.corrupt_reason().find("truncated"), std::string::npos) << r.corrupt_reason();
      ASSERT_EQ(r.next(), Next::kCorrupt);  // stays corrupt
    }
  }
}

TEST(Pcapng, GarbageAndBitFlipsNeverCrash) {
  std::mt19937_64 rng(12345);
  auto base = sample_file();
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> bytes;
    if (i % 3 == 0) {
      bytes.resize(rng() % 400);
      for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    } else {
      bytes = base;
      for (int f = 0, n = 1 + static_cast<int>(rng() % 4); f < n; ++f)
        bytes[rng() % bytes.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
      if (i % 3 == 2) bytes.resize(rng() % bytes.size());
    }
    PcapngReader r(bytes);
    Next n;
    size_t count = 0;
    while ((n = r.next()) == Next::kBlock) {
      ++count;
      (void)decode_trawl_record(r.block());
      if (auto* e = std::get_if<EpbView>(&r.block().view)) (void)r.ts_ns(*e);
      if (auto* d = std::get_if<IdbView>(&r.block().view)) (void)d->name();
    }
    ASSERT_LE(r.valid_end(), bytes.size());
    if (n == Next::kCorrupt) {
      ASSERT_EQ(r.corrupt_offset(), r.valid_end());
      ASSERT_FALSE(r.corrupt_reason().empty());
    } else {
      ASSERT_EQ(r.valid_end(), bytes.size());
    }
  }
}

TEST(Pcapng, EmptyInputIsCleanEnd) {
  PcapngReader r(std::span<const uint8_t>{});
  EXPECT_EQ(r.next(), Next::kEnd);
  EXPECT_EQ(r.valid_end(), 0u);
}

TEST(Pcapng, FirstBlockMustBeASectionHeader) {
  std::vector<uint8_t> out;
  encode_idb(out, {"eth0", 1, 65535});
  PcapngReader r(out);
  EXPECT_EQ(r.next(), Next::kCorrupt);
  EXPECT_EQ(r.corrupt_offset(), 0u);
  EXPECT_NE(r.corrupt_reason().find("before any section header"), std::string::npos);
}

TEST(Pcapng, BigEndianSectionIsReportedUnsupported) {
  // SHB as a big-endian writer produces it.
  std::vector<uint8_t> out;
  ByteWriter w(out);
  w.u32be(kShbType);
  w.u32be(28);
  w.u32be(kByteOrderMagic);
  w.u16be(1);
  w.u16be(0);
  w.u32be(0xFFFFFFFF);
  w.u32be(0xFFFFFFFF);
  w.u32be(28);
  PcapngReader r(out);
  EXPECT_EQ(r.next(), Next::kCorrupt);
  EXPECT_EQ(r.corrupt_offset(), 0u);
  EXPECT_NE(r.corrupt_reason().find("big-endian"), std::string::npos);

  // A big-endian second section after a valid one: valid_end stays at the first.
  std::vector<uint8_t> two;
  encode_shb(two, {});
  size_t first = two.size();
  two.insert(two.end(), out.begin(), out.end());
  PcapngReader r2(two);
  EXPECT_EQ(r2.next(), Next::kBlock);
  EXPECT_EQ(r2.next(), Next::kCorrupt);
  EXPECT_EQ(r2.corrupt_offset(), first);
  EXPECT_EQ(r2.valid_end(), first);
}

TEST(Pcapng, RejectsStructuralErrors) {
  auto expect_corrupt = [](std::vector<uint8_t> bytes, std::string_view why) {
    PcapngReader r(bytes);
    Next n;
    while ((n = r.next()) == Next::kBlock) {
    }
    EXPECT_EQ(n, Next::kCorrupt);
    EXPECT_NE(r.corrupt_reason().find(why), std::string::npos) << r.corrupt_reason();
  };
  std::vector<uint8_t> head;
  encode_shb(head, {});
  encode_idb(head, {"eth0", 1, 65535});

  {  // EPB for an interface the section does not have
    auto b = head;
    auto d = frame(10);
    encode_epb(b, 3, {0, 1, 10, d});
    expect_corrupt(b, "interface 3");
  }
  {  // trailing length differs
    auto b = head;
    b.at(b.size() - 4) ^= 1;
    expect_corrupt(b, "trailing block length");
  }
  {  // caplen larger than the block
    auto b = head;
    size_t at = b.size();
    auto d = frame(10);
    encode_epb(b, 0, {0, 1, 10, d});
    b[at + 20] = 200;
    expect_corrupt(b, "exceeds");
  }
  {  // block length not a multiple of 4
    std::vector<uint8_t> c;
    encode_shb(c, {});
    c.insert(c.end(), {1, 0, 0, 0, 13, 0, 0, 0});
    c.resize(c.size() + 8);
    expect_corrupt(c, "bad block length");
  }
  {  // option overruns the options area
    auto b = head;
    size_t at = b.size();
    encode_idb(b, {"eth1", 1, 65535});
    b[at + 16 + 2] = 0xFF;  // if_name length
    expect_corrupt(b, "malformed interface description options");
  }
}

TEST(Pcapng, UnknownBlocksAndForeignCustomBlocksPassThrough) {
  std::vector<uint8_t> out;
  encode_shb(out, {});
  ByteWriter w(out);
  w.u32le(0x0000000A);  // Decryption Secrets Block: not decoded, but valid
  w.u32le(20);
  w.u32le(0x544c534b);
  w.u32le(0);
  w.u32le(20);
  for (uint32_t type : {kCustomCopyType, kCustomNoCopyType}) {
    w.u32le(type);
    w.u32le(24);
    w.u32le(kTrawlPen);
    w.u8(1);  // BATCH MARK, version 1
    w.u8(1);
    w.u16le(0);
    w.u32le(0);  // too short for a BATCH MARK
    w.u32le(24);
  }
  PcapngReader r(out);
  ASSERT_EQ(r.next(), Next::kBlock);
  ASSERT_EQ(r.next(), Next::kBlock);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r.block().view));
  ASSERT_EQ(r.next(), Next::kBlock);
  EXPECT_TRUE(std::get<CustomBlockView>(r.block().view).copyable);
  EXPECT_EQ(std::get<CustomBlockView>(r.block().view).pen, kTrawlPen);
  EXPECT_FALSE(decode_trawl_record(r.block()));
  ASSERT_EQ(r.next(), Next::kBlock);
  EXPECT_FALSE(std::get<CustomBlockView>(r.block().view).copyable);
  EXPECT_EQ(r.next(), Next::kEnd);
}

TEST(Pcapng, TrawlRecordInCustomBlockIsDecoded) {
  std::vector<uint8_t> out;
  encode_shb(out, {});
  ByteWriter w(out);
  w.u32le(kCustomNoCopyType);
  w.u32le(12 + 4 + 4 + 16);
  w.u32le(kTrawlPen);
  w.u8(1);
  w.u8(1);
  w.u16le(0);
  w.u64le(3);
  w.u64le(4);
  w.u32le(12 + 4 + 4 + 16);
  PcapngReader r(out);
  ASSERT_EQ(r.next(), Next::kBlock);
  ASSERT_EQ(r.next(), Next::kBlock);
  auto rec = decode_trawl_record(r.block());
  ASSERT_TRUE(rec);
  EXPECT_EQ(std::get<BatchMark>(*rec), (BatchMark{3, 4}));
}

TEST(Pcapng, TimestampResolutions) {
  EXPECT_EQ(ts_to_ns(5, 9), 5u);
  EXPECT_EQ(ts_to_ns(5, 6), 5000u);
  EXPECT_EQ(ts_to_ns(5, 0), 5'000'000'000u);
  EXPECT_EQ(ts_to_ns(5000, 12), 5u);
  EXPECT_EQ(ts_to_ns(1u << 20, 0x80 | 20), 1'000'000'000u);
  EXPECT_EQ(ts_to_ns(1, 0x80 | 100), 0u);
}

TEST(Pcapng, DecodeSingleBlock) {
  std::vector<uint8_t> out;
  encode_trawl_record(out, SealRecord{1, 2, 3, 4, 5});
  auto b = decode_block(out, 100);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->offset, 100u);
  EXPECT_EQ(std::get<SealRecord>(*decode_trawl_record(*b)), (SealRecord{1, 2, 3, 4, 5}));
  std::string why;
  EXPECT_FALSE(decode_block(std::span<const uint8_t>(out).first(out.size() - 1), 0, &why));
  EXPECT_NE(why.find("truncated"), std::string::npos);
}

// Real captures written by other tools: packet counts as tshark counts them.
TEST(Pcapng, ReadsSharedSampleCaptures) {
  std::filesystem::path dir = TRAWL_SHARED_PCAPS;
  std::ifstream manifest(dir / "MANIFEST.tsv");
  if (!manifest) GTEST_SKIP() << "no " << (dir / "MANIFEST.tsv");
  std::string line;
  std::getline(manifest, line);
  int checked = 0;
  while (std::getline(manifest, line)) {
    std::vector<std::string> cols;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, '\t');) cols.push_back(c);
    if (cols.size() < 8) continue;
    const auto path = dir / cols[0];
    auto reader = PcapngReader::open_file(path);
    ASSERT_TRUE(reader.ok()) << reader.error().message();
    Next n;
    uint64_t packets = 0;
    while ((n = reader->next()) == Next::kBlock) {
      if (reader->block().type == kEpbType || reader->block().type == kSpbType) ++packets;
    }
    if (cols[7].find("pcapng") == std::string::npos) continue;  // pcap etc.: only must not crash
    EXPECT_EQ(n, Next::kEnd) << cols[0] << ": " << reader->corrupt_reason();
    EXPECT_EQ(packets, std::stoull(cols[6])) << cols[0];
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace trawl::store::pcapng
