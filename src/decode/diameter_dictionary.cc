// Diameter dictionary text parser: tokenizer + recursive descent over the
// statements of docs/diameter.md ("vendor", "application", "avp", "enum"
// lines and CCF definitions), then a link step that resolves AVP names
// across all files and builds the lookup tables.
#include "decode/diameter_dictionary.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

// Propagates an error that already names file:line:column.
#define DICT_TRY(expr)                                            \
  do {                                                            \
    auto dict_try_r_ = (expr);                                    \
    if (!dict_try_r_.ok()) return std::move(dict_try_r_).error(); \
  } while (0)

namespace trawl::decode {

std::string_view avp_type_name(AvpType t) {
  switch (t) {
    case AvpType::kOctetString: return "OctetString";
    case AvpType::kInteger32: return "Integer32";
    case AvpType::kInteger64: return "Integer64";
    case AvpType::kUnsigned32: return "Unsigned32";
    case AvpType::kUnsigned64: return "Unsigned64";
    case AvpType::kFloat32: return "Float32";
    case AvpType::kFloat64: return "Float64";
    case AvpType::kGrouped: return "Grouped";
    case AvpType::kAddress: return "Address";
    case AvpType::kTime: return "Time";
    case AvpType::kUTF8String: return "UTF8String";
    case AvpType::kDiameterIdentity: return "DiameterIdentity";
    case AvpType::kDiameterURI: return "DiameterURI";
    case AvpType::kEnumerated: return "Enumerated";
    case AvpType::kIPFilterRule: return "IPFilterRule";
  }
  return "?";
}

namespace {

constexpr AvpType kAllTypes[] = {
    AvpType::kOctetString, AvpType::kInteger32,  AvpType::kInteger64,   AvpType::kUnsigned32,
    AvpType::kUnsigned64,  AvpType::kFloat32,    AvpType::kFloat64,     AvpType::kGrouped,
    AvpType::kAddress,     AvpType::kTime,       AvpType::kUTF8String,  AvpType::kDiameterIdentity,
    AvpType::kDiameterURI, AvpType::kEnumerated, AvpType::kIPFilterRule};

// Limits that keep a hostile --dictionary directory from exhausting memory.
constexpr size_t kMaxRulesPerGrammar = 256;
constexpr size_t kMaxAvps = 100000;

struct Token {
  enum class Kind { kWord, kPunct, kDefine, kEnd };  // kDefine is "::="
  Kind kind = Kind::kEnd;
  std::string_view text;
  int line = 0;
  int col = 0;
  bool line_start = false;  // first token on its line
};

bool word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A name reference inside a grammar, resolved in the link step.
struct RuleRef {
  GrammarRule rule;
  std::string name;  // "AVP" for the wildcard
  int line = 0, col = 0;
};

struct PendingGrammar {
  std::string file;
  int line = 0, col = 0;
  std::vector<RuleRef> rules;
};

struct PendingCommand {
  CommandDef def;
  PendingGrammar body;
};

struct PendingGrouped {
  std::string name;
  uint32_t code = 0;
  bool has_vendor = false;
  uint32_t vendor = 0;
  PendingGrammar body;
};

struct PendingEnum {
  std::string avp, value_name, file;
  int64_t value = 0;
  int line = 0, col = 0;
};

// Everything all files declared, before names are resolved.
struct Collected {
  std::map<std::string, uint32_t> vendors;  // name -> id
  std::vector<ApplicationDef> applications;
  std::vector<AvpDef> avps;
  std::vector<PendingCommand> commands;
  std::vector<PendingGrouped> grouped;
  std::vector<PendingEnum> enums;
};

class FileParser {
 public:
  FileParser(const DictionarySource& src, Collected& out) : src_(src), out_(out) {
    out_.vendors.emplace("IETF", 0);
  }

