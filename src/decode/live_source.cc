// ZeroMQ SUB for the live feed: see live_source.h.
#include "decode/live_source.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/bytes.h"
#include "live/zmtp_subscriber.h"

namespace trawl::decode {

const char* parse_live_data(std::span<const uint8_t> file_header, std::span<const uint8_t> record, Frame& f) {
  ByteReader h(file_header);
  uint32_t magic = h.u32le();
  h.skip(16);
  uint32_t lt = h.u32le();
  if (!h.ok()) return "live.short_file_header";
  bool swapped;
  bool nano;
  if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) swapped = false;
  else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) swapped = true;
  else return "live.bad_magic";
  nano = magic == 0xa1b23c4d || magic == 0x4d3cb2a1;
  auto fix = [&](uint32_t v) { return swapped ? __builtin_bswap32(v) : v; };
  ByteReader r(record);
  uint32_t sec = fix(r.u32le()), frac = fix(r.u32le()), caplen = fix(r.u32le()), len = fix(r.u32le());
  if (!r.ok()) return "live.short_record";
  auto data = r.bytes(caplen);
  if (!r.ok()) return "live.truncated_record";
  f.link_type = fix(lt) & 0x0FFFFFFF;
  f.ts_ns = uint64_t{sec} * 1000000000ull + (nano ? frac : uint64_t{frac} * 1000ull);
  f.orig_len = len;
  f.data = data;
  return nullptr;
}

namespace {

class ZmtpLiveSource : public LiveSource {
 public:
  ZmtpLiveSource(std::unique_ptr<live::zmtp::Subscriber> sub, std::string agent)
      : sub_(std::move(sub)), agent_(std::move(agent)) {}

  Result<Next> next(Frame& f, int timeout_ms) override {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      int left = static_cast<int>(std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
      if (!sub_->receive(parts_, left)) return Next::kTimeout;
      std::string_view topic(reinterpret_cast<const char*>(parts_[0].data()), parts_[0].size());
      if (topic.starts_with("event.v1.")) {
        // Events for other agents are filtered here (the prefix can't).
        if (agent_.empty() || topic.ends_with("." + agent_)) ++events_;
        continue;
      }
      if (!agent_.empty() && topic != "data.v1." + agent_) continue;  // "edge1" must not match "edge10"
      if (parts_.size() != 3) {
        anomalies_.add("live.bad_part_count");
        continue;
      }
      if (const char* bad = parse_live_data(parts_[1], parts_[2], f)) {
        anomalies_.add(bad);
        continue;
      }
      return Next::kFrame;
    }
  }
  const Anomalies& anomalies() const override { return anomalies_; }
  uint64_t events() const override { return events_; }

 private:
  std::unique_ptr<live::zmtp::Subscriber> sub_;
  std::string agent_;
  live::zmtp::Subscriber::Parts parts_;
  Anomalies anomalies_;
  uint64_t events_ = 0;
};

}  // namespace

Result<std::unique_ptr<LiveSource>> LiveSource::connect(const std::string& endpoint, const std::string& agent) {
  std::vector<std::string> prefixes{agent.empty() ? "data.v1." : "data.v1." + agent, "event.v1."};
  auto sub = live::zmtp::Subscriber::create(endpoint, std::move(prefixes));
  if (!sub.ok()) return std::move(sub).error().with_context("live");
  return std::unique_ptr<LiveSource>(std::make_unique<ZmtpLiveSource>(std::move(*sub), agent));
}

}  // namespace trawl::decode
