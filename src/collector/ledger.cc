// Completeness ledger; see ledger.h. File format (text, tab-separated, one
// delta per line, readers sum them):
//   D <minute unix s> <iface> <stored pkts> <stored bytes> <kernel drops>
//     <agent drops> <agent drop bytes> <other drops> <reports>
//   T <spool id hex> <seq> <wall ns>      the segments' point the rows cover
//   U <from ns> <to ns> <why>             a stretch the ledger cannot vouch for
#include "collector/ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "store/segment_name.h"

namespace trawl::collector {
namespace {

constexpr size_t kCompactBytes = 8u << 20;

std::string clean_name(std::string_view n) {
  std::string out(n.empty() ? "?" : n);
  for (char& c : out) {
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ') c = '_';
  }
  return out;
}

std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t t = line.find('\t', start);
    out.push_back(line.substr(start, t == std::string_view::npos ? std::string_view::npos : t - start));
    if (t == std::string_view::npos) break;
    start = t + 1;
  }
  return out;
}

bool to_u64(std::string_view s, uint64_t& v, int base = 10) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

std::string row_line(const LedgerKey& k, const LedgerCounts& c) {
  return fmt::format("D\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", k.minute / 1'000'000'000ull, k.iface, c.stored_packets,
                     c.stored_bytes, c.kernel_drops, c.agent_drops, c.agent_drop_bytes, c.other_drops, c.reports);
}

Status write_all(int fd, std::string_view s, const std::filesystem::path& file) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("writing " + file.string());
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
  return ok_status();
}

// Rewrites a large ledger as one row per (minute, iface): same sums, same tag.
Status compact(const std::filesystem::path& file, const LedgerTable& t, uint64_t spool_id, uint64_t seq, uint64_t wall) {
  auto tmp = file;
  tmp += ".compact";
  std::string out = "# trawl completeness ledger v1 (compacted)\n";
  for (const auto& [k, c] : t.rows) out += row_line(k, c);
  for (const auto& u : t.uncertain) out += fmt::format("U\t{}\t{}\t{}\n", u.from_ns, u.to_ns, u.why);
  if (seq || spool_id) out += fmt::format("T\t{:016x}\t{}\t{}\n", spool_id, seq, wall);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error::from_errno("creating " + tmp.string());
  Status st = write_all(fd, out, tmp);
  if (st.ok() && ::fdatasync(fd) != 0) st = Error::from_errno("fdatasync " + tmp.string());
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), file.c_str()) != 0) st = Error::from_errno("renaming " + tmp.string());
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

}  // namespace

LedgerCounts& LedgerCounts::operator+=(const LedgerCounts& o) {
  stored_packets += o.stored_packets;
  stored_bytes += o.stored_bytes;
  kernel_drops += o.kernel_drops;
  agent_drops += o.agent_drops;
  agent_drop_bytes += o.agent_drop_bytes;
  other_drops += o.other_drops;
  reports += o.reports;
  return *this;
}

bool LedgerCounts::empty() const {
  return stored_packets == 0 && kernel_drops == 0 && agent_drops == 0 && other_drops == 0 && reports == 0;
}

