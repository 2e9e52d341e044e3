// JSON lines / ES bulk output: see record_writer.h.
#include "decode/record_writer.h"

#include <cerrno>
#include <charconv>

namespace trawl::decode {

namespace {

// nlohmann's dump() escapes strings byte by byte through a UTF-8 state
// machine and returns a fresh string; records are mostly short printable
// ASCII, so append those directly into the reused line buffer and hand
// anything else (non-ASCII or escapes, floats, binary) to nlohmann, which
// keeps the output byte-identical to record.dump(-1, ' ', false, replace).
void append_string(std::string& out, const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      out += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return;
    }
  }
  out += '"';
  out += s;
  out += '"';
}

template <typename T>
void append_integer(std::string& out, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_json(std::string& out, const nlohmann::json& j) {
  using V = nlohmann::json::value_t;
  switch (j.type()) {
    case V::null:
      out += "null";
      return;
    case V::boolean:
      out += j.get_ref<const bool&>() ? "true" : "false";
      return;
    case V::number_integer:
      append_integer(out, j.get_ref<const nlohmann::json::number_integer_t&>());
      return;
    case V::number_unsigned:
      append_integer(out, j.get_ref<const nlohmann::json::number_unsigned_t&>());
      return;
    case V::string:
      append_string(out, j.get_ref<const std::string&>());
      return;
    case V::array: {
      out += '[';
      bool first = true;
      for (const auto& e : j.get_ref<const nlohmann::json::array_t&>()) {
        if (!first) out += ',';
        first = false;
        append_json(out, e);
      }
      out += ']';
      return;
    }
    case V::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : j.get_ref<const nlohmann::json::object_t&>()) {
        if (!first) out += ',';
        first = false;
        append_string(out, k);
        out += ':';
        append_json(out, v);
      }
      out += '}';
      return;
    }
    default:  // float, binary, discarded
      out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return;
  }
}

}  // namespace

std::string record_to_json(const nlohmann::json& record) {
  std::string s;
  append_json(s, record);
  return s;
}

void RecordWriter::write(const nlohmann::json& record) {
  line_.clear();
  if (format_ == Format::kEsBulk) {
    line_ += R"({"index":{"_index":"trawl-)";
    line_ += record.value("kind", std::string("record"));
    line_ += "\"}}\n";
  }
  // Replace invalid UTF-8 (names from the wire) instead of throwing.
  append_json(line_, record);
  line_ += '\n';
  if (std::fwrite(line_.data(), 1, line_.size(), out_) != line_.size()) failed_ = true;
  ++records_;
}

Status RecordWriter::flush() {
  if (std::fflush(out_) != 0 || failed_) return Error::from_errno("writing records");
  return ok_status();
}

}  // namespace trawl::decode
