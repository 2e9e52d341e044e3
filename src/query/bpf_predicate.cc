// BPF text -> predicate tree -> three-valued evaluation over index flows.
#include "query/bpf_predicate.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <optional>

namespace trawl::query {
namespace {

using store::FlowKey;

std::vector<std::string> tokenize(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
    } else if (c == '(' || c == ')') {
      out.emplace_back(1, c);
      ++i;
    } else if ((c == '&' || c == '|') && i + 1 < s.size() && s[i + 1] == c) {
      out.emplace_back(c == '&' ? "and" : "or");
      i += 2;
    } else if (c == '!' && !(i + 1 < s.size() && s[i + 1] == '=')) {
      out.emplace_back("not");
      ++i;
    } else {
      size_t j = i;
      while (j < s.size() && !std::strchr(" \t\r\n()", s[j]) &&
             !((s[j] == '&' || s[j] == '|') && j + 1 < s.size() && s[j + 1] == s[j]) && s[j] != '!')
        ++j;
      if (j == i) ++j;  // lone '&', '|' or "!="
      out.emplace_back(s.substr(i, j - i));
      i = j;
    }
  }
  return out;
}

struct Unsupported {
  std::string why;
};

class Parser {
 public:
  explicit Parser(std::vector<std::string> t) : t_(std::move(t)) {}
  BpfNode parse() {
    BpfNode n = expr();
    if (pos_ != t_.size()) throw Unsupported{"unexpected \"" + t_[pos_] + "\""};
    return n;
  }

 private:
  bool at(std::string_view w) const { return pos_ < t_.size() && t_[pos_] == w; }
  bool at_off(size_t k, std::string_view w) const { return pos_ + k < t_.size() && t_[pos_ + k] == w; }
  std::string take() {
    if (pos_ >= t_.size()) throw Unsupported{"unexpected end"};
    return t_[pos_++];
  }

  BpfNode expr() {
    BpfNode l = term();
    while (at("or")) {
      ++pos_;
      BpfNode n;
      n.op = BpfNode::kOr;
      n.kids = {std::move(l), term()};
      l = std::move(n);
    }
    return l;
  }
  BpfNode term() {
    BpfNode l = factor();
    while (at("and")) {
      ++pos_;
      BpfNode n;
      n.op = BpfNode::kAnd;
      n.kids = {std::move(l), factor()};
      l = std::move(n);
    }
    return l;
  }
  BpfNode factor() {
    if (at("not")) {
      ++pos_;
      BpfNode n;
      n.op = BpfNode::kNot;
      n.kids = {factor()};
      return n;
    }
    if (at("(")) {
      ++pos_;
      BpfNode n = expr();
      if (!at(")")) throw Unsupported{"missing )"};
      ++pos_;
      return n;
    }
    return primitive();
  }

  static bool is_type(std::string_view w) { return w == "host" || w == "net" || w == "port" || w == "portrange"; }
  static bool is_dir(std::string_view w) { return w == "src" || w == "dst"; }