Result<LedgerTable> read_ledger(const std::filesystem::path& file) {
  LedgerTable t;
  std::ifstream in(file);
  if (!in) {
    if (!std::filesystem::exists(file)) return t;  // no ledger yet: nothing known
    return Error::from_errno("opening " + file.string());
  }
  std::string line;
  uint64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    auto f = split_tabs(line);
    bool ok = false;
    if (f[0] == "D" && f.size() == 10) {
      LedgerKey k;
      LedgerCounts c;
      uint64_t minute_s = 0;
      ok = to_u64(f[1], minute_s) && to_u64(f[3], c.stored_packets) && to_u64(f[4], c.stored_bytes) &&
           to_u64(f[5], c.kernel_drops) && to_u64(f[6], c.agent_drops) && to_u64(f[7], c.agent_drop_bytes) &&
           to_u64(f[8], c.other_drops) && to_u64(f[9], c.reports) && !f[2].empty();
      if (ok) {
        k.minute = minute_s * 1'000'000'000ull;
        k.iface = std::string(f[2]);
        t.rows[k] += c;
      }
    } else if (f[0] == "U" && f.size() >= 4) {
      UncertainRange u;
      ok = to_u64(f[1], u.from_ns) && to_u64(f[2], u.to_ns);
      if (ok) {
        u.why = std::string(f[3]);
        t.uncertain.push_back(std::move(u));
      }
    } else if (f[0] == "T" && f.size() == 4) {
      uint64_t a, b, c;
      ok = to_u64(f[1], a, 16) && to_u64(f[2], b) && to_u64(f[3], c);
    }
    if (!ok) {
      ++t.bad_lines;
      spdlog::warn("{}:{}: skipping a malformed ledger line", file.string(), lineno);
    }
  }
  return t;
}

LedgerBook::LedgerBook(std::filesystem::path file, int fd, bool fsync) : file_(std::move(file)), fd_(fd), fsync_(fsync) {}

LedgerBook::~LedgerBook() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<LedgerBook>> LedgerBook::open(const std::filesystem::path& file, bool fsync) {
  // Find the last tag (and whether the file ends mid-line after a crash).
  uint64_t spool_id = 0, seq = 0, wall = 0;
  bool torn = false;
  std::error_code ec;
  uint64_t size = std::filesystem::exists(file, ec) ? std::filesystem::file_size(file, ec) : 0;
  if (size > 0) {
    std::ifstream in(file, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("T\t", 0) != 0) continue;
      auto f = split_tabs(line);
      uint64_t a, b, c;
      if (f.size() == 4 && to_u64(f[1], a, 16) && to_u64(f[2], b) && to_u64(f[3], c)) {
        spool_id = a;
        seq = b;
        wall = c;
      }
    }
    std::ifstream last(file, std::ios::binary);
    last.seekg(static_cast<std::streamoff>(size - 1));
    torn = last.get() != '\n';
  }
  if (size > kCompactBytes) {
    auto t = read_ledger(file);
    if (!t) return std::move(t).error();
    TRAWL_TRY(compact(file, *t, spool_id, seq, wall), "compacting ledger");
    torn = false;
  }
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Error::from_errno("opening " + file.string());
  std::unique_ptr<LedgerBook> b(new LedgerBook(file, fd, fsync));
  b->last_spool_id_ = spool_id;
  b->last_seq_ = seq;
  b->last_write_ns_ = wall;
  if (size == 0) {
    TRAWL_TRY(write_all(fd, "# trawl completeness ledger v1: D minute iface stored_packets stored_bytes "
                            "kernel_drops agent_drops agent_drop_bytes other_drops reports | T spool_id seq wall_ns | "
                            "U from_ns to_ns why\n", file), "ledger");
  } else if (torn) {
    TRAWL_TRY(write_all(fd, "\n", file), "ledger");  // the torn line stays a skipped bad line
  }
  return b;
}

void LedgerBook::begin_batch(std::span<const InterfaceInfo> ifaces) {
  ifaces_.clear();
  for (const auto& i : ifaces) ifaces_.push_back(clean_name(i.name));
  cur_.assign(ifaces_.size(), LedgerCounts{});
  cur_from_ = 1;
  cur_to_ = 0;
}

const std::string& LedgerBook::iface_name(uint16_t iface) const {
  static const std::string all = kAllInterfaces;
  return iface < ifaces_.size() ? ifaces_[iface] : all;
}

void LedgerBook::fold_current() {
  for (size_t i = 0; i < cur_.size(); ++i) {
    if (cur_[i].empty()) continue;
    pending_[LedgerKey{cur_from_, ifaces_[i]}] += cur_[i];
    cur_[i] = LedgerCounts{};
  }
}

