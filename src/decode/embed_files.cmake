# cmake -DOUT=<file.cc> -DFUNC=<function> -DFILES="a|b" -P embed_files.cmake
# Writes a .cc defining `const std::vector<DictionarySource>& FUNC()` with the
# bytes of each file (hex, so no quoting issue can arise), base.ccf first.
string(REPLACE "|" ";" FILES "${FILES}")
set(body "")
set(list "")
set(i 0)
list(SORT FILES)
set(ordered "")
foreach(f ${FILES})
  get_filename_component(n ${f} NAME)
  if(n STREQUAL "base.ccf")
    list(PREPEND ordered ${f})
  else()
    list(APPEND ordered ${f})
  endif()
endforeach()
foreach(f ${ordered})
  get_filename_component(n ${f} NAME)
  file(READ ${f} hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "const unsigned char k${i}[] = {${bytes}0};\n")
  string(APPEND list "      {\"${n}\", std::string(reinterpret_cast<const char*>(k${i}), ${len})},\n")
  math(EXPR i "${i} + 1")
endforeach()
file(WRITE ${OUT}.tmp
"// Generated from src/decode/diameter/*.ccf by embed_files.cmake; do not edit.
#include \"decode/diameter_dictionary.h\"

namespace trawl::decode {
namespace {
${body}}  // namespace

const std::vector<DictionarySource>& ${FUNC}() {
  static const std::vector<DictionarySource> sources = {
${list}  };
  return sources;
}

}  // namespace trawl::decode
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
