// Live capture with libpcap; see pcap_source.h.
#include "capture/pcap_source.h"

#include <poll.h>
#include <pcap/pcap.h>

#include <fmt/format.h>

namespace trawl::capture {
namespace {

struct DispatchCtx {
  PacketSink* sink;
  uint16_t iface;
  size_t delivered;
};

void on_pcap_packet(u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
  auto* ctx = reinterpret_cast<DispatchCtx*>(user);
  // Nanosecond precision was requested, so tv_usec carries nanoseconds.
  uint64_t ts = static_cast<uint64_t>(h->ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(h->ts.tv_usec);
  ctx->sink->on_packet(ctx->iface, ts, h->len, {bytes, h->caplen});
  ++ctx->delivered;
}

Error pcap_error(pcap* p, std::string_view what, int rc) {
  std::string detail = rc == PCAP_ERROR ? pcap_geterr(p) : pcap_statustostr(rc);
  return Error(fmt::format("{}: {}", what, detail));
}

// Adds the unsigned 32-bit delta since the last reading (wraps are normal:
// libpcap's counters are u_int).
void accumulate(uint32_t now, uint32_t& last, uint64_t& total) {
  total += static_cast<uint32_t>(now - last);
  last = now;
}

}  // namespace

std::string combine_filters(const std::string& user, const std::string& exclude) {
  if (exclude.empty()) return user;
  if (user.empty()) return "not (" + exclude + ")";
  return "(" + user + ") and not (" + exclude + ")";
}

Result<std::unique_ptr<PcapSource>> PcapSource::open(const CaptureOptions& opts) {
  if (opts.interfaces.empty()) return Error("no capture interface given (-i IFACE)");
  if (opts.snaplen == 0 || opts.snaplen > kMaxSnaplen) {
    return Error(fmt::format("snaplen {} out of range 1..{}", opts.snaplen, kMaxSnaplen));
  }
  std::unique_ptr<PcapSource> src(new PcapSource());
  std::string filter = combine_filters(opts.filter, opts.exclude_filter);
  for (const auto& name : opts.interfaces) {
    char errbuf[PCAP_ERRBUF_SIZE] = {};
    pcap* p = pcap_create(name.c_str(), errbuf);
    if (!p) return Error(fmt::format("capture on {}: {}", name, errbuf));
    Handle h;
    h.p = p;
    src->handles_.push_back(h);  // owned from here on, closed by the destructor
    std::string ctx = fmt::format("capture on {}", name);
    pcap_set_snaplen(p, static_cast<int>(opts.snaplen));
    pcap_set_promisc(p, opts.promiscuous ? 1 : 0);
    pcap_set_timeout(p, opts.block_timeout_ms);
    pcap_set_immediate_mode(p, 0);
    pcap_set_buffer_size(p, static_cast<int>(std::min<uint64_t>(opts.ring_bytes, 1u << 30)));
    if (int rc = pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO); rc != 0) {
      return pcap_error(p, ctx + ": nanosecond timestamps", rc);
    }
    int rc = pcap_activate(p);
    if (rc < 0) return pcap_error(p, ctx, rc);
    if (rc > 0 && rc != PCAP_WARNING_PROMISC_NOTSUP) return pcap_error(p, ctx, rc);
    if (!opts.filter.empty()) {
      // The user's text must stand alone as a filter: text that only
      // compiles once wrapped (unbalanced parentheses) is refused.
      bpf_program user_prog{};
      if (pcap_compile(p, &user_prog, opts.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
        return Error(fmt::format("{}: bad filter '{}': {}", ctx, opts.filter, pcap_geterr(p)));
      }
      pcap_freecode(&user_prog);
    }
    if (!filter.empty()) {
      bpf_program prog{};
      if (pcap_compile(p, &prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
        return Error(fmt::format("{}: filter '{}': {}", ctx, filter, pcap_geterr(p)));
      }
      int set = pcap_setfilter(p, &prog);
      pcap_freecode(&prog);
      if (set != 0) return Error(fmt::format("{}: setting filter: {}", ctx, pcap_geterr(p)));
    }
    if (pcap_setnonblock(p, 1, errbuf) != 0) return Error(fmt::format("{}: nonblocking: {}", ctx, errbuf));
    int fd = pcap_get_selectable_fd(p);
    if (fd < 0) return Error(ctx + ": no selectable descriptor");
    src->handles_.back().fd = fd;
    InterfaceInfo info;
    info.name = name;
    info.link_type = static_cast<uint16_t>(pcap_datalink(p));
    info.snaplen = static_cast<uint32_t>(pcap_snapshot(p));
    src->ifaces_.push_back(std::move(info));
  }
  return src;
}

PcapSource::~PcapSource() {
  for (auto& h : handles_) {
    if (h.p) pcap_close(h.p);
  }
}

Result<size_t> PcapSource::poll(int timeout_ms, size_t max_packets, PacketSink& sink) {
  pollfd fds[64];
  size_t n = std::min<size_t>(handles_.size(), 64);
  for (size_t i = 0; i < n; ++i) fds[i] = {handles_[i].fd, POLLIN, 0};
  int rc = ::poll(fds, n, timeout_ms);
  if (rc < 0) {
    if (errno == EINTR) return size_t{0};
    return Error::from_errno("poll on capture handles");
  }
  // Dispatch every handle even without POLLIN: with TPACKET_V3 a frame can
  // sit in the current block until it is retired, and pcap_dispatch in
  // nonblocking mode returns at once when there is nothing.
  size_t total = 0;
  for (size_t i = 0; i < n && total < max_packets; ++i) {
    if (fds[i].revents & (POLLERR | POLLNVAL)) {
      return Error(fmt::format("capture on {}: interface went away", ifaces_[i].name));
    }
    DispatchCtx ctx{&sink, static_cast<uint16_t>(i), 0};
    int cnt = static_cast<int>(std::min<size_t>(max_packets - total, 1 << 20));
    int got = pcap_dispatch(handles_[i].p, cnt, on_pcap_packet, reinterpret_cast<u_char*>(&ctx));
    if (got < 0) {
      return Error(fmt::format("capture on {}: {}", ifaces_[i].name, pcap_geterr(handles_[i].p)));
    }
    total += ctx.delivered;
  }
  return total;
}

std::vector<InterfaceStats> PcapSource::stats() {
  std::vector<InterfaceStats> out;
  out.reserve(handles_.size());
  for (size_t i = 0; i < handles_.size(); ++i) {
    Handle& h = handles_[i];
    pcap_stat ps{};
    if (pcap_stats(h.p, &ps) == 0) {
      accumulate(ps.ps_recv, h.last_recv, h.recv);
      accumulate(ps.ps_drop, h.last_drop, h.drop);
      accumulate(ps.ps_ifdrop, h.last_ifdrop, h.ifdrop);
    }
    InterfaceStats s;
    s.iface = static_cast<uint16_t>(i);
    s.received = h.recv;
    s.kernel_drops = h.drop;
    s.if_drops = h.ifdrop;
    out.push_back(s);
  }
  return out;
}

}  // namespace trawl::capture
