// SIP framing and SDP media lines: see sip.h.
#include "decode/sip.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace trawl::decode {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

template <class T>
bool to_num(std::string_view s, T& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

// Next line (without CR LF / LF); advances s.
std::string_view next_line(std::string_view& s) {
  size_t nl = s.find('\n');
  std::string_view line = nl == std::string_view::npos ? s : s.substr(0, nl);
  s.remove_prefix(nl == std::string_view::npos ? s.size() : nl + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool parse_addr(std::string_view text, IpAddr& a) {
  std::string z(text);
  if (inet_pton(AF_INET, z.c_str(), a.b.data()) == 1) {
    a.family = 4;
    return true;
  }
  if (inet_pton(AF_INET6, z.c_str(), a.b.data()) == 1) {
    a.family = 6;
    return true;
  }
  return false;
}

}  // namespace

SipParse parse_sip(std::string_view data, SipMessage& out) {
  out = SipMessage{};
  // Skip keep-alive CRLFs between messages on streams.
  size_t lead = 0;
  while (lead < data.size() && (data[lead] == '\r' || data[lead] == '\n')) ++lead;
  std::string_view s = data.substr(lead);
  size_t end = s.find("\r\n\r\n");
  size_t sep = 4;
  if (end == std::string_view::npos) {
    end = s.find("\n\n");
    sep = 2;
  }
  std::string_view first = s.substr(0, std::min(s.find('\n'), s.size()));
  if (!first.empty() && first.back() == '\r') first.remove_suffix(1);
  if (first.size() < 8 && end == std::string_view::npos) {
    return s.size() < 1024 && (s.empty() || std::isupper(static_cast<unsigned char>(s[0]))) ? SipParse::kIncomplete
                                                                                              : SipParse::kNotSip;
  }
  if (first.starts_with("SIP/2.0 ")) {
    out.request = false;
    int st = 0;
    if (first.size() < 11 || !to_num(first.substr(8, 3), st)) return SipParse::kNotSip;
    out.status = st;
  } else {
    size_t sp = first.find(' ');
    if (sp == std::string_view::npos || sp == 0 || !first.ends_with("SIP/2.0")) {
      return first.find('\n') == std::string_view::npos && end == std::string_view::npos && s.size() < 1024
                 ? SipParse::kIncomplete
                 : SipParse::kNotSip;
    }
    for (char c : first.substr(0, sp))
      if (!std::isupper(static_cast<unsigned char>(c))) return SipParse::kNotSip;
    out.request = true;
    out.method = first.substr(0, sp);
  }
  if (end == std::string_view::npos) return s.size() > 65536 ? SipParse::kNotSip : SipParse::kIncomplete;
  std::string_view headers = s.substr(0, end);
  out.header_bytes = lead + end + sep;
  next_line(headers);  // start line
  while (!headers.empty()) {
    std::string_view line = next_line(headers);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = trim(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "Content-Length") || iequals(name, "l")) {
      size_t n = 0;
      if (to_num(value, n)) {
        out.content_length = n;
        out.has_content_length = true;
      }
    } else if (iequals(name, "Call-ID") || iequals(name, "i")) {
      out.call_id = value;
    } else if (iequals(name, "Content-Type") || iequals(name, "c")) {
      out.content_type = value;
    }
  }
  std::string_view rest = data.substr(out.header_bytes);
  out.body = out.has_content_length ? rest.substr(0, std::min(rest.size(), out.content_length)) : rest;
  return SipParse::kOk;
}

bool parse_sdp(std::string_view body, std::vector<SdpMedia>& out) {
  out.clear();
  if (!body.starts_with("v=")) return false;
  IpAddr session_addr;
  bool in_media = false;
  bool media_addr = false;
  while (!body.empty()) {
    std::string_view line = next_line(body);
    if (line.size() < 2 || line[1] != '=') continue;
    std::string_view v = line.substr(2);
    switch (line[0]) {
      case 'c': {  // c=IN IP4 10.0.0.1
        if (!v.starts_with("IN IP")) break;
        std::string_view a = v.size() > 7 ? v.substr(7) : std::string_view{};
        a = trim(a.substr(0, a.find('/')));
        IpAddr addr;
        if (!parse_addr(a, addr)) break;
        if (in_media) {
          out.back().addr = addr;
          media_addr = true;
        } else {
          session_addr = addr;
        }
        break;
      }
      case 'm': {  // m=audio 49170 RTP/AVP 0 8 97
        SdpMedia m;
        size_t sp = v.find(' ');
        if (sp == std::string_view::npos) break;
        m.media = std::string(v.substr(0, sp));
        std::string_view r = v.substr(sp + 1);
        std::string_view port = r.substr(0, std::min(r.find(' '), r.find('/')));
        if (!to_num(port, m.port)) break;
        m.addr = session_addr;
        out.push_back(std::move(m));
        in_media = true;
        media_addr = false;
        break;
      }
      case 'a': {  // a=rtpmap:97 AMR-WB/16000/1
        if (!in_media || !v.starts_with("rtpmap:")) break;
        std::string_view r = v.substr(7);
        size_t sp = r.find(' ');
        if (sp == std::string_view::npos) break;
        unsigned pt = 0;
        if (!to_num(r.substr(0, sp), pt) || pt > 127) break;
        std::string_view enc = trim(r.substr(sp + 1));
        SdpPayload p;
        p.pt = static_cast<uint8_t>(pt);
        size_t slash = enc.find('/');
        p.name = std::string(enc.substr(0, slash));
        if (slash != std::string_view::npos) {
          std::string_view rate = enc.substr(slash + 1);
          rate = rate.substr(0, rate.find('/'));
          uint32_t cr = 0;
          if (to_num(rate, cr)) p.clock_rate = cr;
        }
        out.back().payloads.push_back(std::move(p));
        break;
      }
      default:
        break;
    }
  }
  (void)media_addr;
  std::erase_if(out, [](const SdpMedia& m) { return m.port == 0 || m.addr.family == 0; });
  return true;
}

}  // namespace trawl::decode
