// Query engine: index -> candidate blocks -> decode -> BPF -> merge -> pcapng.
#include "query/query.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>

#include <fmt/format.h>

#include "query/bpf_predicate.h"
#include "query/catalog.h"
#include "store/pcapng.h"

#ifndef TRAWL_VERSION
#define TRAWL_VERSION "dev"
#endif

namespace trawl::query {
namespace fs = std::filesystem;
namespace png = store::pcapng;

namespace {

// libpcap's filter compiled once per link type.
class BpfCache {
 public:
  BpfCache(std::string filter, std::function<void(const std::string&)> notice)
      : filter_(std::move(filter)), notice_(std::move(notice)) {}
  ~BpfCache() {
    for (auto& [lt, p] : progs_)
      if (p) pcap_freecode(p.get());  // kRejectAll is not in the map
  }
  // nullptr: no filter (every packet matches).
  Result<const bpf_program*> get(uint16_t link_type) {
    if (filter_.empty()) return static_cast<const bpf_program*>(nullptr);
    auto it = progs_.find(link_type);
    if (it != progs_.end())
      return static_cast<const bpf_program*>(it->second ? it->second.get() : &kRejectAll);
    pcap_t* dead = pcap_open_dead_with_tstamp_precision(link_type, 262144, PCAP_TSTAMP_PRECISION_NANO);
    if (!dead) return Error("pcap_open_dead failed");
    auto prog = std::make_unique<bpf_program>();
    int rc = pcap_compile(dead, prog.get(), filter_.c_str(), 1, PCAP_NETMASK_UNKNOWN);
    std::string err = rc != 0 ? pcap_geterr(dead) : "";
    pcap_close(dead);
    if (rc != 0) {
      // Ethernet is checked up front; on other link types a filter that
      // does not apply (e.g. "vlan" on Linux cooked capture) matches none of
      // their packets, as it would select nothing there.
      if (link_type == store::kLinkEthernet)
        return Error(fmt::format("filter \"{}\": {}", filter_, err));
      if (notice_) notice_(fmt::format("filter does not apply to link type {} ({}); its packets are skipped",
                                       link_type, err));
      progs_.emplace(link_type, nullptr);
      return static_cast<const bpf_program*>(&kRejectAll);
    }
    auto* raw = prog.get();
    progs_.emplace(link_type, std::move(prog));
    return static_cast<const bpf_program*>(raw);
  }

 private:
  // "ret #0": rejects every packet.
  static inline bpf_insn kRejectInsn = BPF_STMT(BPF_RET | BPF_K, 0);
  static inline const bpf_program kRejectAll = {1, &kRejectInsn};
  std::string filter_;
  std::function<void(const std::string&)> notice_;
  std::map<uint16_t, std::unique_ptr<bpf_program>> progs_;
};

struct Iface {
  uint16_t link_type = 0;
  uint32_t snaplen = 0;
  std::string name;
};

// A candidate block (or an open segment's tail) waiting to be opened.
struct Candidate {
  uint64_t first_ts = 0;
  uint64_t order = 0;          // (agent, segment, block) position
  size_t segment = 0;
  size_t block = SIZE_MAX;     // SIZE_MAX: the tail
  size_t iface_base = 0;       // interfaces known before the block (index into seg ifaces)
};

struct Packet {
  uint64_t ts = 0;
  uint32_t out_iface = 0;
  uint32_t orig_len = 0;
  std::span<const uint8_t> data;
  std::span<const uint8_t> options;  // source EPB options (comments)
};

// An opened block: its decoded bytes and its matching packets, time-sorted.
struct Stream {
  uint64_t order = 0;
  std::vector<uint8_t> raw;
  std::vector<Packet> packets;
  size_t next = 0;
};

struct SegmentState {
  LoadedSegment seg;
  size_t agent = 0;
  std::vector<Iface> ifaces;  // all of the segment's, in order; block b uses a prefix
  std::vector<uint8_t> tail_raw;                 // open segment: decoded tail
};

class Engine {
 public:
  Engine(const QueryOptions& o, const QueryCallbacks& cb)
      : o_(o), cb_(cb), pred_(BpfPredicate::parse(o.filter)), bpf_(o.filter, cb.on_notice) {}

