// Fuzzes the Diameter dictionary (CCF grammar) parser: arbitrary text as one
// file next to the embedded ones, so names also resolve across files.
#include <cstddef>
#include <cstdint>
#include <string>

#include "decode/diameter_dictionary.h"

using namespace trawl::decode;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto alone = DiameterDictionary::parse({{"fuzz.ccf", text}});
  if (alone.ok()) (void)alone->find_command(257, 0, true);
  // Linking against the embedded files costs ~1000 lines per run: only for
  // inputs that define something.
  if (text.find("::=") == std::string::npos && text.find("avp") == std::string::npos) return 0;
  std::vector<DictionarySource> sources = embedded_dictionary_sources();
  sources.push_back({"fuzz.ccf", std::move(text)});
  auto d = DiameterDictionary::parse(sources);
  if (d.ok()) (void)d->find_avp(263, 0);
  return 0;
}