  BpfNode primitive() {
    BpfNode n;
    std::string w = take();
    // Protocol qualifier or stand-alone protocol keyword.
    static const std::pair<std::string_view, int> kL4[] = {{"tcp", 6}, {"udp", 17}, {"sctp", 132}};
    bool qualified = false;
    if (w == "ip" || w == "ip6") {
      n.family = w == "ip" ? 4 : 6;
      n.explicit_family = true;
      if (pos_ < t_.size() && (is_type(t_[pos_]) || is_dir(t_[pos_]))) {
        qualified = true;
      } else {
        n.op = BpfNode::kFamily;
        return n;
      }
    } else {
      for (auto [name, p] : kL4) {
        if (w != name) continue;
        n.proto = p;
        if (pos_ < t_.size() && (is_type(t_[pos_]) || is_dir(t_[pos_]))) {
          qualified = true;
        } else {
          n.op = BpfNode::kProto;
          return n;
        }
      }
      if (!qualified && (w == "icmp" || w == "icmp6")) {
        if (pos_ < t_.size() && (is_type(t_[pos_]) || is_dir(t_[pos_])))
          throw Unsupported{w + " with a qualifier"};
        n.op = BpfNode::kProto;
        n.proto = w == "icmp" ? 1 : 58;
        n.family = w == "icmp" ? 4 : 6;
        return n;
      }
    }
    if (qualified) w = take();
    // Direction.
    if (is_dir(w)) {
      n.dir = w == "src" ? 1 : 2;
      if ((at("or") || at("and")) && pos_ + 1 < t_.size() && is_dir(t_[pos_ + 1]) && t_[pos_ + 1] != w) {
        n.dir = at("or") ? 0 : 3;
        pos_ += 2;
      }
      if (pos_ < t_.size() && is_type(t_[pos_])) {
        w = take();
      } else {
        w = "host";  // "src 10.0.0.1"
      }
    }
    if (!is_type(w)) throw Unsupported{"unsupported primitive \"" + w + "\""};
    std::string id = take();
    if (w == "host") {
      if (n.proto >= 0) throw Unsupported{"protocol-qualified host"};
      n.op = BpfNode::kHost;
      parse_addr(n, id, false);
    } else if (w == "net") {
      if (n.proto >= 0) throw Unsupported{"protocol-qualified net"};
      n.op = BpfNode::kNet;
      if (at("mask")) throw Unsupported{"net ... mask"};
      parse_addr(n, id, true);
    } else {
      if (n.family) throw Unsupported{"ip/ip6-qualified port"};
      n.op = BpfNode::kPort;
      if (w == "port") {
        n.port_lo = n.port_hi = parse_port(id);
      } else {
        size_t dash = id.find('-');
        if (dash == std::string::npos) throw Unsupported{"portrange needs A-B"};
        n.port_lo = parse_port(id.substr(0, dash));
        n.port_hi = parse_port(id.substr(dash + 1));
        if (n.port_lo > n.port_hi) std::swap(n.port_lo, n.port_hi);
      }
    }
    return n;
  }

  static uint16_t parse_port(std::string_view s) {
    unsigned v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v > 65535)
      throw Unsupported{"port \"" + std::string(s) + "\""};
    return static_cast<uint16_t>(v);
  }

  static void parse_addr(BpfNode& n, const std::string& id, bool net) {
    std::string a = id;
    int len = -1;
    if (size_t slash = id.find('/'); slash != std::string::npos) {
      if (!net) throw Unsupported{"host with /len"};
      a = id.substr(0, slash);
      unsigned v = 0;
      auto s = std::string_view(id).substr(slash + 1);
      auto r = std::from_chars(s.data(), s.data() + s.size(), v);
      if (r.ec != std::errc() || r.ptr != s.data() + s.size()) throw Unsupported{"prefix length"};
      len = static_cast<int>(v);
    }
    if (a.find(':') != std::string::npos) {
      if (inet_pton(AF_INET6, a.c_str(), n.addr.data()) != 1) throw Unsupported{"address " + a};
      if (n.family == 4) throw Unsupported{"ip with an IPv6 address"};
      n.family = 6;
      n.prefix = len < 0 ? 128 : static_cast<unsigned>(len);
      if (n.prefix > 128) throw Unsupported{"prefix length"};
      return;
    }
    // IPv4: host needs four parts; net accepts 1..4 ("net 10" = 10/8).
    unsigned parts[4] = {}, count = 0;
    std::string_view rest = a;
    while (!rest.empty()) {
      if (count == 4) throw Unsupported{"address " + a};
      size_t dot = rest.find('.');
      auto p = rest.substr(0, dot);
      auto r = std::from_chars(p.data(), p.data() + p.size(), parts[count]);
      if (p.empty() || r.ec != std::errc() || r.ptr != p.data() + p.size() || parts[count] > 255)
        throw Unsupported{"address " + a};  // host names land here too
      ++count;
      if (dot == std::string_view::npos) break;
      rest = rest.substr(dot + 1);
      if (rest.empty()) throw Unsupported{"address " + a};
    }
    if (count == 0 || (!net && count != 4)) throw Unsupported{"address " + a};
    if (n.family == 6) throw Unsupported{"ip6 with an IPv4 address"};
    n.family = 4;
    for (unsigned i = 0; i < 4; ++i) n.addr[i] = static_cast<uint8_t>(parts[i]);
    n.prefix = len < 0 ? (net ? 8 * count : 32) : static_cast<unsigned>(len);
    if (n.prefix > 32) throw Unsupported{"prefix length"};
  }

  std::vector<std::string> t_;
  size_t pos_ = 0;
};