  Result<QueryStats> run() {
    if (o_.filter.size() > 0) {
      // Validate the filter up front on Ethernet, so a typo fails fast.
      auto p = bpf_.get(store::kLinkEthernet);
      if (!p.ok()) return std::move(p).error();
    }
    TRAWL_TRY(load(), "query");
    TRAWL_TRY(write_shb(), "writing output");
    TRAWL_TRY(merge(), "query");
    TRAWL_TRY(flush_out(), "writing output");
    return stats_;
  }

 private:
  Status load() {
    std::vector<std::string> agents = o_.agents;
    if (agents.empty()) agents = list_agents(o_.data_dir);
    if (agents.empty() && !fs::is_directory(o_.data_dir))
      return Error("data directory " + o_.data_dir.string() + " not found");
    agent_names_ = agents;
    for (size_t a = 0; a < agents.size(); ++a) {
      if (!fs::is_directory(o_.data_dir / agents[a]))
        return Error(fmt::format("no agent \"{}\" in {}", agents[a], o_.data_dir.string()));
      auto list = list_segments(o_.data_dir, agents[a]);
      if (!list.ok()) return std::move(list).error();
      for (const auto& e : *list) {
        auto loaded = load_segment(e, o_.write_back_index, cb_.on_notice);
        if (!loaded.ok()) {
          if (cb_.on_error) cb_.on_error(fmt::format("{}: {}", e.path.filename().string(), loaded.error().message()));
          continue;
        }
        if (loaded->index_rebuilt) ++stats_.indexes_rebuilt;
        add_segment(a, std::move(*loaded));
      }
    }
    std::sort(cands_.begin(), cands_.end(), [](const Candidate& x, const Candidate& y) {
      return x.first_ts != y.first_ts ? x.first_ts < y.first_ts : x.order < y.order;
    });
    return ok_status();
  }

  void add_segment(size_t agent, LoadedSegment seg) {
    const size_t si = segs_.size();
    auto st = std::make_unique<SegmentState>();
    st->agent = agent;
    st->seg = std::move(seg);
    ++stats_.segments;
    auto& ifaces = st->ifaces;
    const auto& idx = st->seg.index;
    for (size_t b = 0; b < idx.blocks.size(); ++b) {
      const auto& blk = idx.blocks[b];
      const size_t base = ifaces.size();  // interfaces known before this block
      for (const auto& i : blk.new_interfaces) ifaces.push_back({i.link_type, i.snaplen, i.name});
      const uint64_t order = next_order_++;
      if (blk.flags & store::IndexBlock::kDamaged) {
        report_damage(*st, blk.file_offset, "undecodable");
        continue;
      }
      if (blk.packets == 0 || blk.last_ts < o_.from_ns || blk.first_ts > o_.to_ns) continue;
      ++stats_.blocks;
      if (!pred_.block_may_match(blk)) continue;
      cands_.push_back({blk.first_ts, order, si, b, base});
    }
    if (st->seg.tail_offset < st->seg.bytes().size()) {
      if (st->seg.entry.sealed) {
        report_damage(*st, st->seg.tail_offset, "not decodable to the end of the segment");
      } else {
        st->tail_raw = store::decode_tail(st->seg.bytes(), st->seg.entry.compressed, st->seg.tail_offset);
        if (!st->tail_raw.empty()) {
          // first_ts unknown without decoding: open it first (it is small).
          cands_.push_back({0, next_order_++, si, SIZE_MAX, ifaces.size()});
        }
      }
    }
    segs_.push_back(std::move(st));
  }

