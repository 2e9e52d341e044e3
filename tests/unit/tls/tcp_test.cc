// Address parsing, loopback listen/accept/connect, and the plain Connection.
#include <sys/socket.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tls_test_util.h"

namespace trawl::wire {
namespace {

using ::testing::HasSubstr;
using testing::Listener;

TEST(ParseHostPort, AcceptsTheDocumentedForms) {
  struct Case {
    const char* in;
    const char* host;
    uint16_t port;
  };
  const Case cases[] = {
      {"collector.example:4739", "collector.example", 4739},
      {"1.2.3.4:5", "1.2.3.4", 5},
      {"[::1]:5", "::1", 5},
      {"[fe80::1%eth0]:443", "fe80::1%eth0", 443},
      {":5", "", 5},
      {"localhost:0", "localhost", 0},
      {"h:65535", "h", 65535},
  };
  for (const auto& c : cases) {
    auto r = parse_host_port(c.in);
    ASSERT_TRUE(r.ok()) << c.in << ": " << r.error().message();
    EXPECT_EQ(r->host, c.host) << c.in;
    EXPECT_EQ(r->port, c.port) << c.in;
  }
}

TEST(ParseHostPort, RejectsMalformed) {
  for (const char* bad : {"", "host", "host:", "host:65536", "host:-1", "host:12x", "host: 1", "::1:5", "[::1]",
                          "[::1]5", "[::1:5", "[]:5", "1.2.3.4:99999999999"}) {
    auto r = parse_host_port(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' parsed as " << (r.ok() ? r->host : "");
  }
  EXPECT_THAT(parse_host_port("::1:5").error().message(), HasSubstr("brackets"));
  EXPECT_THAT(parse_host_port("host").error().message(), HasSubstr("missing port"));
}

TEST(ParseHostPort, FormatRoundTrips) {
  for (const char* s : {"a.b:1", "[::1]:5000", "10.0.0.1:4739", ":7"}) {
    auto r = parse_host_port(s);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(format_host_port(*r), s);
  }
}

TEST(Tcp, AnyAddressListenerAcceptsIpv4AndIpv6) {
  auto fd = tcp_listen({"", 0});
  ASSERT_TRUE(fd.ok()) << fd.error().message();
  auto port = bound_port(*fd);
  ASSERT_TRUE(port.ok());
  EXPECT_NE(*port, 0);
  for (const char* host : {"127.0.0.1", "::1"}) {
    auto c = tcp_connect({host, *port}, 1000);
    if (!c.ok() && std::string(host) == "::1") continue;  // no IPv6 loopback in this sandbox
    ASSERT_TRUE(c.ok()) << host << ": " << c.error().message();
    pollfd p{*fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 1000), 1);
    auto a = tcp_accept(*fd);
    ASSERT_TRUE(a.ok() && a->has_value());
    // IPv4 clients of a dual-stack socket show as plain IPv4, not ::ffff:.
    const bool v6 = std::string(host) == "::1";
    EXPECT_THAT((*a)->peer_address, ::testing::StartsWith(v6 ? "[::1]:" : "127.0.0.1:"));
    EXPECT_EQ(describe_peer(*c), (std::string(host) == "::1" ? "[::1]:" : "127.0.0.1:") + std::to_string(*port));
    ::close((*a)->fd);
    ::close(*c);
  }
  auto none = tcp_accept(*fd);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ::close(*fd);
}

TEST(Tcp, ConnectRefusedAndBadNamesAreErrors) {
  int port = 0;
  {
    Listener l;  // grab a free port, then close it
    port = l.port();
  }
  auto r = tcp_connect({"127.0.0.1", static_cast<uint16_t>(port)}, 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("Connection refused"));
  EXPECT_THAT(r.error().message(), HasSubstr("connecting to 127.0.0.1:"));

  auto bad = tcp_connect({"no-such-host.invalid", 1}, 1000);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.error().message(), HasSubstr("resolving no-such-host.invalid"));

  auto busy_l = Listener();
  auto busy = tcp_listen({"127.0.0.1", busy_l.port()});
  ASSERT_FALSE(busy.ok());
  EXPECT_THAT(busy.error().message(), HasSubstr("Address already in use"));
}

TEST(PlainConnection, RoundTripAndPeerClose) {
  Listener l;
  auto [cfd, s] = testing::tcp_pair(l);
  auto client = plain_connection(cfd, describe_peer(cfd));
  auto server = plain_connection(s.fd, s.peer_address);
  EXPECT_EQ(server->identity(), "");
  EXPECT_FALSE(server->has_buffered_read());

  std::vector<uint8_t> out(3 * 1024 * 1024);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> in;
  std::vector<uint8_t> buf(64 * 1024);
  size_t sent = 0;
  while (in.size() < out.size()) {
    if (sent < out.size()) {
      auto w = client->write(std::span<const uint8_t>(out).subspan(sent));
      ASSERT_TRUE(w.ok()) << w.error().message();
      sent += *w;
      if (*w == 0) {
        EXPECT_TRUE(client->want_write());
      }
    }
    auto r = server->read(buf);
    ASSERT_TRUE(r.ok()) << r.error().message();
    in.insert(in.end(), buf.begin(), buf.begin() + static_cast<long>(*r));
    if (*r == 0) {
      pollfd p[2] = {{server->fd(), POLLIN, 0}, {client->fd(), POLLOUT, 0}};
      ::poll(p, sent < out.size() ? 2 : 1, 100);
    }
  }
  EXPECT_TRUE(in == out);

  client->shutdown();
  Result<size_t> r = size_t{0};
  for (int i = 0; i < 50 && (r = server->read(buf)).ok(); ++i) {
    pollfd p{server->fd(), POLLIN, 0};
    ::poll(&p, 1, 20);
  }
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(is_peer_closed(r.error())) << r.error().message();

  // Writing to a closed peer: an error, never SIGPIPE (MSG_NOSIGNAL).
  client.reset();
  Result<size_t> w = size_t{0};
  for (int i = 0; i < 50 && (w = server->write(out)).ok(); ++i) {
    pollfd p{server->fd(), POLLOUT, 0};
    ::poll(&p, 1, 20);
  }
  EXPECT_FALSE(w.ok());
}

TEST(AgentName, Validation) {
  for (const char* good : {"a", "edge-1", "A.b_c-9", "0", "x123456789012345678901234567890123456789012345678901234567890ab"})
    EXPECT_TRUE(is_valid_agent_name(good)) << good;
  for (const char* bad : {"", "-a", ".a", "_a", "a/b", "..", "a b", "a:b", "é", "a\n",
                          "x123456789012345678901234567890123456789012345678901234567890abc"})
    EXPECT_FALSE(is_valid_agent_name(bad)) << bad;
}

}  // namespace
}  // namespace trawl::wire
