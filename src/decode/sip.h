// SIP (RFC 3261) message framing and SDP (RFC 8866) media descriptions —
// only what RTP analysis needs: which address:port pairs carry RTP and
// which dynamic payload types map to which codec and clock rate.
//
// parse_sip() and parse_sdp() are pure and never throw; they read through
// ByteReader-checked views. Not thread-safe (no state).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "decode/decap.h"

namespace trawl::decode {

struct SipMessage {
  bool request = false;
  std::string_view method;      // requests
  int status = 0;               // responses
  std::string_view call_id;
  std::string_view content_type;
  size_t header_bytes = 0;      // start line + headers + blank line
  size_t content_length = 0;    // from Content-Length / l: (0 if absent)
  bool has_content_length = false;
  std::string_view body;        // may be shorter than content_length
};

enum class SipParse { kOk, kIncomplete, kNotSip };
// Parses one message at the start of data. kIncomplete: the header block has
// not ended yet (stream transports wait for more bytes).
SipParse parse_sip(std::string_view data, SipMessage& out);

struct SdpPayload {
  uint8_t pt = 0;
  std::string name;      // "AMR-WB", "telephone-event"
  uint32_t clock_rate = 0;
};
struct SdpMedia {
  std::string media;  // "audio", "video"
  IpAddr addr;
  uint16_t port = 0;
  std::vector<SdpPayload> payloads;  // from a=rtpmap
};
// Media descriptions with a usable connection address and non-zero port.
// Returns false when the body is not SDP at all.
bool parse_sdp(std::string_view body, std::vector<SdpMedia>& out);

}  // namespace trawl::decode