void LedgerBook::slow_packet(uint16_t iface, uint64_t ts_ns, uint32_t caplen) {
  fold_current();
  cur_from_ = ts_ns - ts_ns % kMinuteNs;
  cur_to_ = cur_from_ + kMinuteNs;
  if (iface >= cur_.size()) {  // not possible for a validated batch; count it under "*"
    auto& c = pending_[LedgerKey{cur_from_, kAllInterfaces}];
    ++c.stored_packets;
    c.stored_bytes += caplen;
    return;
  }
  ++cur_[iface].stored_packets;
  cur_[iface].stored_bytes += caplen;
}

void LedgerBook::gap(const Gap& g) {
  // A spool-full gap never spans a minute (the agent seals batches at
  // minute boundaries); a kernel-drop gap covers the second before its
  // report, so it goes to the minute it was reported in.
  uint64_t at = g.reason == GapReason::kSpoolFull ? g.from_ns : g.to_ns;
  auto& c = pending_[LedgerKey{at - at % kMinuteNs, g.iface == 0xffff ? std::string(kAllInterfaces) : iface_name(g.iface)}];
  switch (g.reason) {
    case GapReason::kKernelDrop: c.kernel_drops += g.packets; break;
    case GapReason::kSpoolFull:
      c.agent_drops += g.packets;
      c.agent_drop_bytes += g.bytes;
      break;
    default: c.other_drops += g.packets; break;
  }
}

void LedgerBook::stats(const InterfaceStats& s) {
  ++pending_[LedgerKey{s.ts_ns - s.ts_ns % kMinuteNs, iface_name(s.iface)}].reports;
}

void LedgerBook::end_batch() {
  fold_current();
  cur_from_ = 1;
  cur_to_ = 0;
}

void LedgerBook::commit() {
  fold_current();
  for (auto& [k, c] : pending_) committed_[k] += c;
  pending_.clear();
}

void LedgerBook::rollback() {
  pending_.clear();
  for (auto& c : cur_) c = LedgerCounts{};
}

void LedgerBook::mark_uncertain(uint64_t from_ns, uint64_t to_ns, std::string why) {
  uncertain_.push_back(UncertainRange{from_ns, to_ns, clean_name(why)});
}

Status LedgerBook::write(uint64_t spool_id, uint64_t seq, uint64_t wall_ns, bool durable) {
  if (!committed_.empty() || !uncertain_.empty()) {
    std::string out;
    for (const auto& [k, c] : committed_) out += row_line(k, c);
    for (const auto& u : uncertain_) out += fmt::format("U\t{}\t{}\t{}\n", u.from_ns, u.to_ns, u.why);
    out += fmt::format("T\t{:016x}\t{}\t{}\n", spool_id, seq, wall_ns);
    // One write() of a few hundred bytes to an O_APPEND file: a crash leaves
    // at most one torn line, which readers skip.
    if (auto st = write_all(fd_, out, file_); !st.ok()) return std::move(st).error().with_context("ledger");
    committed_.clear();
    uncertain_.clear();
    last_spool_id_ = spool_id;
    last_seq_ = seq;
    last_write_ns_ = wall_ns;
    unsynced_ = true;
  }
  if (durable && unsynced_) {
    if (fsync_ && ::fdatasync(fd_) != 0) return Error::from_errno("ledger: fdatasync " + file_.string());
    unsynced_ = false;
  }
  return ok_status();
}

std::string_view to_string(MinuteStatus s) {
  switch (s) {
    case MinuteStatus::kComplete: return "complete";
    case MinuteStatus::kLoss: return "loss";
    case MinuteStatus::kNoReports: return "no-reports";
    case MinuteStatus::kUncertain: return "uncertain";
  }
  return "?";
}

