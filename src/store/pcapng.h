// pcapng block encoding and decoding (draft-ietf-opsawg-pcapng), no I/O.
//
// Encoders append one block to a caller-owned std::vector<uint8_t>; once the
// vector has grown they do not allocate (the EPB encoder is on the per-packet
// hot path). Everything is written little-endian.
//
// PcapngReader walks the blocks of a byte span (or a read-only mapped file)
// and never throws or reads out of bounds: next() returns kBlock, kEnd (clean
// end of input exactly at a block boundary) or kCorrupt (with the offset and a
// reason). Known block types are validated (bodies, options, interface ids)
// and exposed as typed views that point into the input. valid_end() is the
// offset just past the last complete valid block (crash recovery truncates
// there). Big-endian sections are reported as corrupt ("unsupported").
//
// trawl's own records (BATCH MARK, GAP, SEAL; see docs/storage.md) are
// carried as custom options (PEN kTrawlPen) in an otherwise empty Name
// Resolution Block: tshark 4.0 shows Custom Blocks as extra frames and
// capinfos loses its time statistics when a file has any, whereas an NRB is
// invisible to both. decode_trawl_record() also accepts a Custom Block with
// our PEN, so either carrier can be read.
//
// Types here are plain values; not thread-safe; nothing blocks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/packet.h"
#include "core/result.h"

namespace trawl::store::pcapng {

// Block types.
constexpr uint32_t kShbType = 0x0A0D0D0A;
constexpr uint32_t kIdbType = 0x00000001;
constexpr uint32_t kSpbType = 0x00000003;
constexpr uint32_t kNrbType = 0x00000004;
constexpr uint32_t kIsbType = 0x00000005;
constexpr uint32_t kEpbType = 0x00000006;
constexpr uint32_t kCustomCopyType = 0x00000BAD;
constexpr uint32_t kCustomNoCopyType = 0x40000BAD;

constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
constexpr uint32_t kByteOrderMagicSwapped = 0x4D3C2B1A;

// Option codes.
constexpr uint16_t kOptEndOfOpt = 0;
constexpr uint16_t kOptComment = 1;
constexpr uint16_t kOptCustomStrCopy = 2988;
constexpr uint16_t kOptCustomBinCopy = 2989;
constexpr uint16_t kOptCustomStrNoCopy = 19372;
constexpr uint16_t kOptCustomBinNoCopy = 19373;
constexpr uint16_t kShbHardware = 2;
constexpr uint16_t kShbOs = 3;
constexpr uint16_t kShbUserAppl = 4;
constexpr uint16_t kIfName = 2;
constexpr uint16_t kIfDescription = 3;
constexpr uint16_t kIfTsresol = 9;
constexpr uint16_t kIsbStartTime = 2;
constexpr uint16_t kIsbEndTime = 3;
constexpr uint16_t kIsbIfRecv = 4;
constexpr uint16_t kIsbIfDrop = 5;
constexpr uint16_t kIsbFilterAccept = 6;
constexpr uint16_t kIsbOsDrop = 7;
constexpr uint16_t kIsbUsrDeliv = 8;

// RFC 5612 documentation PEN: a placeholder until trawl has its own.
constexpr uint32_t kTrawlPen = 32473;
constexpr uint8_t kTrawlRecordVersion = 1;
constexpr uint32_t kAllInterfaces = 0xFFFFFFFF;  // GapRecord::interface_id

// Largest block the reader accepts (a 256 KiB frame plus generous options).
constexpr uint32_t kMaxBlockBytes = 16u << 20;

// ---------------------------------------------------------------- encoding

struct ShbInfo {
  std::string_view hardware;  // shb_hardware (omitted when empty)
  std::string_view os;        // shb_os
  std::string_view userappl;  // shb_userappl
  std::string_view comment;   // opt_comment
};
void encode_shb(std::vector<uint8_t>& out, const ShbInfo& info);

// IDB with if_name and if_tsresol = 9 (timestamps in nanoseconds).
void encode_idb(std::vector<uint8_t>& out, const InterfaceInfo& iface);

// EPB with a nanosecond timestamp. extra_options: already-encoded options
// (e.g. from encode_option), appended before opt_endofopt.
void encode_epb(std::vector<uint8_t>& out, uint32_t interface_id, const PacketView& p,
                std::span<const uint8_t> extra_options = {});

// ISB: isb_endtime = block timestamp = s.ts_ns, isb_ifrecv = received,
// isb_ifdrop = if_drops, isb_osdrop = kernel_drops, isb_usrdeliv = received
// minus kernel and agent drops (omitted if that would be negative),
// isb_starttime when start_ns != 0, opt_comment when comment is non-empty.
void encode_isb(std::vector<uint8_t>& out, uint32_t interface_id, const InterfaceStats& s,
                uint64_t start_ns = 0, std::string_view comment = {});

// One option (code, length, value, padding); no end-of-options marker.
void encode_option(std::vector<uint8_t>& out, uint16_t code, std::span<const uint8_t> value);

// trawl records.
struct BatchMark {
  uint64_t spool_id = 0;
  uint64_t seq = 0;
  bool operator==(const BatchMark&) const = default;
};
struct GapRecord {
  uint32_t interface_id = kAllInterfaces;  // IDB index in this section
  GapReason reason = GapReason::kUnknown;
  uint64_t from_ns = 0;
  uint64_t to_ns = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  bool operator==(const GapRecord&) const = default;
};
struct SealRecord {
  uint64_t spool_id = 0;
  uint64_t last_seq = 0;
  uint64_t packets = 0;
  uint64_t first_ts_ns = 0;  // earliest packet timestamp in the segment (0: none)
  uint64_t last_ts_ns = 0;   // latest packet timestamp in the segment (0: none)
  bool operator==(const SealRecord&) const = default;
};
using TrawlRecord = std::variant<BatchMark, GapRecord, SealRecord>;

enum class TrawlRecordType : uint8_t { kBatchMark = 1, kGap = 2, kSeal = 3 };

// Appends an NRB carrying the record (and an opt_comment when non-empty).
void encode_trawl_record(std::vector<uint8_t>& out, const TrawlRecord& rec,
                         std::string_view comment = {});

// ---------------------------------------------------------------- decoding

// Iterates options; stops at opt_endofopt or the end of the span. ok() turns
// false on an option that overruns the span.
struct OptionView {
  uint16_t code = 0;
  std::span<const uint8_t> value;
};
class OptionReader {
 public:
  explicit OptionReader(std::span<const uint8_t> options) : data_(options) {}
  bool next(OptionView& opt);
  bool ok() const { return ok_; }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool ok_ = true;
  bool done_ = false;
};

// Checks that a whole options area is well formed.
bool options_valid(std::span<const uint8_t> options);
// First option with this code, as a string / u64 / u8.
std::optional<std::string_view> find_string_option(std::span<const uint8_t> options, uint16_t code);
std::optional<uint64_t> find_u64_option(std::span<const uint8_t> options, uint16_t code);

struct ShbView {
  uint16_t major = 0;
  uint16_t minor = 0;
  int64_t section_length = -1;
  std::span<const uint8_t> options;
};
struct IdbView {
  uint16_t link_type = 0;
  uint32_t snaplen = 0;
  std::span<const uint8_t> options;
  std::string_view name() const;
  uint8_t tsresol() const;  // 6 (microseconds) when absent
};
struct EpbView {
  uint32_t interface_id = 0;
  uint64_t timestamp = 0;  // in the interface's units; PcapngReader::ts_ns converts
  uint32_t caplen = 0;
  uint32_t orig_len = 0;
  std::span<const uint8_t> data;
  std::span<const uint8_t> options;
};
struct IsbView {
  uint32_t interface_id = 0;
  uint64_t timestamp = 0;
  std::span<const uint8_t> options;
};
struct NrbView {
  std::span<const uint8_t> records;
  std::span<const uint8_t> options;
};
struct CustomBlockView {
  bool copyable = false;
  uint32_t pen = 0;
  std::span<const uint8_t> data;  // includes any options (PEN-specific)
};
using BlockView =
    std::variant<std::monostate, ShbView, IdbView, EpbView, IsbView, NrbView, CustomBlockView>;

struct Block {
  uint32_t type = 0;
  uint64_t offset = 0;         // of the block's first byte in the input
  uint32_t total_length = 0;   // including header and trailer
  std::span<const uint8_t> body;  // between the length fields
  BlockView view;              // monostate for other block types
};

// Decodes one block that starts at bytes[0] without section context (no
// interface-id checks). nullopt with *why set when malformed or truncated.
std::optional<Block> decode_block(std::span<const uint8_t> bytes, uint64_t offset,
                                  std::string* why = nullptr);

// The trawl record carried by a block (NRB custom option or Custom Block
// with kTrawlPen), if any.
std::optional<TrawlRecord> decode_trawl_record(const Block& block);

// Read-only mapping of a whole file (empty files map to an empty span).
class MappedFile {
 public:
  static Result<MappedFile> open(const std::filesystem::path& path);
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  // Hint: pages will be touched sparsely (no read-ahead / fault-around).
  void advise_random() const;

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Converts a timestamp in units of 10^-r or 2^-r (r = tsresol) to ns.
uint64_t ts_to_ns(uint64_t ts, uint8_t tsresol);

class PcapngReader {
 public:
  enum class Next { kBlock, kEnd, kCorrupt };
  struct Interface {
    uint16_t link_type = 0;
    uint32_t snaplen = 0;
    std::string_view name;
    uint8_t tsresol = 6;
  };