bool prefix_match(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& net, unsigned bits) {
  unsigned full = bits / 8;
  if (std::memcmp(a.data(), net.data(), full) != 0) return false;
  if (bits % 8 == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xFF << (8 - bits % 8));
  return (a[full] & mask) == (net[full] & mask);
}

Tri from_bool(bool b) { return b ? Tri::kTrue : Tri::kFalse; }

Tri dir_match(uint8_t dir, bool src, bool dst) {
  switch (dir) {
    case 1: return from_bool(src);
    case 2: return from_bool(dst);
    case 3: return from_bool(src && dst);
    default: return from_bool(src || dst);
  }
}

}  // namespace

BpfPredicate BpfPredicate::parse(std::string_view filter) {
  BpfPredicate p;
  auto tokens = tokenize(filter);
  if (tokens.empty()) {
    p.why_all_ = "empty filter";
    return p;
  }
  try {
    p.root_ = Parser(std::move(tokens)).parse();
    p.all_ = false;
  } catch (const Unsupported& u) {
    p.why_all_ = u.why;
  }
  return p;
}

Tri BpfPredicate::eval(const FlowKey& f) const {
  if (all_) return Tri::kMaybe;
  return eval(root_, f);
}

Tri BpfPredicate::eval(const BpfNode& n, const FlowKey& f) const {
  switch (n.op) {
    case BpfNode::kAnd: {
      Tri a = eval(n.kids[0], f);
      if (a == Tri::kFalse) return a;
      Tri b = eval(n.kids[1], f);
      if (b == Tri::kFalse) return b;
      return a == Tri::kTrue && b == Tri::kTrue ? Tri::kTrue : Tri::kMaybe;
    }
    case BpfNode::kOr: {
      Tri a = eval(n.kids[0], f);
      if (a == Tri::kTrue) return a;
      Tri b = eval(n.kids[1], f);
      if (b == Tri::kTrue) return b;
      return a == Tri::kFalse && b == Tri::kFalse ? Tri::kFalse : Tri::kMaybe;
    }
    case BpfNode::kNot: {
      Tri a = eval(n.kids[0], f);
      return a == Tri::kMaybe ? a : from_bool(a == Tri::kFalse);
    }
    default:
      break;
  }
  // Primitives. libpcap reads the ethertype right after the MAC addresses:
  // behind a VLAN tag it sees 0x8100, so no IP primitive matches there.
  if (f.kind == FlowKey::kUnknown) return Tri::kMaybe;
  if (f.vlan != FlowKey::kNoVlan) return Tri::kFalse;
  if (f.kind == FlowKey::kNonIp) {
    // "host X" without ip/ip6 also means "arp host X or rarp host X".
    if ((n.op == BpfNode::kHost || n.op == BpfNode::kNet) && n.family == 4 &&
        (f.sport == 0x0806 || f.sport == 0x8035)) {
      if (!(f.flags & FlowKey::kArpAddrs)) return Tri::kMaybe;
      // "ip host X" does not look at ARP; plain "host X" does (as arp host).
      if (n.explicit_family) return Tri::kFalse;
      return dir_match(n.dir, prefix_match(f.src, n.addr, n.prefix), prefix_match(f.dst, n.addr, n.prefix));
    }
    return Tri::kFalse;
  }
  const uint8_t fam = f.kind == FlowKey::kIpv4 ? 4 : 6;
  switch (n.op) {
    case BpfNode::kFamily:
      return from_bool(fam == n.family);
    case BpfNode::kHost:
    case BpfNode::kNet:
      if (fam != n.family) return Tri::kFalse;
      return dir_match(n.dir, prefix_match(f.src, n.addr, n.prefix), prefix_match(f.dst, n.addr, n.prefix));
    case BpfNode::kProto:
      if (f.flags & FlowKey::kL4Inexact) return Tri::kMaybe;
      if (n.family && fam != n.family) return Tri::kFalse;
      return from_bool(f.proto == n.proto);
    case BpfNode::kPort: {
      if (f.flags & FlowKey::kL4Inexact) return Tri::kMaybe;
      if (f.proto != 6 && f.proto != 17 && f.proto != 132) return Tri::kFalse;
      if (n.proto >= 0 && f.proto != n.proto) return Tri::kFalse;
      auto in = [&](uint16_t p) { return p >= n.port_lo && p <= n.port_hi; };
      return dir_match(n.dir, in(f.sport), in(f.dport));
    }
    default:
      return Tri::kMaybe;
  }
}