  Status run() {
    DICT_TRY(tokenize());
    while (peek().kind != Token::Kind::kEnd) {
      const Token& t = peek();
      Status s = ok_status();
      if (t.kind == Token::Kind::kWord && t.text == "vendor") {
        s = vendor_line();
      } else if (t.kind == Token::Kind::kWord && t.text == "application") {
        s = application_line();
      } else if (t.kind == Token::Kind::kWord && t.text == "avp") {
        s = avp_line();
      } else if (t.kind == Token::Kind::kWord && t.text == "enum") {
        s = enum_line();
      } else if (is_punct(t, "<")) {
        s = definition();
      } else {
        s = error(t, "expected 'vendor', 'application', 'avp', 'enum' or '<Name> ::=', found " +
                         describe(t));
      }
      if (!s.ok()) return s;
    }
    return ok_status();
  }

 private:
  // --- tokenizer -----------------------------------------------------------
  Status tokenize() {
    const std::string& s = src_.text;
    int line = 1;
    size_t line_begin = 0;
    bool at_line_start = true;
    size_t i = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '\n') {
        ++line;
        line_begin = ++i;
        at_line_start = true;
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\r') {
        ++i;
        continue;
      }
      if (c == '#') {
        while (i < s.size() && s[i] != '\n') ++i;
        continue;
      }
      Token t;
      t.line = line;
      t.col = static_cast<int>(i - line_begin) + 1;
      t.line_start = at_line_start;
      at_line_start = false;
      if (s.compare(i, 3, "::=") == 0) {
        t.kind = Token::Kind::kDefine;
        t.text = std::string_view(s).substr(i, 3);
        i += 3;
      } else if (std::string_view("<>{}[]*,:").find(c) != std::string_view::npos) {
        t.kind = Token::Kind::kPunct;
        t.text = std::string_view(s).substr(i, 1);
        ++i;
      } else if (word_char(c)) {
        size_t j = i;
        while (j < s.size() && word_char(s[j])) ++j;
        t.kind = Token::Kind::kWord;
        t.text = std::string_view(s).substr(i, j - i);
        i = j;
      } else {
        return Error(
            src_.name + ":" + std::to_string(t.line) + ":" + std::to_string(t.col) +
            ": unexpected character '" +
            (std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "\\x" + hex(c)) +
            "'");
      }
      tokens_.push_back(t);
    }
    Token end;
    end.line = line;
    end.col = static_cast<int>(s.size() - line_begin) + 1;
    end.line_start = true;
    tokens_.push_back(end);
    return ok_status();
  }

  static std::string hex(char c) {
    static const char* d = "0123456789abcdef";
    auto u = static_cast<unsigned char>(c);
    return {d[u >> 4], d[u & 15]};
  }

