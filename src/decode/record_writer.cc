// JSON lines / ES bulk output: see record_writer.h.
#include "decode/record_writer.h"

#include <cerrno>

namespace trawl::decode {

void RecordWriter::write(const nlohmann::json& record) {
  line_.clear();
  if (format_ == Format::kEsBulk) {
    line_ += R"({"index":{"_index":"trawl-)";
    line_ += record.value("kind", std::string("record"));
    line_ += "\"}}\n";
  }
  // Replace invalid UTF-8 (names from the wire) instead of throwing.
  line_ += record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line_ += '\n';
  if (std::fwrite(line_.data(), 1, line_.size(), out_) != line_.size()) failed_ = true;
  ++records_;
}

Status RecordWriter::flush() {
  if (std::fflush(out_) != 0 || failed_) return Error::from_errno("writing records");
  return ok_status();
}

}  // namespace trawl::decode
