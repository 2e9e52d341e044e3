#include "store/segment_name.h"

#include <fmt/format.h>

namespace trawl::store {
namespace {

constexpr uint64_t kNs = 1'000'000'000ull;

struct Civil {
  int64_t y;
  unsigned m, d, hh, mm, ss;
  uint64_t ns;
};

// Howard Hinnant's days-from-civil / civil-from-days algorithms.
Civil to_civil(uint64_t wall_ns) {
  int64_t secs = static_cast<int64_t>(wall_ns / kNs);
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  auto doe = static_cast<unsigned>(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = static_cast<int64_t>(yoe) + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  unsigned d = doy - (153 * mp + 2) / 5 + 1;
  unsigned m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  return {y, m, d, static_cast<unsigned>(rem / 3600), static_cast<unsigned>(rem % 3600 / 60),
          static_cast<unsigned>(rem % 60), wall_ns % kNs};
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  auto yoe = static_cast<unsigned>(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool digits(std::string_view s, size_t pos, size_t n, uint64_t& out) {
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + static_cast<uint64_t>(s[i] - '0');
  }
  return true;
}

}  // namespace

std::string format_segment_stamp(uint64_t wall_ns) {
  Civil c = to_civil(wall_ns);
  return fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z", c.y, c.m, c.d, c.hh, c.mm, c.ss, c.ns);
}

std::string format_utc_ns(uint64_t wall_ns) {
  Civil c = to_civil(wall_ns);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", c.y, c.m, c.d, c.hh, c.mm, c.ss,
                     c.ns);
}

std::optional<uint64_t> parse_segment_stamp(std::string_view s) {
  // YYYYMMDDTHHMMSS.nnnnnnnnnZ
  if (s.size() != 26 || s[8] != 'T' || s[15] != '.' || s[25] != 'Z') return std::nullopt;
  uint64_t y, mo, d, h, mi, se, ns;
  if (!digits(s, 0, 4, y) || !digits(s, 4, 2, mo) || !digits(s, 6, 2, d) || !digits(s, 9, 2, h) ||
      !digits(s, 11, 2, mi) || !digits(s, 13, 2, se) || !digits(s, 16, 9, ns))
    return std::nullopt;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
    return std::nullopt;
  int64_t days = days_from_civil(static_cast<int64_t>(y), static_cast<unsigned>(mo),
                                 static_cast<unsigned>(d));
  auto secs = static_cast<uint64_t>(days) * 86400 + h * 3600 + mi * 60 + se;
  if (format_segment_stamp(secs * kNs + ns) != s) return std::nullopt;  // e.g. Feb 31
  return secs * kNs + ns;
}

std::string segment_file_name(std::string_view agent, uint64_t start_ns, bool compressed) {
  return fmt::format("{}-{}{}{}", agent, format_segment_stamp(start_ns), kSegmentSuffix,
                     compressed ? kZstSuffix : std::string_view{});
}

std::string index_file_name(std::string_view seg) {
  if (seg.ends_with(kPartSuffix)) {
    seg.remove_suffix(kPartSuffix.size());
    return fmt::format("{}{}{}", seg, kIndexSuffix, kPartSuffix);
  }
  return fmt::format("{}{}", seg, kIndexSuffix);
}

std::optional<SegmentFileName> parse_segment_file_name(std::string_view agent,
                                                       std::string_view name) {
  SegmentFileName out;
  if (name.ends_with(kPartSuffix)) {
    name.remove_suffix(kPartSuffix.size());
  } else {
    out.sealed = true;
  }
  if (name.ends_with(kZstSuffix)) {
    name.remove_suffix(kZstSuffix.size());
    out.compressed = true;
  }
  if (!name.ends_with(kSegmentSuffix)) return std::nullopt;
  name.remove_suffix(kSegmentSuffix.size());
  if (name.size() != agent.size() + 1 + 26 || !name.starts_with(agent) || name[agent.size()] != '-')
    return std::nullopt;
  auto start = parse_segment_stamp(name.substr(agent.size() + 1));
  if (!start) return std::nullopt;
  out.start_ns = *start;
  return out;
}

}  // namespace trawl::store
