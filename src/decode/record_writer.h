// Writes analysis records: JSON lines, or Elasticsearch bulk format (an
// action line {"index":{"_index":"trawl-<kind>"}} before each document).
// Buffered; flush() at the end. Not thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

#include "core/result.h"

namespace trawl::decode {

// One record as compact JSON, byte-identical to
// record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
// (invalid UTF-8 replaced, never throws), with a fast path for plain ASCII.
std::string record_to_json(const nlohmann::json& record);

class RecordWriter {
 public:
  enum class Format { kJsonLines, kEsBulk };
  // out is not closed by the writer.
  RecordWriter(FILE* out, Format f) : out_(out), format_(f) {}
  void write(const nlohmann::json& record);
  Status flush();
  uint64_t records() const { return records_; }

 private:
  FILE* out_;
  Format format_;
  std::string line_;
  uint64_t records_ = 0;
  bool failed_ = false;
};

}  // namespace trawl::decode