  void report_damage(const SegmentState& st, uint64_t offset, const std::string& why) {
    ++stats_.damaged_blocks;
    if (cb_.on_error)
      cb_.on_error(fmt::format("{}: damaged block at offset {}: {}; skipped",
                               st.seg.entry.path.filename().string(), offset, why));
  }

  // Decodes a candidate, keeps packets in the window that pass the filter.
  Result<std::optional<Stream>> open(const Candidate& c) {
    auto& st = *segs_[c.segment];
    Stream s;
    s.order = c.order;
    std::span<const uint8_t> raw;
    bool tail = c.block == SIZE_MAX;
    if (tail) {
      s.raw = std::move(st.tail_raw);
    } else {
      const auto& blk = st.seg.index.blocks[c.block];
      auto bytes = store::decode_block_bytes(st.seg.bytes(), st.seg.entry.compressed, blk);
      if (!bytes.ok()) {
        ++stats_.damaged_blocks;
        if (cb_.on_error)
          cb_.on_error(fmt::format("{}: {}; skipped", st.seg.entry.path.filename().string(),
                                   bytes.error().message()));
        return std::optional<Stream>{};
      }
      s.raw = std::move(*bytes);
    }
    ++stats_.candidate_blocks;
    stats_.raw_bytes_decoded += s.raw.size();
    raw = s.raw;

    std::vector<png::PcapngReader::Interface> start;
    for (size_t i = 0; i < c.iface_base; ++i)
      start.push_back({st.ifaces[i].link_type, st.ifaces[i].snaplen, st.ifaces[i].name, 9});
    png::PcapngReader r(raw, std::move(start));
    std::vector<Packet> pending;  // tail: only up to the last complete batch
    for (bool more = true; more;) {
      switch (r.next()) {
        case png::PcapngReader::Next::kEnd:
          more = false;
          continue;
        case png::PcapngReader::Next::kCorrupt:
          more = false;
          if (!tail) report_damage(st, st.seg.index.blocks[c.block].file_offset,
                                   "pcapng: " + r.corrupt_reason());
          continue;
        case png::PcapngReader::Next::kBlock:
          break;
      }
      const auto& b = r.block();
      const auto* epb = std::get_if<png::EpbView>(&b.view);
      if (!epb) {
        if (tail && b.type == png::kNrbType) {
          if (auto rec = png::decode_trawl_record(b); rec && std::holds_alternative<png::BatchMark>(*rec)) {
            s.packets.insert(s.packets.end(), pending.begin(), pending.end());
            pending.clear();
          }
        }
        continue;
      }
      ++stats_.packets_scanned;
      const uint64_t ts = r.ts_ns(*epb);
      if (ts < o_.from_ns || ts > o_.to_ns) continue;
      const auto& in = r.interfaces()[epb->interface_id];
      auto prog = bpf_.get(in.link_type);
      if (!prog.ok()) return std::move(prog).error();
      if (*prog) {
        pcap_pkthdr h{};
        h.caplen = static_cast<bpf_u_int32>(epb->data.size());
        h.len = epb->orig_len;
        if (pcap_offline_filter(*prog, &h, epb->data.data()) == 0) continue;
      }
      Packet p{ts, out_iface(st.agent, in), epb->orig_len, epb->data, epb->options};
      (tail ? pending : s.packets).push_back(p);
    }
    if (s.packets.empty()) return std::optional<Stream>{};
    std::stable_sort(s.packets.begin(), s.packets.end(),
                     [](const Packet& a, const Packet& b) { return a.ts < b.ts; });
    return std::optional<Stream>(std::move(s));
  }

