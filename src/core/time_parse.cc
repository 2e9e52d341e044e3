// See time_parse.h.
#include "core/time_parse.h"

#include <charconv>
#include <ctime>
#include <string>

#include <fmt/format.h>

namespace trawl {
namespace {

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

Result<uint64_t> parse_rfc3339(std::string_view s) {
  auto bad = [&] {
    return Error(fmt::format("'{}' is not a time (expected e.g. 2026-11-22T10:30:00Z, -15m, now or epoch seconds)", s));
  };
  std::tm tm{};
  int y, mo, d, h = 0, mi = 0, sec = 0;
  if (!digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' || !digits(s, 8, 2, d)) {
    return bad();
  }
  size_t pos = 10;
  uint64_t frac_ns = 0;
  int64_t offset_s = 0;
  if (pos < s.size() && (s[pos] == 'T' || s[pos] == 't' || s[pos] == ' ')) {
    if (!digits(s, pos + 1, 2, h) || pos + 3 >= s.size() + 0 || s[pos + 3] != ':' || !digits(s, pos + 4, 2, mi)) return bad();
    pos += 6;
    if (pos < s.size() && s[pos] == ':') {
      if (!digits(s, pos + 1, 2, sec)) return bad();
      pos += 3;
      if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
        ++pos;
        uint64_t scale = 100'000'000;
        size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          frac_ns += static_cast<uint64_t>(s[pos] - '0') * scale;
          scale /= 10;
          ++pos;
        }
        if (pos == start) return bad();
      }
    }
    if (pos < s.size()) {
      if (s[pos] == 'Z' || s[pos] == 'z') {
        ++pos;
      } else if (s[pos] == '+' || s[pos] == '-') {
        int oh, om;
        if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, om)) return bad();
        offset_s = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
        pos += 6;
      }
    }
  }
  if (pos != s.size()) return bad();
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return bad();
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  int64_t t = static_cast<int64_t>(timegm(&tm)) - offset_s;
  if (t < 0) return Error(fmt::format("'{}' is before 1970", s));
  return static_cast<uint64_t>(t) * 1'000'000'000ull + frac_ns;
}

}  // namespace

Result<uint64_t> parse_duration(std::string_view s) {
  if (s.empty()) return Error("empty duration");
  uint64_t total = 0;
  std::string_view rest = s;
  while (!rest.empty()) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
    if (ec != std::errc() || p == rest.data()) {
      return Error(fmt::format("'{}' is not a duration (expected e.g. 30s, 15m, 2h, 1d, 500ms)", s));
    }
    rest.remove_prefix(static_cast<size_t>(p - rest.data()));
    uint64_t frac = 0, frac_den = 1;  // "1.5s"
    if (!rest.empty() && rest[0] == '.') {
      rest.remove_prefix(1);
      while (!rest.empty() && rest[0] >= '0' && rest[0] <= '9' && frac_den < 1'000'000'000ull) {
        frac = frac * 10 + static_cast<uint64_t>(rest[0] - '0');
        frac_den *= 10;
        rest.remove_prefix(1);
      }
      if (frac_den == 1) return Error(fmt::format("'{}' is not a duration (expected e.g. 30s, 1.5s, 15m)", s));
    }
    uint64_t unit = 0;
    if (rest.starts_with("ms")) {
      unit = 1'000'000ull;
      rest.remove_prefix(2);
    } else if (!rest.empty()) {
      switch (rest[0]) {
        case 's': unit = 1'000'000'000ull; break;
        case 'm': unit = 60'000'000'000ull; break;
        case 'h': unit = 3'600'000'000'000ull; break;
        case 'd': unit = 86'400'000'000'000ull; break;
        default: break;
      }
      if (unit) rest.remove_prefix(1);
    }
    if (!unit) return Error(fmt::format("'{}': missing or unknown unit (s, m, h, d, ms)", s));
    total += v * unit + frac * unit / frac_den;
  }
  return total;
}

Result<uint64_t> parse_time(std::string_view s, uint64_t now_ns) {
  if (s == "now") return now_ns;
  if (!s.empty() && s[0] == '-') {
    auto d = parse_duration(s.substr(1));
    if (!d) return std::move(d).error();
    if (*d > now_ns) return Error(fmt::format("'{}' reaches before 1970", s));
    return now_ns - *d;
  }
  if (s.size() != 10 || s.find('-') == std::string_view::npos) {
    // Epoch seconds, optionally with a fraction.
    size_t dot = s.find('.');
    std::string_view whole = s.substr(0, dot);
    uint64_t sec = 0;
    auto [p, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), sec);
    if (ec == std::errc() && p == whole.data() + whole.size() && !whole.empty() && whole.size() <= 11) {
      uint64_t frac = 0, scale = 100'000'000;
      bool ok = true;
      if (dot != std::string_view::npos) {
        for (char c : s.substr(dot + 1)) {
          if (c < '0' || c > '9') ok = false;
          frac += static_cast<uint64_t>(c - '0') * scale;
          scale /= 10;
        }
      }
      if (ok) return sec * 1'000'000'000ull + frac;
    }
  }
  return parse_rfc3339(s);
}

}  // namespace trawl