CoverageReport coverage(const LedgerTable& t, std::string agent, uint64_t from_ns, uint64_t to_ns) {
  CoverageReport r;
  r.agent = std::move(agent);
  r.from_ns = from_ns - from_ns % kMinuteNs;
  r.to_ns = to_ns % kMinuteNs ? to_ns - to_ns % kMinuteNs + kMinuteNs : to_ns;
  if (r.to_ns <= r.from_ns) r.to_ns = r.from_ns + kMinuteNs;
  auto it = t.rows.lower_bound(LedgerKey{r.from_ns, ""});
  for (uint64_t m = r.from_ns; m < r.to_ns; m += kMinuteNs) {
    CoverageMinute row;
    row.minute = m;
    for (; it != t.rows.end() && it->first.minute == m; ++it) {
      row.interfaces[it->first.iface] += it->second;
      row.total += it->second;
    }
    bool uncertain = std::any_of(t.uncertain.begin(), t.uncertain.end(), [&](const UncertainRange& u) {
      return u.from_ns < m + kMinuteNs && u.to_ns >= m;
    });
    if (row.total.lost() > 0) {
      row.status = MinuteStatus::kLoss;
      ++r.minutes_loss;
    } else if (uncertain) {
      row.status = MinuteStatus::kUncertain;
      ++r.minutes_uncertain;
    } else if (row.total.reports > 0) {
      row.status = MinuteStatus::kComplete;
      ++r.minutes_complete;
    } else {
      row.status = MinuteStatus::kNoReports;
      ++r.minutes_no_reports;
    }
    r.total += row.total;
    ++r.minutes;
    r.rows.push_back(std::move(row));
  }
  r.complete = r.minutes == r.minutes_complete;
  return r;
}

namespace {
nlohmann::json counts_json(const LedgerCounts& c) {
  return {{"captured_packets", c.stored_packets + c.agent_drops + c.other_drops},
          {"stored_packets", c.stored_packets},
          {"stored_bytes", c.stored_bytes},
          {"kernel_dropped_packets", c.kernel_drops},
          {"agent_dropped_packets", c.agent_drops},
          {"agent_dropped_bytes", c.agent_drop_bytes},
          {"other_lost_packets", c.other_drops},
          {"lost_packets", c.lost()},
          {"reports", c.reports}};
}
}  // namespace

std::string coverage_json(const CoverageReport& r) {
  nlohmann::json j;
  j["agent"] = r.agent;
  j["from"] = store::format_utc_ns(r.from_ns);
  j["to"] = store::format_utc_ns(r.to_ns);
  j["from_ns"] = r.from_ns;
  j["to_ns"] = r.to_ns;
  j["complete"] = r.complete;
  j["minutes"] = r.minutes;
  j["minutes_complete"] = r.minutes_complete;
  j["minutes_loss"] = r.minutes_loss;
  j["minutes_no_reports"] = r.minutes_no_reports;
  j["minutes_uncertain"] = r.minutes_uncertain;
  j["total"] = counts_json(r.total);
  auto rows = nlohmann::json::array();
  for (const auto& m : r.rows) {
    if (m.status == MinuteStatus::kNoReports && m.total.empty()) continue;  // listed as ranges below
    nlohmann::json row = counts_json(m.total);
    row["minute"] = store::format_utc_ns(m.minute);
    row["minute_ns"] = m.minute;
    row["status"] = std::string(to_string(m.status));
    nlohmann::json ifs = nlohmann::json::object();
    for (const auto& [name, c] : m.interfaces) ifs[name] = counts_json(c);
    row["interfaces"] = std::move(ifs);
    rows.push_back(std::move(row));
  }
  j["rows"] = std::move(rows);
  auto silent = nlohmann::json::array();
  for (size_t i = 0; i < r.rows.size();) {
    if (r.rows[i].status != MinuteStatus::kNoReports || !r.rows[i].total.empty()) {
      ++i;
      continue;
    }
    size_t k = i;
    while (k < r.rows.size() && r.rows[k].status == MinuteStatus::kNoReports && r.rows[k].total.empty()) ++k;
    silent.push_back({{"from", store::format_utc_ns(r.rows[i].minute)},
                      {"to", store::format_utc_ns(r.rows[k - 1].minute + kMinuteNs)},
                      {"from_ns", r.rows[i].minute},
                      {"to_ns", r.rows[k - 1].minute + kMinuteNs},
                      {"minutes", k - i}});
    i = k;
  }
  j["no_reports"] = std::move(silent);
  return j.dump();
}

