// Diameter dictionary: AVP definitions and Command Code Format grammars,
// parsed from text (RFC 6733 section 3.2 CCF, section 4.4 grouped-AVP
// grammar, and an AVP table format modelled on the RFC's AVP tables; the
// file format is described in docs/diameter.md).
//
// The grammar files ship inside the binary (src/decode/diameter/*.ccf,
// embedded at build time); load_dictionary(dir) loads them plus every *.ccf
// in dir, a file in dir replacing the embedded file of the same name.
// Parse errors name "file:line:column: why".
//
// A built DiameterDictionary is immutable: lookups are const, allocation-free
// (open-addressing tables keyed by (code, vendor) and (code, application,
// request)) and safe from any number of threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace trawl::decode {

enum class AvpType : uint8_t {
  kOctetString,
  kInteger32,
  kInteger64,
  kUnsigned32,
  kUnsigned64,
  kFloat32,
  kFloat64,
  kGrouped,
  kAddress,
  kTime,
  kUTF8String,
  kDiameterIdentity,
  kDiameterURI,
  kEnumerated,
  kIPFilterRule,
};
std::string_view avp_type_name(AvpType t);

// AVP flag bits as on the wire.
constexpr uint8_t kAvpFlagV = 0x80;
constexpr uint8_t kAvpFlagM = 0x40;
constexpr uint8_t kAvpFlagP = 0x20;

constexpr uint32_t kUnbounded = std::numeric_limits<uint32_t>::max();

// One element of a CCF body: "[qual] < name >", "[qual] { name }",
// "[qual] [ name ]". avp == -1 means the wildcard "AVP".
struct GrammarRule {
  enum class Kind : uint8_t { kFixed, kRequired, kOptional };
  Kind kind = Kind::kOptional;
  uint32_t min = 0;
  uint32_t max = kUnbounded;
  int avp = -1;
};

// A command or grouped-AVP body. rule_of_avp[i] is the rule index for
// dictionary AVP i, or -1 (then the wildcard rule, if any, applies).
struct Grammar {
  std::vector<GrammarRule> rules;
  std::vector<int16_t> rule_of_avp;
  int wildcard_rule = -1;
};

struct AvpDef {
  std::string name;
  uint32_t code = 0;
  uint32_t vendor = 0;
  AvpType type = AvpType::kOctetString;
  uint8_t must = 0, may = 0, must_not = 0;              // kAvpFlag* bits
  std::vector<std::pair<int64_t, std::string>> values;  // Enumerated names
  int grammar = -1;   // index into grammars() for Grouped AVPs with a grammar
  std::string where;  // "file:line" of the definition
};

struct CommandDef {
  std::string name;  // CCF name as written, e.g. "CER"
  uint32_t code = 0;
  uint32_t application = 0;
  bool request = false;
  bool proxiable = false;
  bool error = false;
  int grammar = -1;
  std::string where;
};

struct ApplicationDef {
  uint32_t id = 0;
  std::string name;
};

// One grammar file's text; name is used in error messages ("s6a.ccf").
struct DictionarySource {
  std::string name;
  std::string text;
};

class DiameterDictionary {
 public:
  // Parses and links the sources (names resolve across files).
  static Result<DiameterDictionary> parse(const std::vector<DictionarySource>& sources);

  const AvpDef* find_avp(uint32_t code, uint32_t vendor) const;
  int avp_index(uint32_t code, uint32_t vendor) const;  // -1 if unknown
  const AvpDef& avp(int index) const { return avps_[static_cast<size_t>(index)]; }
  size_t avp_count() const { return avps_.size(); }
  // Exact (code, application, R) first, then the base protocol's (app 0)
  // definition, which applications reuse (STR, ASR, RAR ...).
  const CommandDef* find_command(uint32_t code, uint32_t application, bool request) const;
  // RFC 6733 section 7.2 "answer-message": the grammar for answers with the
  // E bit, defined in base.ccf under that name; nullptr if absent.
  const CommandDef* error_answer() const {
    return error_answer_ < 0 ? nullptr : &commands_[static_cast<size_t>(error_answer_)];
  }
  const Grammar& grammar(int index) const { return grammars_[static_cast<size_t>(index)]; }
  std::string_view application_name(uint32_t id) const;                // "" if unknown
  std::string_view enum_name(const AvpDef& def, int64_t value) const;  // "" if none

  const std::vector<AvpDef>& avps() const { return avps_; }
  const std::vector<CommandDef>& commands() const { return commands_; }

 private:
  friend class DictionaryBuilder;
  std::vector<AvpDef> avps_;
  std::vector<CommandDef> commands_;
  std::vector<Grammar> grammars_;
  std::vector<ApplicationDef> applications_;
  int error_answer_ = -1;
  // Open addressing with linear probing, power-of-two sizes, at most half
  // full; a slot with index -1 is empty.
  struct Slot {
    uint64_t key = 0;
    int32_t index = -1;
  };
  std::vector<Slot> avp_table_;
  std::vector<Slot> command_table_;
  static void insert(std::vector<Slot>& table, uint64_t key, int32_t index);
  static int32_t lookup(const std::vector<Slot>& table, uint64_t key);
};

// The grammar files built into the binary.
const std::vector<DictionarySource>& embedded_dictionary_sources();
Result<DiameterDictionary> load_default_dictionary();
// Embedded files plus dir/*.ccf (same file name replaces the embedded one).
Result<DiameterDictionary> load_dictionary(const std::filesystem::path& dir);

}  // namespace trawl::decode