  // --- token helpers ---------------------------------------------------------
  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& next() {
    const Token& t = peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  static bool is_punct(const Token& t, std::string_view p) {
    return t.kind == Token::Kind::kPunct && t.text == p;
  }
  static std::string describe(const Token& t) {
    if (t.kind == Token::Kind::kEnd) return "end of file";
    return "'" + std::string(t.text) + "'";
  }
  Error error(const Token& t, const std::string& why) const {
    return Error(src_.name + ":" + std::to_string(t.line) + ":" + std::to_string(t.col) + ": " +
                 why);
  }
  Status expect_punct(std::string_view p, std::string_view context) {
    const Token& t = peek();
    if (!is_punct(t, p))
      return error(t, "expected '" + std::string(p) + "' " + std::string(context) + ", found " +
                          describe(t));
    next();
    return ok_status();
  }
  // Tokens of a directive: the rest of the current line.
  bool on_line(const Token& first) const {
    const Token& t = peek();
    return t.kind != Token::Kind::kEnd && t.line == first.line;
  }
  Result<uint32_t> number(const Token& t, std::string_view what) const {
    uint32_t v = 0;
    if (t.kind != Token::Kind::kWord || !all_digits(t.text))
      return error(t, "expected " + std::string(what) + " (a number), found " + describe(t));
    auto [p, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
    if (ec != std::errc() || p != t.text.data() + t.text.size())
      return error(t, std::string(what) + " '" + std::string(t.text) + "' is out of range");
    return v;
  }
  Result<std::string> name(const Token& t, std::string_view what) const {
    if (t.kind != Token::Kind::kWord || all_digits(t.text))
      return error(t, "expected " + std::string(what) + " (a name), found " + describe(t));
    return std::string(t.text);
  }
  Status end_of_directive(const Token& first) {
    if (on_line(first))
      return error(peek(), "unexpected " + describe(peek()) + " after the " +
                               std::string(first.text) + " line");
    return ok_status();
  }

  // --- directives ------------------------------------------------------------
  // vendor <id> <Name>
  Status vendor_line() {
    const Token& kw = next();
    if (!on_line(kw)) return error(kw, "vendor: expected <id> <Name>");
    auto id = number(next(), "vendor id");
    if (!id) return id.error();
    if (!on_line(kw)) return error(kw, "vendor: expected a name after the id");
    auto nm = name(next(), "vendor name");
    if (!nm) return nm.error();
    DICT_TRY(end_of_directive(kw));
    auto [it, inserted] = out_.vendors.emplace(*nm, *id);
    if (!inserted && it->second != *id)
      return error(kw, "vendor " + *nm + " already has id " + std::to_string(it->second));
    return ok_status();
  }

  // application <id> <Name>; sets the default application of later commands.
  Status application_line() {
    const Token& kw = next();
    if (!on_line(kw)) return error(kw, "application: expected <id> <Name>");
    auto id = number(next(), "application id");
    if (!id) return id.error();
    if (!on_line(kw)) return error(kw, "application: expected a name after the id");
    auto nm = name(next(), "application name");
    if (!nm) return nm.error();
    DICT_TRY(end_of_directive(kw));
    out_.applications.push_back({*id, *nm});
    current_app_ = *id;
    return ok_status();
  }

  Result<uint8_t> flags(const Token& t) const {
    if (t.kind != Token::Kind::kWord)
      return error(t, "expected AVP flags (letters of VMP or '-'), found " + describe(t));
    if (t.text == "-") return uint8_t{0};
    uint8_t f = 0;
    for (char c : t.text) {
      uint8_t bit = c == 'V' ? kAvpFlagV : c == 'M' ? kAvpFlagM : c == 'P' ? kAvpFlagP : 0;
      if (bit == 0 || (f & bit))
        return error(
            t, "bad AVP flags '" + std::string(t.text) + "' (letters of VMP, each once, or '-')");
      f |= bit;
    }
    return f;
  }

  // avp <Name> <Code> <Vendor> <Type> <MUST> <MAY> <MUST-NOT>
  Status avp_line() {
    const Token& kw = next();
    auto need = [&](std::string_view what) -> Status {
      if (!on_line(kw)) return error(kw, "avp: missing " + std::string(what));
      return ok_status();
    };
    AvpDef d;
    d.where = src_.name + ":" + std::to_string(kw.line);
    DICT_TRY(need("<Name>"));
    auto nm = name(next(), "AVP name");
    if (!nm) return nm.error();
    d.name = *nm;
    DICT_TRY(need("<Code>"));
    auto code = number(next(), "AVP code");
    if (!code) return code.error();
    d.code = *code;
    DICT_TRY(need("<Vendor>"));
    const Token& vt = next();
    if (vt.kind == Token::Kind::kWord && all_digits(vt.text)) {
      auto v = number(vt, "vendor id");
      if (!v) return v.error();
      d.vendor = *v;
    } else {
      auto it = vt.kind == Token::Kind::kWord ? out_.vendors.find(std::string(vt.text))
                                              : out_.vendors.end();
      if (it == out_.vendors.end())
        return error(vt,
                     "unknown vendor " + describe(vt) + " (declare it with 'vendor <id> <Name>')");
      d.vendor = it->second;
    }
    DICT_TRY(need("<Type>"));
    const Token& tt = next();
    bool found = false;
    for (AvpType at : kAllTypes) {
      if (tt.kind == Token::Kind::kWord && tt.text == avp_type_name(at)) {
        d.type = at;
        found = true;
      }
    }
    if (!found) return error(tt, "unknown AVP data type " + describe(tt));
    DICT_TRY(need("MUST flags"));
    auto must = flags(next());
    if (!must) return must.error();
    DICT_TRY(need("MAY flags"));
    auto may = flags(next());
    if (!may) return may.error();
    DICT_TRY(need("MUST NOT flags"));
    auto must_not = flags(next());
    if (!must_not) return must_not.error();
    if ((*must & *must_not) || (*must & *may) || (*may & *must_not))
      return error(kw, "avp " + d.name + ": a flag is in more than one of MUST/MAY/MUST NOT");
    d.must = *must;
    d.may = *may;
    d.must_not = *must_not;
    DICT_TRY(end_of_directive(kw));
    if (out_.avps.size() >= kMaxAvps) return error(kw, "too many AVP definitions");
    out_.avps.push_back(std::move(d));
    return ok_status();
  }

  // enum <AvpName> <ValueName> <Number>
  Status enum_line() {
    const Token& kw = next();
    PendingEnum e;
    e.file = src_.name;
    e.line = kw.line;
    e.col = kw.col;
    if (!on_line(kw)) return error(kw, "enum: expected <AvpName> <ValueName> <Number>");
    auto a = name(next(), "AVP name");
    if (!a) return a.error();
    if (!on_line(kw)) return error(kw, "enum: missing <ValueName>");
    auto v = name(next(), "value name");
    if (!v) return v.error();
    if (!on_line(kw)) return error(kw, "enum: missing <Number>");
    const Token& nt = next();
    std::string_view digits = nt.text;
    bool neg = !digits.empty() && digits[0] == '-';
    if (neg) digits.remove_prefix(1);
    int64_t n = 0;
    if (nt.kind != Token::Kind::kWord || !all_digits(digits) ||
        std::from_chars(digits.data(), digits.data() + digits.size(), n).ec != std::errc() ||
        n > 0xffffffffLL)
      return error(nt, "enum: expected a number, found " + describe(nt));
    DICT_TRY(end_of_directive(kw));
    e.avp = *a;
    e.value_name = *v;
    e.value = neg ? -n : n;
    out_.enums.push_back(std::move(e));
    return ok_status();
  }

  // --- CCF definitions --------------------------------------------------------
  // "<" name ">" "::=" ( command-header | avp-header ) body
  Status definition() {
    const Token& open = next();
    auto nm = name(next(), "a command or grouped AVP name");
    if (!nm) return nm.error();
    DICT_TRY(expect_punct(">", "after the definition name"));
    if (peek().kind != Token::Kind::kDefine)
      return error(peek(), "expected '::=' after <" + *nm + ">, found " + describe(peek()));
    next();
    const Token& h_open = peek();
    DICT_TRY(expect_punct("<", "to open the header"));
    const Token& kind = next();
    PendingGrammar body;
    body.file = src_.name;
    body.line = open.line;
    body.col = open.col;
    auto eq = [](std::string_view a, std::string_view b) {
      return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
             });
    };
    if (kind.kind == Token::Kind::kWord && eq(kind.text, "Diameter")) {
      const Token& h = next();
      if (!(h.kind == Token::Kind::kWord && eq(h.text, "Header")))
        return error(h, "expected 'Diameter Header:', found " + describe(h));
      DICT_TRY(expect_punct(":", "after 'Diameter Header'"));
      PendingCommand c;
      c.def.name = *nm;
      c.def.where = src_.name + ":" + std::to_string(open.line);
      c.def.application = current_app_;
      auto code = number(next(), "command code");
      if (!code) return code.error();
      c.def.code = *code;
      bool have_app = false;
      // Flags and application id; RFC 6733's ABNF has no comma before the
      // application id, but every specification writes one: both accepted.
      while (!is_punct(peek(), ">")) {
        bool comma = is_punct(peek(), ",");
        if (comma) next();
        const Token& f = next();
        if (f.kind == Token::Kind::kWord &&
            (f.text == "REQ" || f.text == "PXY" || f.text == "ERR")) {
          if (!comma) return error(f, "expected ',' before " + describe(f));
          bool& bit = f.text == "REQ"   ? c.def.request
                      : f.text == "PXY" ? c.def.proxiable
                                        : c.def.error;
          if (bit || have_app)
            return error(f, describe(f) + " repeated or after the application id");
          bit = true;
        } else if (f.kind == Token::Kind::kWord && all_digits(f.text) && !have_app) {
          auto app = number(f, "application id");
          if (!app) return app.error();
          c.def.application = *app;
          have_app = true;
        } else {
          return error(f, "expected REQ, PXY, ERR, an application id or '>' in the header, found " +
                              describe(f));
        }
      }
      next();  // '>'
      DICT_TRY(rules(body));
      c.body = std::move(body);
      out_.commands.push_back(std::move(c));
      return ok_status();
    }
    // RFC 6733 section 4.4 writes "AVP-Header:" in its ABNF and "AVP Header:"
    // in every definition; 3GPP writes "AVP header:". All accepted.
    bool avp_header = false;
    if (kind.kind == Token::Kind::kWord && eq(kind.text, "AVP-Header")) {
      avp_header = true;
    } else if (kind.kind == Token::Kind::kWord && eq(kind.text, "AVP")) {
      const Token& h = next();
      if (!(h.kind == Token::Kind::kWord && eq(h.text, "Header")))
        return error(h, "expected 'AVP Header:', found " + describe(h));
      avp_header = true;
    }
    if (!avp_header)
      return error(kind, "expected 'Diameter Header:' or 'AVP Header:' after '<', found " +
                             describe(kind) + " (header opened at " + std::to_string(h_open.line) +
                             ":" + std::to_string(h_open.col) + ")");
    DICT_TRY(expect_punct(":", "after 'AVP Header'"));
    PendingGrouped g;
    g.name = *nm;
    auto code = number(next(), "AVP code");
    if (!code) return code.error();
    g.code = *code;
    if (is_punct(peek(), ",")) next();  // 3GPP: "<AVP Header: 1400 10415>"; some write a comma
    if (!is_punct(peek(), ">")) {
      auto v = number(next(), "vendor id");
      if (!v) return v.error();
      g.has_vendor = true;
      g.vendor = *v;
    }
    DICT_TRY(expect_punct(">", "to close the AVP header"));
    DICT_TRY(rules(body));
    g.body = std::move(body);
    out_.grouped.push_back(std::move(g));
    return ok_status();
  }

