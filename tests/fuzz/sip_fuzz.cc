// libFuzzer target: SIP message framing and SDP media lines.
#include "decode/sip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trawl::decode;
  std::string_view s(reinterpret_cast<const char*>(data), size);
  SipMessage m;
  if (parse_sip(s, m) == SipParse::kOk) {
    std::vector<SdpMedia> media;
    (void)parse_sdp(m.body, media);
  }
  std::vector<SdpMedia> media;
  (void)parse_sdp(s, media);
  return 0;
}