  Status merge() {
    auto later = [](const Stream* a, const Stream* b) {
      const auto& pa = a->packets[a->next];
      const auto& pb = b->packets[b->next];
      return pa.ts != pb.ts ? pa.ts > pb.ts : a->order > b->order;
    };
    std::priority_queue<Stream*, std::vector<Stream*>, decltype(later)> heap(later);
    std::vector<std::unique_ptr<Stream>> open_streams;
    size_t ci = 0;
    uint64_t since_progress = 0;
    for (;;) {
      if (cb_.cancel && cb_.cancel->load()) return Error("cancelled");
      const bool have_cand = ci < cands_.size();
      if (heap.empty() && !have_cand) break;
      if (have_cand && (heap.empty() || cands_[ci].first_ts <= heap.top()->packets[heap.top()->next].ts)) {
        auto s = open(cands_[ci++]);
        if (!s.ok()) return std::move(s).error();
        if (*s) {
          open_streams.push_back(std::make_unique<Stream>(std::move(**s)));
          heap.push(open_streams.back().get());
        }
        if (++since_progress >= 8 && cb_.on_progress) {
          since_progress = 0;
          cb_.on_progress(stats_);
        }
        continue;
      }
      Stream* s = heap.top();
      heap.pop();
      TRAWL_TRY(emit(s->packets[s->next]), "writing output");
      if (++s->next < s->packets.size()) {
        heap.push(s);
      } else {
        // Finished: free its memory.
        s->raw.clear();
        s->raw.shrink_to_fit();
        s->packets.clear();
        s->packets.shrink_to_fit();
      }
    }
    if (cb_.on_progress) cb_.on_progress(stats_);
    return ok_status();
  }

  // ------------------------------------------------------------ output

  uint32_t out_iface(size_t agent, const png::PcapngReader::Interface& in) {
    std::string name = fmt::format("{}/{}", agent_names_[agent], in.name);
    auto key = std::make_tuple(name, in.link_type, in.snaplen);
    auto it = out_ifaces_.find(key);
    if (it != out_ifaces_.end()) return it->second;
    auto id = static_cast<uint32_t>(out_ifaces_.size());
    out_ifaces_.emplace(key, id);
    png::encode_idb(out_, InterfaceInfo{name, in.link_type, in.snaplen});
    return id;
  }

  Status write_shb() {
    std::vector<uint8_t> shb;
    std::string comment = fmt::format("trawl query: agents={} filter=\"{}\"",
                                      fmt::join(agent_names_, ","), o_.filter);
    png::encode_shb(shb, {.hardware = {}, .os = {}, .userappl = "trawl query " TRAWL_VERSION,
                          .comment = comment});
    out_.insert(out_.begin(), shb.begin(), shb.end());  // before IDBs encoded so far
    return ok_status();
  }

  Status emit(const Packet& p) {
    comments_.clear();
    png::OptionReader opts(p.options);
    png::OptionView o;
    while (opts.next(o))
      if (o.code == png::kOptComment) png::encode_option(comments_, png::kOptComment, o.value);
    PacketView v{0, p.ts, p.orig_len, p.data};
    png::encode_epb(out_, p.out_iface, v, comments_);
    ++stats_.packets_out;
    if (out_.size() >= (256u << 10)) return flush_out();
    return ok_status();
  }

  Status flush_out() {
    if (out_.empty()) return ok_status();
    stats_.bytes_out += out_.size();
    Status st = cb_.write ? cb_.write(out_) : ok_status();
    out_.clear();
    return st;
  }

  const QueryOptions& o_;
  const QueryCallbacks& cb_;
  BpfPredicate pred_;
  BpfCache bpf_;
  QueryStats stats_;
  std::vector<std::string> agent_names_;
  std::vector<std::unique_ptr<SegmentState>> segs_;
  std::vector<Candidate> cands_;
  uint64_t next_order_ = 0;
  std::map<std::tuple<std::string, uint16_t, uint32_t>, uint32_t> out_ifaces_;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> comments_;
};

}  // namespace

Result<QueryStats> run_query(const QueryOptions& opts, const QueryCallbacks& cb) {
  Engine e(opts, cb);
  return e.run();
}

}  // namespace trawl::query