  // True when the tokens at pos_ start a new definition "<" name ">" "::=".
  bool at_new_definition() const {
    return is_punct(peek(), "<") && peek(1).kind == Token::Kind::kWord && is_punct(peek(2), ">") &&
           peek(3).kind == Token::Kind::kDefine;
  }

  Status rules(PendingGrammar& body) {
    for (;;) {
      const Token& t = peek();
      bool starts_rule = is_punct(t, "*") || is_punct(t, "<") || is_punct(t, "{") ||
                         is_punct(t, "[") || (t.kind == Token::Kind::kWord && all_digits(t.text));
      if (!starts_rule || at_new_definition()) break;
      if (body.rules.size() >= kMaxRulesPerGrammar)
        return error(t, "too many rules in one definition");
      auto r = rule();
      if (!r) return r.error();
      body.rules.push_back(std::move(*r));
    }
    if (body.rules.empty()) return error(peek(), "definition has no AVP rules");
    return ok_status();
  }

  // [min] "*" [max] then < name >, { name } or [ name ].
  Result<RuleRef> rule() {
    RuleRef r;
    bool qualified = false;
    std::optional<uint32_t> min, max;
    const Token& first = peek();
    if (first.kind == Token::Kind::kWord) {
      auto n = number(next(), "qualifier minimum");
      if (!n) return n.error();
      min = *n;
      if (!is_punct(peek(), "*"))
        return error(peek(), "expected '*' after the qualifier minimum, found " + describe(peek()));
    }
    if (is_punct(peek(), "*")) {
      next();
      qualified = true;
      if (peek().kind == Token::Kind::kWord && all_digits(peek().text)) {
        auto n = number(next(), "qualifier maximum");
        if (!n) return n.error();
        max = *n;
      }
    }
    const Token& open = next();
    std::string_view close;
    if (is_punct(open, "<")) {
      r.rule.kind = GrammarRule::Kind::kFixed;
      close = ">";
    } else if (is_punct(open, "{")) {
      r.rule.kind = GrammarRule::Kind::kRequired;
      close = "}";
    } else if (is_punct(open, "[")) {
      r.rule.kind = GrammarRule::Kind::kOptional;
      close = "]";
    } else {
      return error(open, "expected '<', '{' or '[' to open an AVP rule, found " + describe(open));
    }
    const Token& nt = next();
    auto nm = name(nt, "an AVP name");
    if (!nm) return nm.error();
    r.name = *nm;
    r.line = nt.line;
    r.col = nt.col;
    const Token& ct = peek();
    if (!is_punct(ct, close))
      return error(ct, "expected '" + std::string(close) + "' to close '" + std::string(open.text) +
                           " " + r.name + "', found " + describe(ct));
    next();
    // Defaults (RFC 6733 3.2): min 0 for fixed/optional and 1 for required,
    // max infinite; no qualifier: exactly one (fixed/required), 0..1 (optional).
    auto& g = r.rule;
    bool required = g.kind == GrammarRule::Kind::kRequired;
    if (!qualified) {
      g.min = g.kind == GrammarRule::Kind::kOptional ? 0 : 1;
      g.max = 1;
    } else {
      g.min = min.value_or(required ? 1 : 0);
      g.max = max.value_or(kUnbounded);
    }
    if (g.min > g.max)
      return error(first, "qualifier minimum " + std::to_string(g.min) + " exceeds maximum " +
                              std::to_string(g.max));
    if (required && g.min == 0)
      return error(first, "a required rule needs a minimum of at least 1 ({ " + r.name + " })");
    if (g.kind == GrammarRule::Kind::kOptional && g.min != 0)
      return error(first, "an optional rule's minimum must be 0 ([ " + r.name + " ])");
    if (r.name == "AVP" && g.kind == GrammarRule::Kind::kFixed)
      return error(nt, "the wildcard 'AVP' cannot be a fixed rule");
    return r;
  }