std::string coverage_table(std::string_view json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.contains("rows") || !j.contains("total")) return "not a coverage document\n";
  auto hm = [](uint64_t ns) { return store::format_utc_ns(ns).substr(0, 16); };  // 2026-11-22T10:30
  struct Line {
    uint64_t from, to;  // minutes [from, to)
    std::string status;
    uint64_t captured = 0, stored = 0, kernel = 0, agent = 0, other = 0;
  };
  std::vector<Line> lines;
  for (const auto& r : j["rows"]) {
    uint64_t m = r["minute_ns"].get<uint64_t>();
    Line l{m, m + kMinuteNs, r["status"].get<std::string>(), r["captured_packets"].get<uint64_t>(),
           r["stored_packets"].get<uint64_t>(), r["kernel_dropped_packets"].get<uint64_t>(),
           r["agent_dropped_packets"].get<uint64_t>(), r["other_lost_packets"].get<uint64_t>()};
    // Runs of complete minutes become one line; loss and uncertain minutes stand alone.
    if (!lines.empty() && l.status == "complete" && lines.back().status == "complete" && lines.back().to == l.from) {
      auto& b = lines.back();
      b.to = l.to;
      b.captured += l.captured;
      b.stored += l.stored;
      continue;
    }
    lines.push_back(std::move(l));
  }
  for (const auto& r : j["no_reports"]) {
    lines.push_back(Line{r["from_ns"].get<uint64_t>(), r["to_ns"].get<uint64_t>(), "no-reports"});
  }
  std::sort(lines.begin(), lines.end(), [](const Line& a, const Line& b) { return a.from < b.from; });
  std::string out = fmt::format("{:<35} {:<11} {:>12} {:>12} {:>12} {:>12} {:>8}\n", "minute (UTC)", "status",
                                "captured", "stored", "kernel-drop", "agent-drop", "other");
  for (const auto& l : lines) {
    std::string when = l.to - l.from == kMinuteNs ? hm(l.from) : fmt::format("{} .. {}", hm(l.from), hm(l.to - kMinuteNs));
    out += fmt::format("{:<35} {:<11} {:>12} {:>12} {:>12} {:>12} {:>8}\n", when, l.status, l.captured, l.stored,
                       l.kernel, l.agent, l.other);
  }
  const auto& t = j["total"];
  uint64_t from = j["from_ns"].get<uint64_t>(), to = j["to_ns"].get<uint64_t>();
  if (j["complete"].get<bool>()) {
    out += fmt::format("agent {}: COMPLETE for {} .. {} UTC ({} minutes, {} packets stored, nothing lost)\n",
                       j["agent"].get<std::string>(), hm(from), hm(to), j["minutes"].get<uint64_t>(),
                       t["stored_packets"].get<uint64_t>());
  } else {
    out += fmt::format(
        "agent {}: INCOMPLETE for {} .. {} UTC: {} packets lost in {} of {} minutes (kernel {}, agent spool {}, "
        "other {}); {} minutes without reports, {} uncertain\n",
        j["agent"].get<std::string>(), hm(from), hm(to), t["lost_packets"].get<uint64_t>(),
        j["minutes_loss"].get<uint64_t>(), j["minutes"].get<uint64_t>(), t["kernel_dropped_packets"].get<uint64_t>(),
        t["agent_dropped_packets"].get<uint64_t>(), t["other_lost_packets"].get<uint64_t>(),
        j["minutes_no_reports"].get<uint64_t>(), j["minutes_uncertain"].get<uint64_t>());
  }
  return out;
}

}  // namespace trawl::collector
