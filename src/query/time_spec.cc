#include "query/time_spec.h"

#include <charconv>
#include <optional>

#include <fmt/format.h>

namespace trawl::query {
namespace {

constexpr uint64_t kNs = 1'000'000'000ull;

// Days since 1970-01-01 of a civil date (proleptic Gregorian).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool num(std::string_view s, size_t pos, size_t n, unsigned& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + static_cast<unsigned>(s[i] - '0');
  }
  return true;
}

// "123.456" -> ns
std::optional<uint64_t> decimal_ns(std::string_view s, uint64_t unit_ns) {
  size_t dot = s.find('.');
  std::string_view ip = s.substr(0, dot), fp = dot == std::string_view::npos ? "" : s.substr(dot + 1);
  if (ip.empty() && fp.empty()) return std::nullopt;
  uint64_t i = 0;
  if (!ip.empty()) {
    auto r = std::from_chars(ip.data(), ip.data() + ip.size(), i);
    if (r.ec != std::errc() || r.ptr != ip.data() + ip.size()) return std::nullopt;
  }
  if (i > UINT64_MAX / unit_ns) return std::nullopt;
  uint64_t ns = i * unit_ns;
  uint64_t scale = unit_ns;
  for (char c : fp) {
    if (c < '0' || c > '9') return std::nullopt;
    scale /= 10;
    ns += static_cast<uint64_t>(c - '0') * scale;
  }
  return ns;
}

}  // namespace

Result<uint64_t> parse_time(std::string_view t, uint64_t now_ns) {
  auto bad = [&](std::string_view why) {
    return Error(fmt::format("invalid time \"{}\": {} (use RFC 3339 like 2026-11-22T10:30:00Z, "
                             "-15m, now, or epoch seconds)", t, why));
  };
  if (t == "now") return now_ns;
  if (!t.empty() && t[0] == '-') {  // relative
    std::string_view body = t.substr(1);
    struct Unit { std::string_view suffix; uint64_t ns; };
    static const Unit kUnits[] = {{"ms", 1'000'000}, {"us", 1'000}, {"ns", 1}, {"s", kNs},
                                  {"m", 60 * kNs},   {"h", 3600 * kNs}, {"d", 86400 * kNs},
                                  {"w", 7 * 86400 * kNs}};
    for (const auto& u : kUnits) {
      if (!body.ends_with(u.suffix)) continue;
      auto v = decimal_ns(body.substr(0, body.size() - u.suffix.size()), u.ns);
      if (!v) return bad("bad relative amount");
      return *v > now_ns ? 0 : now_ns - *v;
    }
    return bad("relative times need a unit (ms, s, m, h, d, w)");
  }
  if (t.size() >= 19 && t[4] == '-' && t[7] == '-' && (t[10] == 'T' || t[10] == 't' || t[10] == ' ')) {
    unsigned y, mo, d, h, mi, s;
    if (!num(t, 0, 4, y) || !num(t, 5, 2, mo) || !num(t, 8, 2, d) || t[13] != ':' || t[16] != ':' ||
        !num(t, 11, 2, h) || !num(t, 14, 2, mi) || !num(t, 17, 2, s))
      return bad("malformed date or time");
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return bad("field out of range");
    size_t pos = 19;
    uint64_t frac = 0;
    if (pos < t.size() && t[pos] == '.') {
      uint64_t scale = kNs;
      ++pos;
      size_t digits = 0;
      while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
        scale /= 10;
        frac += static_cast<uint64_t>(t[pos] - '0') * scale;
        ++pos;
        ++digits;
      }
      if (digits == 0) return bad("empty fraction");
    }
    int64_t offset_s = 0;
    if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
      ++pos;
    } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
      unsigned oh, om;
      if (!num(t, pos + 1, 2, oh) || pos + 3 >= t.size() || t[pos + 3] != ':' || !num(t, pos + 4, 2, om))
        return bad("malformed UTC offset");
      offset_s = (t[pos] == '+' ? 1 : -1) * static_cast<int64_t>(oh * 3600 + om * 60);
      pos += 6;
    } else {
      return bad("missing time zone (Z or +hh:mm)");
    }
    if (pos != t.size()) return bad("trailing characters");
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset_s;
    if (secs < 0) return bad("before 1970");
    return static_cast<uint64_t>(secs) * kNs + frac;
  }
  if (auto v = decimal_ns(t, kNs)) return *v;
  return bad("not a time");
}

}  // namespace trawl::query