  const DictionarySource& src_;
  Collected& out_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  uint32_t current_app_ = 0;
};

uint64_t avp_key(uint32_t code, uint32_t vendor) { return (uint64_t{vendor} << 32) | code; }
uint64_t command_key(uint32_t code, uint32_t app, bool request) {
  // Command codes are 24 bits: the request bit goes above them.
  return (uint64_t{app} << 32) | (uint64_t{request} << 24) | (code & 0xffffff);
}
uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return k;
}

std::string at(const std::string& file, int line, int col) {
  return file + ":" + std::to_string(line) + ":" + std::to_string(col);
}

}  // namespace

void DiameterDictionary::insert(std::vector<Slot>& table, uint64_t key, int32_t index) {
  size_t mask = table.size() - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    if (table[i].index < 0) {
      table[i] = {key, index};
      return;
    }
  }
}

int32_t DiameterDictionary::lookup(const std::vector<Slot>& table, uint64_t key) {
  if (table.empty()) return -1;
  size_t mask = table.size() - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    if (table[i].index < 0) return -1;
    if (table[i].key == key) return table[i].index;
  }
}

class DictionaryBuilder {
 public:
  static Result<DiameterDictionary> build(Collected&& c) {
    DiameterDictionary d;
    d.avps_ = std::move(c.avps);
    d.applications_ = std::move(c.applications);
    auto table_size = [](size_t n) {
      size_t s = 16;
      while (s < n * 2) s <<= 1;
      return s;
    };
    d.avp_table_.assign(table_size(d.avps_.size()), {});
    std::map<std::string, int> by_name;
    for (size_t i = 0; i < d.avps_.size(); ++i) {
      const AvpDef& a = d.avps_[i];
      int prev = DiameterDictionary::lookup(d.avp_table_, avp_key(a.code, a.vendor));
      if (prev >= 0)
        return Error(a.where + ": avp " + a.name + " redefines code " + std::to_string(a.code) +
                     " vendor " + std::to_string(a.vendor) + " (first defined at " +
                     d.avps_[static_cast<size_t>(prev)].where + ")");
      auto [it, inserted] = by_name.emplace(a.name, static_cast<int>(i));
      if (!inserted)
        return Error(a.where + ": avp name " + a.name + " already defined at " +
                     d.avps_[static_cast<size_t>(it->second)].where);
      DiameterDictionary::insert(d.avp_table_, avp_key(a.code, a.vendor), static_cast<int32_t>(i));
    }
    for (PendingEnum& e : c.enums) {
      auto it = by_name.find(e.avp);
      if (it == by_name.end())
        return Error(at(e.file, e.line, e.col) + ": enum for unknown AVP " + e.avp);
      AvpDef& a = d.avps_[static_cast<size_t>(it->second)];
      if (a.type != AvpType::kEnumerated && a.type != AvpType::kUnsigned32 &&
          a.type != AvpType::kInteger32)
        return Error(at(e.file, e.line, e.col) + ": enum for " + e.avp + ", which is " +
                     std::string(avp_type_name(a.type)) +
                     " (only Enumerated, Unsigned32 and Integer32 take names)");
      a.values.emplace_back(e.value, std::move(e.value_name));
    }
    for (AvpDef& a : d.avps_) {
      std::sort(a.values.begin(), a.values.end());
      for (size_t i = 1; i < a.values.size(); ++i)
        if (a.values[i].first == a.values[i - 1].first)
          return Error(a.where + ": enum value " + std::to_string(a.values[i].first) + " of " +
                       a.name + " named twice (" + a.values[i - 1].second + ", " +
                       a.values[i].second + ")");
    }

    auto link = [&](const PendingGrammar& p, std::string_view owner) -> Result<int> {
      Grammar g;
      g.rule_of_avp.assign(d.avps_.size(), -1);
      for (const RuleRef& r : p.rules) {
        int idx = -1;
        if (r.name == "AVP") {
          if (g.wildcard_rule >= 0)
            return Error(at(p.file, r.line, r.col) + ": 'AVP' listed twice in " +
                         std::string(owner));
          g.wildcard_rule = static_cast<int>(g.rules.size());
        } else {
          auto it = by_name.find(r.name);
          if (it == by_name.end())
            return Error(at(p.file, r.line, r.col) + ": unknown AVP " + r.name + " in " +
                         std::string(owner) + " (no 'avp' line defines it)");
          idx = it->second;
          if (g.rule_of_avp[static_cast<size_t>(idx)] >= 0)
            return Error(at(p.file, r.line, r.col) + ": " + r.name + " listed twice in " +
                         std::string(owner));
          g.rule_of_avp[static_cast<size_t>(idx)] = static_cast<int16_t>(g.rules.size());
        }
        GrammarRule gr = r.rule;
        gr.avp = idx;
        g.rules.push_back(gr);
      }
      d.grammars_.push_back(std::move(g));
      return static_cast<int>(d.grammars_.size() - 1);
    };

    for (const PendingGrouped& p : c.grouped) {
      auto it = by_name.find(p.name);
      if (it == by_name.end())
        return Error(at(p.body.file, p.body.line, p.body.col) + ": grouped AVP " + p.name +
                     " has no 'avp' line");
      AvpDef& a = d.avps_[static_cast<size_t>(it->second)];
      if (a.type != AvpType::kGrouped)
        return Error(at(p.body.file, p.body.line, p.body.col) + ": " + p.name + " is " +
                     std::string(avp_type_name(a.type)) + ", not Grouped");
      if (a.code != p.code || (p.has_vendor && a.vendor != p.vendor))
        return Error(at(p.body.file, p.body.line, p.body.col) + ": AVP header of " + p.name +
                     " says code " + std::to_string(p.code) +
                     (p.has_vendor ? " vendor " + std::to_string(p.vendor) : "") +
                     " but its 'avp' line (" + a.where + ") says code " + std::to_string(a.code) +
                     " vendor " + std::to_string(a.vendor));
      if (a.grammar >= 0)
        return Error(at(p.body.file, p.body.line, p.body.col) + ": grouped AVP " + p.name +
                     " defined twice");
      auto g = link(p.body, p.name);
      if (!g) return g.error();
      a.grammar = *g;  // link() appends to grammars_ only: `a` is still valid
    }

    d.command_table_.assign(table_size(c.commands.size()), {});
    for (PendingCommand& p : c.commands) {
      uint64_t key = command_key(p.def.code, p.def.application, p.def.request);
      int prev = DiameterDictionary::lookup(d.command_table_, key);
      if (prev >= 0 && p.def.name != "answer-message")
        return Error(p.def.where + ": command " + p.def.name + " (" + std::to_string(p.def.code) +
                     (p.def.request ? ", REQ" : "") + ", application " +
                     std::to_string(p.def.application) + ") already defined at " +
                     d.commands_[static_cast<size_t>(prev)].where);
      auto g = link(p.body, p.def.name);
      if (!g) return g.error();
      p.def.grammar = *g;
      if (p.def.name == "answer-message") {
        if (d.error_answer_ >= 0) return Error(p.def.where + ": answer-message defined twice");
        d.commands_.push_back(std::move(p.def));
        d.error_answer_ = static_cast<int>(d.commands_.size() - 1);
        continue;
      }
      d.commands_.push_back(std::move(p.def));
      DiameterDictionary::insert(d.command_table_, key,
                                 static_cast<int32_t>(d.commands_.size() - 1));
    }
    return d;
  }
};

