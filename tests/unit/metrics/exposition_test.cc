#include "metrics/exposition.h"

#include <gtest/gtest.h>

namespace trawl::metrics {
namespace {

TEST(Exposition, FamiliesHaveHelpAndTypeOnce) {
  Exposition e;
  e.counter("trawl_x_packets_total", "Packets", 3, {{"agent", "a"}});
  e.counter("trawl_x_packets_total", "Packets", 4, {{"agent", "b"}});
  e.gauge("trawl_y_bytes", "Bytes", 1.5);
  EXPECT_EQ(e.text(),
            "# HELP trawl_x_packets_total Packets\n# TYPE trawl_x_packets_total counter\n"
            "trawl_x_packets_total{agent=\"a\"} 3\ntrawl_x_packets_total{agent=\"b\"} 4\n"
            "# HELP trawl_y_bytes Bytes\n# TYPE trawl_y_bytes gauge\ntrawl_y_bytes 1.5\n");
}

TEST(Exposition, EscapesLabelValues) {
  EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Exposition, LargeCountersStayExact) {
  Exposition e;
  e.counter("c_total", "c", 1234567890123.0);
  EXPECT_NE(e.text().find("c_total 1234567890123\n"), std::string::npos);
}

TEST(Registry, ScrapesEveryCollector) {
  MetricsRegistry r;
  r.add([](Exposition& e) { e.gauge("a", "a", 1); });
  r.add([](Exposition& e) { e.gauge("b", "b", 2); });
  auto t = r.scrape();
  EXPECT_NE(t.find("\na 1\n"), std::string::npos);
  EXPECT_NE(t.find("\nb 2\n"), std::string::npos);
}

}  // namespace
}  // namespace trawl::metrics