  // The span must outlive the reader.
  explicit PcapngReader(std::span<const uint8_t> data) : data_(data) {}
  // Resumes inside a section whose SHB/IDBs came earlier (one zstd frame of a
  // segment decoded alone): EPBs/ISBs may refer to these interfaces, and IDBs
  // in the data are appended after them. Names must outlive the reader.
  PcapngReader(std::span<const uint8_t> data, std::vector<Interface> section_interfaces)
      : data_(data), in_section_(true), interfaces_(std::move(section_interfaces)) {}
  // Maps the file; the reader owns the mapping.
  static Result<PcapngReader> open_file(const std::filesystem::path& path);

  Next next();
  // Valid after kBlock, until the next call.
  const Block& block() const { return block_; }
  // After kCorrupt (and stays so): where and why.
  uint64_t corrupt_offset() const { return corrupt_offset_; }
  const std::string& corrupt_reason() const { return corrupt_reason_; }
  // Offset just past the last complete, valid block.
  uint64_t valid_end() const { return valid_end_; }
  // Interfaces of the current section, indexed by interface id.
  const std::vector<Interface>& interfaces() const { return interfaces_; }
  uint64_t ts_ns(const EpbView& epb) const;
  uint64_t input_size() const { return data_.size(); }

 private:
  Next corrupt(uint64_t offset, std::string why);

  MappedFile file_;
  std::span<const uint8_t> data_;
  uint64_t pos_ = 0;
  uint64_t valid_end_ = 0;
  bool in_section_ = false;
  bool failed_ = false;
  Block block_;
  std::vector<Interface> interfaces_;
  uint64_t corrupt_offset_ = 0;
  std::string corrupt_reason_;
};

}  // namespace trawl::store::pcapng