Result<DiameterDictionary> DiameterDictionary::parse(const std::vector<DictionarySource>& sources) {
  Collected c;
  for (const DictionarySource& s : sources) {
    FileParser p(s, c);
    Status st = p.run();
    if (!st.ok()) return st.error();
  }
  return DictionaryBuilder::build(std::move(c));
}

int DiameterDictionary::avp_index(uint32_t code, uint32_t vendor) const {
  return lookup(avp_table_, avp_key(code, vendor));
}

const AvpDef* DiameterDictionary::find_avp(uint32_t code, uint32_t vendor) const {
  int i = avp_index(code, vendor);
  return i < 0 ? nullptr : &avps_[static_cast<size_t>(i)];
}

const CommandDef* DiameterDictionary::find_command(uint32_t code, uint32_t application,
                                                   bool request) const {
  int i = lookup(command_table_, command_key(code, application, request));
  if (i < 0 && application != 0) i = lookup(command_table_, command_key(code, 0, request));
  return i < 0 ? nullptr : &commands_[static_cast<size_t>(i)];
}

std::string_view DiameterDictionary::application_name(uint32_t id) const {
  for (const ApplicationDef& a : applications_)
    if (a.id == id) return a.name;
  return {};
}

std::string_view DiameterDictionary::enum_name(const AvpDef& def, int64_t value) const {
  auto it = std::lower_bound(def.values.begin(), def.values.end(), value,
                             [](const auto& p, int64_t v) { return p.first < v; });
  if (it == def.values.end() || it->first != value) return {};
  return it->second;
}

Result<DiameterDictionary> load_default_dictionary() {
  return DiameterDictionary::parse(embedded_dictionary_sources());
}

Result<DiameterDictionary> load_dictionary(const std::filesystem::path& dir) {
  std::vector<DictionarySource> sources = embedded_dictionary_sources();
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (it->path().extension() == ".ccf") files.push_back(it->path());
  }
  if (ec) return Error::from_errno("reading dictionary directory " + dir.string(), ec.value());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return Error::from_errno("opening " + f.string());
    std::ostringstream text;
    text << in.rdbuf();
    DictionarySource src{f.filename().string(), text.str()};
    auto same = std::find_if(sources.begin(), sources.end(),
                             [&](const DictionarySource& s) { return s.name == src.name; });
    if (same != sources.end()) {
      same->text = std::move(src.text);
      same->name = f.string();
    } else {
      src.name = f.string();
      sources.push_back(std::move(src));
    }
  }
  return DiameterDictionary::parse(sources);
}

}  // namespace trawl::decode
