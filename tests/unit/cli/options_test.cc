#include "cli/options.h"

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace trawl::cli {
namespace {

TEST(Options, Sizes) {
  EXPECT_EQ(*parse_size("1GiB"), 1ull << 30);
  EXPECT_EQ(*parse_size("512M"), 512ull << 20);
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("1.5KiB"), 1536u);
  EXPECT_FALSE(parse_size("lots").ok());
  EXPECT_FALSE(parse_size("1XB").ok());
  EXPECT_FALSE(parse_size("-1G").ok());
  EXPECT_FALSE(parse_size("99999999T").ok());
}

TEST(Options, Compression) {
  EXPECT_EQ(*parse_compression("none"), 0);
  EXPECT_EQ(*parse_compression("zstd"), kDefaultZstdLevel);
  EXPECT_EQ(*parse_compression("zstd:1"), 1);
  EXPECT_EQ(*parse_compression("zstd:19"), 19);
  EXPECT_EQ(*parse_compression("zstd:-1"), -1);
  EXPECT_EQ(*parse_compression("zstd:-99"), -99);
  for (const char* bad : {"zstd:0", "zstd:-0", "zstd:20", "zstd:-100", "zstd:", "zstd:-", "zstd:1x", "gzip", "zstd:+3"}) {
    auto r = parse_compression(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message().find(bad), std::string::npos) << r.error().message();
  }
}

TEST(Options, Durations) {
  EXPECT_EQ(*parse_duration_ns("5m"), 300'000'000'000ull);
  EXPECT_EQ(*parse_duration_ns("100ms"), 100'000'000ull);
  EXPECT_EQ(*parse_duration_ns("30"), 30'000'000'000ull);
  EXPECT_EQ(*parse_duration_ns("2h"), 7200'000'000'000ull);
  EXPECT_FALSE(parse_duration_ns("5 parsecs").ok());
  EXPECT_EQ(format_duration(300'000'000'000ull), "5m");
  EXPECT_EQ(format_size(1ull << 30), "1GiB");
}

struct Fixture {
  uint64_t size = 0;
  std::vector<std::string> ifaces;
  bool insecure = false;
  OptionSet set;
  CLI::App app;
  Fixture() {
    set.value("rotate-size", "", [this](std::string_view v) -> Status {
      auto n = parse_size(v);
      if (!n) return std::move(n).error();
      size = *n;
      return ok_status();
    });
    set.list("interface", "", [this](std::string_view v) -> Status {
      ifaces.emplace_back(v);
      return ok_status();
    }, [this] { ifaces.clear(); }, "i");
    set.flag("insecure", "", [this](bool b) { insecure = b; });
    set.attach(app);
  }
  Status parse(std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());
    app.parse(args);
    return set.apply();
  }
};

std::string write_file(const std::string& text) {
  auto p = std::filesystem::temp_directory_path() / ("trawl-opt-" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

TEST(Options, ConfigThenCommandLine) {
  Fixture f;
  auto path = write_file("rotate-size: 2GiB\ninterface: [eth0, eth1]\ninsecure: true\n");
  ASSERT_TRUE(f.parse({"-c", path, "-i", "eth9"}).ok());
  EXPECT_EQ(f.size, 2ull << 30);
  EXPECT_EQ(f.ifaces, std::vector<std::string>{"eth9"});  // the command line replaces the file's list
  EXPECT_TRUE(f.insecure);
}

TEST(Options, BadKeyNamesFileLineAndKey) {
  Fixture f;
  auto path = write_file("rotate-size: 2GiB\n\nrotate_sise: 1G\n");
  auto s = f.parse({"-c", path});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find(path + ":3: unknown key 'rotate_sise'"), std::string::npos) << s.error().message();
}

TEST(Options, BadValueNamesFileLineAndKey) {
  Fixture f;
  auto path = write_file("interface: eth0\nrotate_size: 12 bananas\n");
  auto s = f.parse({"-c", path});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find(":2: key 'rotate_size'"), std::string::npos) << s.error().message();
  EXPECT_NE(s.error().message().find("bananas"), std::string::npos);
}

TEST(Options, SyntaxErrorHasLine) {
  Fixture f;
  auto path = write_file("interface: [eth0\nrotate-size: 1G\n");
  auto s = f.parse({"-c", path});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("YAML syntax error"), std::string::npos) << s.error().message();
}

TEST(Options, BadFlagValueNamesFlag) {
  Fixture f;
  auto s = f.parse({"--rotate-size", "huge"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("--rotate-size"), std::string::npos);
}

}  // namespace
}  // namespace trawl::cli

namespace trawl::cli {
namespace {

TEST(Options, ValueOptionsTakeOneWordAndLeavePositionals) {
  Fixture f;
  std::vector<std::string> words;
  f.app.add_option("bpf", words);
  ASSERT_TRUE(f.parse({"-i", "eth0", "--rotate-size", "1G", "udp", "port", "5060"}).ok());
  EXPECT_EQ(f.ifaces, std::vector<std::string>{"eth0"});
  EXPECT_EQ(f.size, 1ull << 30);
  EXPECT_EQ(words, (std::vector<std::string>{"udp", "port", "5060"}));
}

}  // namespace
}  // namespace trawl::cli
