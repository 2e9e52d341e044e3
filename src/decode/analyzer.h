// The analyze driver: frames in, JSON records out.
//
//   1. decap: link layer -> innermost UDP/TCP/SCTP (decap.h)
//   2. route: UDP datagrams to every selected decoder that wants them;
//      TCP segments to a per-decoder TcpReassembler, SCTP DATA chunks to a
//      per-decoder SctpAssembler, for the ports/PPIDs the decoder claims
//   3. decoders track streams/transactions and emit records to the Sink
//   4. finish(): decoders flush what is open; one "summary" record per
//      decoder (and one for decapsulation) carries the anomaly counts
//
// Decoders are rows of a registry (decoder_registry()): adding a protocol
// is one decoder file plus one row. Not thread-safe; nothing blocks.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "decode/capture_reader.h"
#include "decode/decap.h"
#include "decode/decoder.h"
#include "decode/sctp.h"
#include "decode/tcp_reassembly.h"

namespace trawl::decode {

struct AnalyzeOptions {
  bool rtp_heuristic = true;
  uint64_t rtp_idle_timeout_ns = 0;  // 0: streams end with the input
  bool gsmtap_per_frame = true;
};

struct DecoderRow {
  const char* name;
  const char* summary;
  std::function<Result<std::unique_ptr<Decoder>>(Sink, const AnalyzeOptions&)> make;
};
// Every decoder trawl knows, in output order.
const std::vector<DecoderRow>& decoder_registry();

class Analyzer : private L4Handler {
 public:
  // selectors: decoder names or "all". Unknown names are an error.
  static Result<std::unique_ptr<Analyzer>> create(const std::vector<std::string>& selectors, Sink sink,
                                                  const AnalyzeOptions& opt);

  void frame(const Frame& f);
  void finish();
  uint64_t frames() const { return decap_.frames(); }

 private:
  struct Slot {
    std::unique_ptr<Decoder> decoder;
    std::unique_ptr<TcpReassembler> tcp;
    std::unique_ptr<SctpAssembler> sctp;
  };
  explicit Analyzer(Sink sink);
  void on_l4(const L4Packet& p) override;

  Sink sink_;
  Decapsulator decap_;
  std::vector<Slot> slots_;
  uint64_t next_conn_id_ = 1;
  bool have_origin_ = false;
  bool finished_ = false;
};

}  // namespace trawl::decode
