// Streaming reader for capture files: classic pcap (micro/nanosecond, either
// byte order) and pcapng (any number of interfaces with different link
// types and timestamp resolutions), plain, gzip or zstd compressed (detected
// from the first bytes, so stdin works too; concatenated gzip members and
// zstd frames are read as one stream).
//
// libpcap is not used here: libpcap 1.10 refuses pcapng files whose
// interfaces have different link types, and we want per-interface link
// types (see formats/*many_interfaces* in the shared captures).
//
// next() returns kFrame (frame() valid until the next call), kEnd (clean end)
// or kCorrupt (error() says where and why). Frames point into one reused
// buffer: no per-packet allocation. Not thread-safe; reads block.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"

namespace trawl::decode {

// A decompressed byte stream.
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Reads up to n bytes; 0 at end. Errors come back as Error.
  virtual Result<size_t> read(uint8_t* buf, size_t n) = 0;
};

// Opens path ("-" = stdin), sniffs gzip/zstd magic and returns a stream of
// the decompressed bytes.
Result<std::unique_ptr<ByteStream>> open_byte_stream(const std::string& path);
// Wraps an in-memory buffer (tests, live channel).
std::unique_ptr<ByteStream> memory_byte_stream(std::vector<uint8_t> bytes);

struct Frame {
  uint32_t link_type = 0;
  uint64_t ts_ns = 0;
  uint32_t orig_len = 0;
  std::span<const uint8_t> data;
};

class CaptureReader {
 public:
  enum class Next { kFrame, kEnd, kCorrupt };

  explicit CaptureReader(std::unique_ptr<ByteStream> in, std::string name = "input");
  static Result<std::unique_ptr<CaptureReader>> open(const std::string& path);

  Next next();
  const Frame& frame() const { return frame_; }
  const std::string& error() const { return error_; }
  uint64_t frames_read() const { return frames_; }

 private:
  bool fill(size_t n);  // ensures n bytes at buf_[pos_..]
  Next corrupt(std::string why);
  Next next_pcap();
  Next next_pcapng();
  bool read_header();

  struct Iface {
    uint32_t link_type = 0;
    uint64_t units_per_sec = 1000000;
  };

  std::unique_ptr<ByteStream> in_;
  std::string name_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;   // start of unread bytes
  size_t end_ = 0;   // end of valid bytes
  bool eof_ = false;
  bool started_ = false;
  enum class Format { kUnknown, kPcap, kPcapng } format_ = Format::kUnknown;
  bool swapped_ = false;     // file byte order differs from little-endian reading
  bool nano_ = false;        // classic pcap nanosecond magic
  uint32_t pcap_link_ = 0;
  std::vector<Iface> ifaces_;
  Frame frame_;
  std::string error_;
  uint64_t frames_ = 0;
  uint64_t offset_ = 0;  // file offset of buf_[pos_]
};

}  // namespace trawl::decode