// Over a block's summary: kFalse only if no flow of the block can satisfy
// the node (existential over-approximation: "and" of two maybes may still
// be unsatisfiable by one flow, "not" is always maybe).
Tri BpfPredicate::eval_summary(const BpfNode& n, const store::FlowSummary& s) const {
  using store::FlowSummary;
  switch (n.op) {
    case BpfNode::kAnd:
      return eval_summary(n.kids[0], s) == Tri::kFalse || eval_summary(n.kids[1], s) == Tri::kFalse
                 ? Tri::kFalse
                 : Tri::kMaybe;
    case BpfNode::kOr:
      return eval_summary(n.kids[0], s) == Tri::kFalse && eval_summary(n.kids[1], s) == Tri::kFalse
                 ? Tri::kFalse
                 : Tri::kMaybe;
    case BpfNode::kNot:
      return Tri::kMaybe;
    default:
      break;
  }
  if (s.flags & FlowSummary::kHasUnknown) return Tri::kMaybe;
  switch (n.op) {
    case BpfNode::kFamily:
      return s.kinds & (1u << n.family) ? Tri::kMaybe : Tri::kFalse;
    case BpfNode::kHost:
    case BpfNode::kNet:
      if (s.flags & FlowSummary::kHasArpNoAddr) return Tri::kMaybe;
      if (n.prefix != (n.family == 4 ? 32u : 128u)) return Tri::kMaybe;
      return s.may_have_addr(n.family, n.addr) ? Tri::kMaybe : Tri::kFalse;
    case BpfNode::kProto:
      if (s.flags & FlowSummary::kHasInexact) return Tri::kMaybe;
      return s.has_proto(static_cast<uint8_t>(n.proto)) ? Tri::kMaybe : Tri::kFalse;
    case BpfNode::kPort: {
      if (s.flags & FlowSummary::kHasInexact) return Tri::kMaybe;
      if (!s.has_proto(6) && !s.has_proto(17) && !s.has_proto(132)) return Tri::kFalse;
      if (n.port_hi - n.port_lo > 64) return Tri::kMaybe;
      for (uint32_t p = n.port_lo; p <= n.port_hi; ++p)
        if (s.may_have_port(static_cast<uint16_t>(p))) return Tri::kMaybe;
      return Tri::kFalse;
    }
    default:
      return Tri::kMaybe;
  }
}

bool BpfPredicate::block_may_match(const store::IndexBlock& b) const {
  if (b.packets == 0) return false;
  if (all_ || (b.flags & store::IndexBlock::kAllFlows)) return true;
  if (b.flows.empty() && b.flow_count == 0) return true;  // no flow list: cannot tell
  if (eval_summary(root_, b.summary) == Tri::kFalse) return false;
  bool any = false;
  if (!b.for_each_flow([&](const store::FlowKey& f) {
        if (!any && eval(root_, f) != Tri::kFalse) any = true;
      }))
    return true;  // flow table fails its checksum: assume anything
  return any;
}

}  // namespace trawl::query
