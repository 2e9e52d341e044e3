// Fuzzes Diameter message parsing, dictionary validation and the tracker.
// The first input byte picks the transport and chunk size, so TCP framing
// across arbitrary chunk boundaries, gaps and SCTP chunks are all reached.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "decode/diameter.h"

using namespace trawl::decode;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const DiameterDictionary* dict = [] {
    auto d = load_default_dictionary();
    if (!d.ok()) std::abort();
    return new DiameterDictionary(std::move(d).value());
  }();
  std::span<const uint8_t> in(data, size);

  DiameterMessage msg = parse_diameter(in);
  std::vector<std::string> details;
  validate_diameter(msg, *dict, &details);

  if (size == 0) return 0;
  uint8_t mode = in[0];
  in = in.subspan(1);
  size_t records = 0;
  DiameterTracker::Options opts;
  opts.max_message_bytes = 4096;
  opts.max_pending_per_connection = 16;
  DiameterTracker t(
      *dict,
      [&](nlohmann::json&& j) {
        (void)j.dump();  // must always serialise
        ++records;
      },
      opts);
  bool sctp = mode & 0x80;
  size_t chunk = (mode & 0x3f) + 1;
  bool from_a = true;
  uint64_t ts = 1;
  while (!in.empty()) {
    size_t n = sctp ? std::min<size_t>(in.size(), 20 + chunk * 8) : std::min(in.size(), chunk);
    DiameterSegment seg{1, from_a, "a:1", "b:2", sctp, ts++, in.first(n)};
    t.on_data(seg);
    in = in.subspan(n);
    if (mode & 0x40) from_a = !from_a;
    if ((mode & 0x20) && ts % 7 == 0) t.on_gap(1, from_a);
  }
  t.finish();
  (void)t.anomalies();
  return 0;
}
