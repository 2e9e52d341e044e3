// ZeroMQ SUB for the live feed: see live_source.h.
#include "decode/live_source.h"

#include <zmq.hpp>

#include <vector>

#include "core/bytes.h"

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

class ZmqLiveSource : public LiveSource {
 public:
  ZmqLiveSource() : sock_(ctx_, zmq::socket_type::sub) {}

  Status start(const std::string& endpoint, const std::string& agent) {
    try {
      sock_.set(zmq::sockopt::rcvhwm, 100000);
      if (agent.empty()) {
        sock_.set(zmq::sockopt::subscribe, "data.v1.");
        sock_.set(zmq::sockopt::subscribe, "event.v1.");
      } else {
        sock_.set(zmq::sockopt::subscribe, "data.v1." + agent);
        sock_.set(zmq::sockopt::subscribe, "event.v1.");
      }
      sock_.connect(endpoint);
    } catch (const zmq::error_t& e) {
      return Error(std::string("live ") + endpoint + ": " + e.what());
    }
    agent_ = agent;
    return ok_status();
  }

  Result<Next> next(Frame& f, int timeout_ms) override {
    try {
      while (true) {
        zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
        int n = zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms));
        if (n == 0) return Next::kTimeout;
        parts_.clear();
        while (true) {
          zmq::message_t m;
          if (!sock_.recv(m, zmq::recv_flags::dontwait)) break;
          bool more = m.more();
          parts_.push_back(std::move(m));
          if (!more) break;
        }
        if (parts_.empty()) continue;
        std::string_view topic = parts_[0].to_string_view();
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
        auto span_of = [](const zmq::message_t& m) {
          return std::span<const uint8_t>(static_cast<const uint8_t*>(m.data()), m.size());
        };
        if (const char* bad = parse_live_data(span_of(parts_[1]), span_of(parts_[2]), f)) {
          anomalies_.add(bad);
          continue;
        }
        return Next::kFrame;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return Next::kTimeout;
      return Error(std::string("live feed: ") + e.what());
    }
  }
  const Anomalies& anomalies() const override { return anomalies_; }
  uint64_t events() const override { return events_; }

 private:
  zmq::context_t ctx_;
  zmq::socket_t sock_;
  std::string agent_;
  std::vector<zmq::message_t> parts_;
  Anomalies anomalies_;
  uint64_t events_ = 0;
};

}  // namespace

Result<std::unique_ptr<LiveSource>> LiveSource::connect(const std::string& endpoint, const std::string& agent) {
  auto s = std::make_unique<ZmqLiveSource>();
  auto st = s->start(endpoint, agent);
  if (!st.ok()) return std::move(st).error();
  return std::unique_ptr<LiveSource>(std::move(s));
}

}  // namespace trawl::decode
