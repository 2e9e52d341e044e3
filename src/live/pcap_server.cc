#include "live/pcap_server.h"

#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include "live/formats.h"
#include "store/pcapng.h"

namespace trawl::live {

Result<PcapListenerOptions> parse_pcap_listener(std::string_view spec) {
  PcapListenerOptions o;
  size_t comma = spec.find(',');
  o.listen = std::string(spec.substr(0, comma));
  if (auto hp = wire::parse_host_port(o.listen); !hp) return std::move(hp).error();
  std::string_view rest = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
  while (!rest.empty()) {
    size_t eq = rest.find('=');
    if (eq == std::string_view::npos) return Error(fmt::format("'{}': expected key=value", rest));
    std::string_view key = rest.substr(0, eq);
    if (key == "filter") {
      o.filter = std::string(rest.substr(eq + 1));
      break;
    }
    size_t end = rest.find(',');
    std::string_view value = rest.substr(eq + 1, end == std::string_view::npos ? std::string_view::npos : end - eq - 1);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (key == "agent") {
      o.agent = std::string(value);
    } else if (key == "format") {
      if (value == "pcap") o.pcapng = false;
      else if (value == "pcapng") o.pcapng = true;
      else return Error(fmt::format("format '{}': expected pcap or pcapng", value));
    } else if (key == "linktype") {
      unsigned v = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || p != value.data() + value.size() || v > 0xffff) {
        return Error(fmt::format("linktype '{}': expected a number (LINKTYPE_*)", value));
      }
      o.link_type = static_cast<uint16_t>(v);
    } else {
      return Error(fmt::format("unknown key '{}' (agent, format, linktype, filter)", key));
    }
  }
  return o;
}

PcapServer::PcapServer(PcapListenerOptions opts, size_t client_queue_bytes, size_t input_items, size_t input_bytes)
    : FanoutServer("pcap-over-ip", client_queue_bytes, input_items, input_bytes), opts_(std::move(opts)) {
  if (opts_.pcapng) {
    store::pcapng::encode_shb(opening_, {.hardware = {}, .os = {}, .userappl = "trawl collector (live)", .comment = {}});
  } else {
    auto h = pcap_file_header(kPcapMagicNsec, kMaxSnaplen, opts_.link_type);
    opening_.assign(h.begin(), h.end());
  }
}

PcapServer::~PcapServer() {
  stop();
  for (auto& [lt, p] : programs_) {
    if (p.first) pcap_freecode(&p.second);
  }
}

Status PcapServer::start() {
  if (!opts_.filter.empty() && !program_for(opts_.link_type)) {
    return Error(fmt::format("filter '{}' does not compile for link type {}", opts_.filter, opts_.link_type));
  }
  auto hp = wire::parse_host_port(opts_.listen);
  if (!hp) return std::move(hp).error();
  return FanoutServer::start(*hp);
}

const bpf_program* PcapServer::program_for(uint16_t link_type) {
  auto it = programs_.find(link_type);
  if (it == programs_.end()) {
    bpf_program prog{};
    bool ok = false;
    if (pcap_t* dead = pcap_open_dead(link_type, kMaxSnaplen)) {
      ok = pcap_compile(dead, &prog, opts_.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0;
      if (!ok) spdlog::warn("live pcap-over-ip: filter '{}' for link type {}: {}", opts_.filter, link_type, pcap_geterr(dead));
      pcap_close(dead);
    }
    it = programs_.emplace(link_type, std::make_pair(ok, prog)).first;
  }
  return it->second.first ? &it->second.second : nullptr;
}

std::unique_ptr<FanoutServer::Client> PcapServer::make_client() {
  auto c = std::make_unique<PcapClient>();
  c->out.append(opening_);
  return c;
}

void PcapServer::on_item(const LiveItem& item, const std::vector<Client*>& clients) {
  if (item.kind != LiveItem::Kind::kBatch || clients.empty()) return;
  if (!opts_.agent.empty() && item.agent != opts_.agent) return;
  const auto& ifaces = item.batch.interfaces();
  uint64_t skipped = 0;
  // Per client, added to its atomics once per batch (not a locked add per packet).
  sent_.assign(clients.size(), 0);
  dropped_.assign(clients.size(), 0);
  // A client whose queue cannot take even a small record (after one write
  // attempt) loses the whole batch: one check per batch, not a queue check
  // per packet (its drops are still counted per packet it would have got).
  full_.assign(clients.size(), 0);
  for (size_t ci = 0; ci < clients.size(); ++ci) full_[ci] = !fits(*clients[ci], 128);
  if (opts_.pcapng) {
    keys_.resize(ifaces.size());
    for (size_t i = 0; i < ifaces.size(); ++i) {
      keys_[i] = item.agent;
      keys_[i] += '\0';
      keys_[i] += ifaces[i].name;
      keys_[i] += '\0';
      keys_[i] += std::to_string(ifaces[i].link_type);
    }
  }
  item.batch.for_each(
      [&](const PacketView& p) {
        const auto& iface = ifaces[p.iface];
        if (!opts_.pcapng && iface.link_type != opts_.link_type) {
          ++skipped;
          return;
        }
        if (!opts_.filter.empty()) {
          const bpf_program* prog = program_for(iface.link_type);
          pcap_pkthdr h{};
          h.caplen = static_cast<uint32_t>(p.data.size());
          h.len = p.orig_len;
          if (!prog || pcap_offline_filter(prog, &h, p.data.data()) == 0) return;
        }
        size_t caplen = p.data.size();
        for (size_t ci = 0; ci < clients.size(); ++ci) {
          if (full_[ci]) {
            ++dropped_[ci];
            continue;
          }
          auto& pc = static_cast<PcapClient&>(*clients[ci]);
          if (!opts_.pcapng) {
            if (!fits(pc, kPcapRecordHeaderBytes + caplen)) {
              ++dropped_[ci];
              continue;
            }
            uint8_t* o = pc.out.reserve(kPcapRecordHeaderBytes + caplen);
            o = put_pcap_record_header(o, p.ts_ns, static_cast<uint32_t>(caplen), p.orig_len, true);
            std::memcpy(o, p.data.data(), caplen);
            pc.out.commit(kPcapRecordHeaderBytes + caplen);
            ++sent_[ci];
            continue;
          }
          const std::string& key = keys_[p.iface];
          auto it = pc.idbs.find(key);
          scratch_.clear();
          uint32_t id = 0;
          if (it == pc.idbs.end()) {
            id = static_cast<uint32_t>(pc.idbs.size());
            store::pcapng::encode_idb(scratch_, InterfaceInfo{item.agent + "/" + iface.name, iface.link_type, iface.snaplen});
          } else {
            id = it->second;
          }
          size_t epb = 32 + ((caplen + 3) & ~size_t{3});
          if (!fits(pc, scratch_.size() + epb)) {
            ++dropped_[ci];
            continue;
          }
          if (it == pc.idbs.end()) {
            pc.idbs.emplace(key, id);
            pc.out.append(scratch_);
          }
          scratch_.clear();
          store::pcapng::encode_epb(scratch_, id, p);
          pc.out.append(scratch_);
          ++sent_[ci];
        }
      },
      [](const InterfaceStats&) {}, [](const Gap&) {});
  for (size_t ci = 0; ci < clients.size(); ++ci) {
    if (sent_[ci]) clients[ci]->sent_packets.fetch_add(sent_[ci], std::memory_order_relaxed);
    if (dropped_[ci]) clients[ci]->dropped_packets.fetch_add(dropped_[ci], std::memory_order_relaxed);
  }
  if (skipped) count_skipped(skipped);
}

}  // namespace trawl::live
