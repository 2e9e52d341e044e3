// The analyze driver and the decoder registry: see analyzer.h.
#include "decode/analyzer.h"

#include <ctime>

#include "decode/dns.h"
#include "decode/gsmtap.h"
#include "decode/rtp.h"

#if __has_include("decode/diameter.h")
#include "decode/diameter.h"
#define TRAWL_HAVE_DIAMETER 1
#endif

namespace trawl::decode {

std::string rfc3339_ns(uint64_t ts_ns) {
  time_t secs = static_cast<time_t>(ts_ns / 1000000000ull);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%09lluZ", static_cast<unsigned long long>(ts_ns % 1000000000ull));
  return buf;
}

namespace {

#ifdef TRAWL_HAVE_DIAMETER
// Diameter (TCP/SCTP 3868, SCTP PPID 46/47): the tracker takes exactly our
// StreamSegment fields.
class DiameterRow : public Decoder {
 public:
  // Records get "kind": "diameter" like every other decoder's (es-bulk index).
  DiameterRow(const DiameterDictionary& dict, Sink sink)
      : tracker_(dict, [sink = std::move(sink)](nlohmann::json&& j) {
          if (!j.contains("kind")) j["kind"] = "diameter";
          sink(std::move(j));
        }) {}
  std::string_view name() const override { return "diameter"; }
  bool wants_stream(uint16_t sport, uint16_t dport, bool sctp, uint32_t ppid) const override {
    return sport == 3868 || dport == 3868 || (sctp && (ppid == 46 || ppid == 47));
  }
  void on_stream_data(const StreamSegment& s) override {
    tracker_.on_data(DiameterSegment{s.conn_id, s.from_a, s.src, s.dst, s.sctp, s.ts_ns, s.data});
  }
  void on_stream_gap(uint64_t conn_id, bool from_a) override { tracker_.on_gap(conn_id, from_a); }
  void on_stream_close(uint64_t conn_id) override { tracker_.on_close(conn_id); }
  void finish() override { tracker_.finish(); }
  std::vector<std::pair<std::string, uint64_t>> anomalies() const override { return tracker_.anomalies(); }

 private:
  DiameterTracker tracker_;
};
#endif

}  // namespace

const std::vector<DecoderRow>& decoder_registry() {
  static const std::vector<DecoderRow> rows = {
      {"rtp", "RTP streams (SIP/SDP-announced and heuristic): loss, jitter, deltas",
       [](Sink s, const AnalyzeOptions& o) -> Result<std::unique_ptr<Decoder>> {
         return std::unique_ptr<Decoder>(std::make_unique<RtpDecoder>(std::move(s), RtpDecoder::Options{o.rtp_heuristic, o.rtp_idle_timeout_ns}));
       }},
#ifdef TRAWL_HAVE_DIAMETER
      {"diameter", "Diameter request/answer pairs over TCP/SCTP",
       [](Sink s, const AnalyzeOptions&) -> Result<std::unique_ptr<Decoder>> {
         static auto dict = load_default_dictionary();
         if (!dict.ok()) return dict.error().with_context("loading the Diameter dictionary");
         return std::unique_ptr<Decoder>(std::make_unique<DiameterRow>(*dict, std::move(s)));
       }},
#endif
      {"dns", "DNS transactions over UDP/TCP 53: latency, rcode, answers",
       [](Sink s, const AnalyzeOptions&) -> Result<std::unique_ptr<Decoder>> {
         return std::unique_ptr<Decoder>(std::make_unique<DnsDecoder>(std::move(s), DnsDecoder::Options{}));
       }},
      {"gsmtap", "GSMTAP (UDP 4729) header fields and counts per type",
       [](Sink s, const AnalyzeOptions& o) -> Result<std::unique_ptr<Decoder>> {
         return std::unique_ptr<Decoder>(
             std::make_unique<GsmtapDecoder>(std::move(s), GsmtapDecoder::Options{o.gsmtap_per_frame}));
       }},
  };
  return rows;
}

Analyzer::Analyzer(Sink sink) : sink_(std::move(sink)), decap_(*this) {}

Result<std::unique_ptr<Analyzer>> Analyzer::create(const std::vector<std::string>& selectors, Sink sink,
                                                   const AnalyzeOptions& opt) {
  std::unique_ptr<Analyzer> a(new Analyzer(sink));
  bool all = false;
  for (const auto& s : selectors) {
    if (s == "all") {
      all = true;
      continue;
    }
    bool known = false;
    for (const auto& row : decoder_registry()) known |= s == row.name;
    if (!known) {
      std::string names;
      for (const auto& row : decoder_registry()) names += std::string(row.name) + ", ";
      return Error("unknown decoder '" + s + "' (known: " + names + "all)");
    }
  }
  for (const auto& row : decoder_registry()) {
    bool want = all;
    for (const auto& s : selectors) want |= s == row.name;
    if (!want) continue;
    auto d = row.make(sink, opt);
    if (!d.ok()) return std::move(d).error();
    Slot slot;
    slot.decoder = std::move(*d);
    Decoder* dec = slot.decoder.get();
    slot.tcp = std::make_unique<TcpReassembler>(*dec);
    slot.tcp->set_id_source(&a->next_conn_id_);
    slot.sctp = std::make_unique<SctpAssembler>(
        *dec, [dec](uint16_t sp, uint16_t dp, uint32_t ppid) { return dec->wants_stream(sp, dp, true, ppid); });
    slot.sctp->set_id_source(&a->next_conn_id_);
    a->slots_.push_back(std::move(slot));
  }
  if (a->slots_.empty()) return Error("no decoder selected");
  return a;
}

void Analyzer::frame(const Frame& f) {
  if (!have_origin_) {
    have_origin_ = true;
    for (auto& s : slots_) s.decoder->set_time_origin(f.ts_ns);
  }
  decap_.decode(f);
}

void Analyzer::on_l4(const L4Packet& p) {
  switch (p.proto) {
    case kProtoUdp:
      for (auto& s : slots_)
        if (s.decoder->wants_udp(p)) s.decoder->on_udp(p);
      return;
    case kProtoTcp:
      for (auto& s : slots_)
        if (s.decoder->wants_stream(p.sport, p.dport, false, 0)) s.tcp->add(p);
      return;
    case kProtoSctp:
      for (auto& s : slots_) s.sctp->add(p);
      return;
    default:
      return;
  }
}

void Analyzer::finish() {
  if (finished_) return;
  finished_ = true;
  for (auto& s : slots_) {
    s.tcp->finish();
    s.sctp->finish();
    s.decoder->finish();
  }
  nlohmann::json d;
  d["kind"] = "summary";
  d["decoder"] = "decap";
  d["frames"] = decap_.frames();
  auto& da = d["anomalies"] = nlohmann::json::object();
  for (const auto& [k, v] : decap_.anomalies().list()) da[k] = v;
  // TCP/SCTP anomalies, summed over the decoders' reassemblers.
  for (auto& s : slots_) {
    for (const auto& [k, v] : s.tcp->anomalies().list()) da[k] = da.value(k, uint64_t{0}) + v;
    for (const auto& [k, v] : s.sctp->anomalies().list()) da[k] = da.value(k, uint64_t{0}) + v;
  }
  sink_(std::move(d));
  for (auto& s : slots_) {
    nlohmann::json j;
    j["kind"] = "summary";
    j["decoder"] = s.decoder->name();
    auto& a = j["anomalies"] = nlohmann::json::object();
    for (const auto& [k, v] : s.decoder->anomalies()) a[k] = v;
    sink_(std::move(j));
  }
}

}  // namespace trawl::decode
