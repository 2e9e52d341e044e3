// PcapServer: PCAP-over-IP. Every client that connects gets a capture file
// as a stream — classic pcap (nanosecond magic 0xa1b23c4d, one link type,
// packets of other link types are skipped and counted) or pcapng (one IDB
// per agent/interface as they appear, named "agent/iface") — so
// `tshark -i TCP@host:port` or `nc host port | wireshark -k -i -` show live
// traffic. The listener's configuration may restrict it to one agent and a
// BPF filter (compiled with libpcap, applied once per packet per listener).
// Clients send nothing; what they send is read and ignored.
//
// Threads and queues: see FanoutServer.
#pragma once

#include <pcap/pcap.h>

#include <map>
#include <string>

#include "live/fanout_server.h"

namespace trawl::live {

struct PcapListenerOptions {
  std::string listen;          // ADDR:PORT
  std::string agent;           // "" = every agent
  std::string filter;          // BPF expression; "" = every packet
  bool pcapng = false;
  uint16_t link_type = 1;      // classic pcap only (LINKTYPE_ETHERNET)
};

// "ADDR:PORT[,agent=NAME][,format=pcap|pcapng][,linktype=N][,filter=EXPR]".
// filter= takes the rest of the text, commas included, so it comes last.
Result<PcapListenerOptions> parse_pcap_listener(std::string_view spec);

class PcapServer final : public FanoutServer {
 public:
  PcapServer(PcapListenerOptions opts, size_t client_queue_bytes, size_t input_items, size_t input_bytes);
  ~PcapServer() override;
  // Compiles the filter (for the listener's link type) so a bad expression
  // fails at start-up, then listens.
  Status start();

 private:
  struct PcapClient : Client {
    std::map<std::string, uint32_t> idbs;  // "agent\0iface\0linktype" -> interface id
  };
  std::unique_ptr<Client> make_client() override;
  Status on_input(Client&, std::span<const uint8_t>) override { return ok_status(); }
  void on_item(const LiveItem& item, const std::vector<Client*>& clients) override;
  // The compiled filter for a link type (nullptr: does not compile for it).
  const bpf_program* program_for(uint16_t link_type);

  PcapListenerOptions opts_;
  std::map<uint16_t, std::pair<bool, bpf_program>> programs_;
  std::vector<uint8_t> opening_;
  std::vector<uint8_t> scratch_;
  std::vector<uint64_t> sent_, dropped_;  // per client, within one batch
  std::vector<uint8_t> full_;             // per client: dropping this whole batch
  std::vector<std::string> keys_;  // per interface of the current batch
};

}  // namespace trawl::live
