// Real TLS 1.3 over real loopback TCP: handshakes, refusals, data transfer,
// timeouts and garbage from the peer.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tls_test_util.h"

namespace trawl::wire {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::handshake;
using testing::Listener;
using testing::read_until_error;
using testing::TempDir;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    home_ = new TempDir();
    foreign_ = new TempDir();
    ASSERT_TRUE(pki::init(home_->path()).ok());
    ASSERT_TRUE(pki::issue(home_->path(), "edge-1").ok());
    ASSERT_TRUE(pki::issue(home_->path(), "edge-2").ok());
    ASSERT_TRUE(pki::init(foreign_->path()).ok());
    ASSERT_TRUE(pki::issue(foreign_->path(), "edge-1").ok());
  }
  static void TearDownTestSuite() {
    delete home_;
    delete foreign_;
  }

  static std::shared_ptr<TlsContext> server_ctx(const TlsFiles& f) {
    auto c = tls_server_context(f);
    EXPECT_TRUE(c.ok()) << c.error().message();
    return c.ok() ? *c : nullptr;
  }
  static std::shared_ptr<TlsContext> client_ctx(const TlsFiles& f) {
    auto c = tls_client_context(f);
    EXPECT_TRUE(c.ok()) << c.error().message();
    return c.ok() ? *c : nullptr;
  }
  static std::shared_ptr<TlsContext> collector() { return server_ctx(pki::collector_files(home_->path())); }
  static std::shared_ptr<TlsContext> agent(const std::string& name) {
    return client_ctx(pki::agent_files(home_->path(), name));
  }

  static TempDir* home_;
  static TempDir* foreign_;
  Listener listener_;
};
TempDir* TlsTest::home_ = nullptr;
TempDir* TlsTest::foreign_ = nullptr;

TEST_F(TlsTest, HandshakeYieldsAgentIdentity) {
  auto h = handshake(listener_, collector(), agent("edge-1"));
  ASSERT_TRUE(h.server->ok()) << h.server->error().message();
  ASSERT_TRUE(h.client->ok()) << h.client->error().message();
  auto& s = **h.server;
  auto& c = **h.client;
  EXPECT_EQ(s->identity(), "edge-1");
  EXPECT_EQ(c->identity(), "localhost");  // the collector's first DNS name
  EXPECT_THAT(s->peer_address(), ::testing::StartsWith("127.0.0.1:"));
  EXPECT_EQ(c->peer_address(), "127.0.0.1:" + std::to_string(listener_.port()));

  auto h2 = handshake(listener_, collector(), agent("edge-2"));
  ASSERT_TRUE(h2.server->ok()) << h2.server->error().message();
  EXPECT_EQ((**h2.server)->identity(), "edge-2");
}

// Both directions at once, one thread, nonblocking poll loop, as the agent
// and collector loops will run.
TEST_F(TlsTest, RoundTripSeveralMegabytesBothWays) {
  auto h = handshake(listener_, collector(), agent("edge-1"));
  ASSERT_TRUE(h.server->ok() && h.client->ok());
  Connection* conns[2] = {(*h.server)->get(), (*h.client)->get()};

  constexpr size_t kBytes = 6 * 1024 * 1024 + 12345;
  std::vector<uint8_t> out[2];
  std::mt19937 rng(7);
  for (auto& o : out) {
    o.resize(kBytes);
    for (auto& b : o) b = static_cast<uint8_t>(rng());
  }
  std::vector<uint8_t> in[2];
  size_t sent[2] = {0, 0};
  std::vector<uint8_t> buf(200 * 1024);

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(8);
  while ((sent[0] < kBytes || sent[1] < kBytes || in[0].size() < kBytes || in[1].size() < kBytes) &&
         std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 2; ++i) {
      Connection& c = *conns[i];
      while (sent[i] < kBytes) {
        // Retry rule: after a short write the next one starts at the first
        // unaccepted byte with at least as many bytes, which this satisfies.
        size_t n = std::min<size_t>(kBytes - sent[i], 256 * 1024);
        auto r = c.write(std::span<const uint8_t>(out[i]).subspan(sent[i], n));
        ASSERT_TRUE(r.ok()) << r.error().message();
        if (*r == 0) break;
        sent[i] += *r;
      }
      for (;;) {
        auto r = c.read(buf);
        ASSERT_TRUE(r.ok()) << r.error().message();
        if (*r == 0) break;
        in[i].insert(in[i].end(), buf.begin(), buf.begin() + static_cast<long>(*r));
      }
    }
    bool buffered = conns[0]->has_buffered_read() || conns[1]->has_buffered_read();
    pollfd p[2];
    for (int i = 0; i < 2; ++i) {
      p[i] = {conns[i]->fd(), POLLIN, 0};
      if (conns[i]->want_write() || sent[i] < kBytes) p[i].events |= POLLOUT;
    }
    ::poll(p, 2, buffered ? 0 : 100);
  }
  ASSERT_EQ(in[0].size(), kBytes);
  ASSERT_EQ(in[1].size(), kBytes);
  EXPECT_TRUE(in[0] == out[1]) << "server received corrupted data";
  EXPECT_TRUE(in[1] == out[0]) << "client received corrupted data";
}

TEST_F(TlsTest, AgentFromForeignCaIsRefused) {
  // The foreign agent does not trust our collector either, and says so first.
  auto h = handshake(listener_, collector(), client_ctx(pki::agent_files(foreign_->path(), "edge-1")));
  ASSERT_FALSE(h.client->ok());
  EXPECT_THAT(h.client->error().message(),
              HasSubstr("certificate verify failed: unable to get local issuer certificate"));
  ASSERT_FALSE(h.server->ok());
  EXPECT_THAT(h.server->error().message(), HasSubstr("peer sent alert: tlsv1 alert unknown ca"));
}

TEST_F(TlsTest, AgentWithForeignCaButOurTrustIsRefusedAndTold) {
  // Agent trusts our CA (so its own handshake completes) but holds a foreign cert.
  TlsFiles f = pki::agent_files(foreign_->path(), "edge-1");
  f.ca = home_->path() / "ca.crt";
  auto h = handshake(listener_, collector(), client_ctx(f));
  ASSERT_FALSE(h.server->ok());
  EXPECT_THAT(h.server->error().message(),
              HasSubstr("certificate verify failed: unable to get local issuer certificate"));
  // TLS 1.3: the client learns it was refused on its first read.
  ASSERT_TRUE(h.client->ok());
  EXPECT_EQ(read_until_error(***h.client), "read: peer sent alert: tlsv1 alert unknown ca");
}

TEST_F(TlsTest, AgentCertPresentedAsServerIsRefusedByClient) {
  auto fake_collector = server_ctx(pki::agent_files(home_->path(), "edge-2"));
  auto h = handshake(listener_, fake_collector, agent("edge-1"));
  ASSERT_FALSE(h.client->ok());
  EXPECT_THAT(h.client->error().message(),
              HasSubstr("certificate verify failed: unsuitable certificate purpose"));
  EXPECT_FALSE(h.server->ok());
}

TEST_F(TlsTest, CollectorCertPresentedAsClientIsRefused) {
  auto h = handshake(listener_, collector(), client_ctx(pki::collector_files(home_->path())));
  ASSERT_FALSE(h.server->ok());
  EXPECT_THAT(h.server->error().message(),
              HasSubstr("certificate verify failed: unsuitable certificate purpose"));
}

// A raw OpenSSL client on a blocking socket, configured by `setup`; returns
// the server's tls_accept result.
template <class Setup>
Result<std::unique_ptr<Connection>> accept_raw_client(Listener& l, std::shared_ptr<TlsContext> server,
                                                      Setup setup) {
  auto [cfd, s] = testing::tcp_pair(l);
  std::optional<Result<std::unique_ptr<Connection>>> res;
  std::thread t([&, sfd = s.fd, peer = s.peer_address] { res.emplace(tls_accept(server, sfd, peer, 3000)); });
  int flags = fcntl(cfd, F_GETFL);
  fcntl(cfd, F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{3, 0};
  setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  setup(ctx);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, cfd);
  if (SSL_connect(ssl) == 1) {
    char b[16];
    SSL_read(ssl, b, sizeof b);  // receives the alert
  }
  t.join();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(cfd);
  ERR_clear_error();
  return std::move(*res);
}

TEST_F(TlsTest, ClientWithoutCertificateIsRefused) {
  const std::string ca = (home_->path() / "ca.crt").string();
  auto r = accept_raw_client(listener_, collector(), [&](SSL_CTX* ctx) {
    SSL_CTX_load_verify_file(ctx, ca.c_str());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  });
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("no client certificate"));
}

TEST_F(TlsTest, Tls12ClientIsRefused) {
  const auto files = pki::agent_files(home_->path(), "edge-1");
  auto r = accept_raw_client(listener_, collector(), [&](SSL_CTX* ctx) {
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_use_certificate_file(ctx, files.cert.c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM);
  });
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("unsupported protocol"));
}

TEST_F(TlsTest, RandomBytesInsteadOfClientHelloFailFast) {
  auto server = collector();
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    auto [cfd, s] = testing::tcp_pair(listener_);
    std::vector<uint8_t> junk(1 + rng() % 4096);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    ASSERT_EQ(::send(cfd, junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
    ::shutdown(cfd, SHUT_WR);  // whatever OpenSSL waits for, EOF comes next
    auto t0 = std::chrono::steady_clock::now();
    auto r = tls_accept(server, s.fd, s.peer_address, 3000);
    auto took = std::chrono::steady_clock::now() - t0;
    ::close(cfd);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.error().message(), Not(HasSubstr("timed out")));
    EXPECT_LT(took, std::chrono::seconds(1));
  }
}

TEST_F(TlsTest, HttpRequestIsNamed) {
  auto [cfd, s] = testing::tcp_pair(listener_);
  const std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_GT(::send(cfd, get.data(), get.size(), MSG_NOSIGNAL), 0);
  auto r = tls_accept(collector(), s.fd, s.peer_address, 3000);
  ::close(cfd);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("http request"));
}

TEST_F(TlsTest, RandomBytesInsteadOfServerHelloFailFast) {
  auto client = agent("edge-1");
  std::mt19937 rng(43);
  for (int round = 0; round < 10; ++round) {
    auto [cfd, s] = testing::tcp_pair(listener_);
    std::vector<uint8_t> junk(1 + rng() % 4096);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    ASSERT_EQ(::send(s.fd, junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
    ::shutdown(s.fd, SHUT_WR);
    auto r = tls_connect(client, cfd, "server", 3000);
    ::close(s.fd);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.error().message(), Not(HasSubstr("timed out")));
  }
}

TEST_F(TlsTest, ServerHandshakeTimesOut) {
  auto [cfd, s] = testing::tcp_pair(listener_);  // client never speaks
  auto t0 = std::chrono::steady_clock::now();
  auto r = tls_accept(collector(), s.fd, s.peer_address, 200);
  auto took = std::chrono::steady_clock::now() - t0;
  ::close(cfd);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("handshake timed out"));
  EXPECT_GE(took, std::chrono::milliseconds(190));
  EXPECT_LT(took, std::chrono::milliseconds(1500));
}

TEST_F(TlsTest, ClientHandshakeTimesOut) {
  auto c = tcp_connect(listener_.where(), 2000);  // queued in the backlog, never accepted
  ASSERT_TRUE(c.ok());
  auto r = tls_connect(agent("edge-1"), *c, "silent", 200);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "TLS handshake with silent: handshake timed out");
}

TEST_F(TlsTest, PeerCloseIsReportedAsPeerClosed) {
  {
    auto h = handshake(listener_, collector(), agent("edge-1"));
    ASSERT_TRUE(h.server->ok() && h.client->ok());
    (**h.client)->shutdown();  // close_notify
    auto& s = **h.server;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    uint8_t b[64];
    Result<size_t> r = size_t{0};
    while ((r = s->read(b)).ok() && std::chrono::steady_clock::now() < deadline) {
      pollfd p{s->fd(), POLLIN, 0};
      ::poll(&p, 1, 50);
    }
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(is_peer_closed(r.error())) << r.error().message();
    EXPECT_FALSE(s->read(b).ok());  // and stays closed
    // close_notify ends one direction only: the server can still answer.
    const uint8_t ack[] = {'a', 'c', 'k'};
    auto w = s->write(ack);
    ASSERT_TRUE(w.ok()) << w.error().message();
    EXPECT_EQ(*w, 3u);
    auto& c = **h.client;
    size_t got = 0;
    for (int i = 0; i < 100 && got == 0; ++i) {
      auto rr = c->read(b);
      ASSERT_TRUE(rr.ok()) << rr.error().message();
      got = *rr;
      pollfd p{c->fd(), POLLIN, 0};
      if (got == 0) ::poll(&p, 1, 20);
    }
    EXPECT_EQ(got, 3u);
    s->shutdown();
    EXPECT_EQ(read_until_error(*c), kPeerClosed);
  }
  {
    auto h = handshake(listener_, collector(), agent("edge-1"));
    ASSERT_TRUE(h.server->ok() && h.client->ok());
    h.client->value().reset();  // abrupt close, no close_notify
    std::string err = read_until_error(***h.server);
    EXPECT_EQ(err, kPeerClosed);
  }
}

TEST_F(TlsTest, WritingToDeadPeerFailsWithoutSigpipe) {
  auto h = handshake(listener_, collector(), agent("edge-1"));
  ASSERT_TRUE(h.server->ok() && h.client->ok());
  auto& c = **h.client;
  h.server->value().reset();
  std::vector<uint8_t> data(64 * 1024, 0xab);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  Result<size_t> r = size_t{0};
  while ((r = c->write(data)).ok() && std::chrono::steady_clock::now() < deadline) {
    pollfd p{c->fd(), POLLOUT, 0};
    ::poll(&p, 1, 20);
  }
  ASSERT_FALSE(r.ok());  // and the process is still alive
}

TEST_F(TlsTest, StaleErrorQueueDoesNotLeakIntoConnection) {
  // Leave garbage on this thread's OpenSSL error queue.
  BIO* bio = BIO_new_mem_buf("not a certificate", -1);
  EXPECT_EQ(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr), nullptr);
  BIO_free(bio);
  ASSERT_NE(ERR_peek_error(), 0u);
  auto h = handshake(listener_, collector(), agent("edge-1"));
  ASSERT_TRUE(h.server->ok() && h.client->ok());
  const uint8_t msg[] = {1, 2, 3};
  ERR_raise(ERR_LIB_SSL, SSL_R_HTTP_REQUEST);
  auto w = (**h.client)->write(msg);
  ASSERT_TRUE(w.ok()) << w.error().message();
  EXPECT_EQ(*w, 3u);
  ERR_raise(ERR_LIB_SSL, SSL_R_HTTP_REQUEST);
  uint8_t got[3] = {};
  size_t n = 0;
  for (int i = 0; i < 100 && n == 0; ++i) {
    auto r = (**h.server)->read(got);
    ASSERT_TRUE(r.ok()) << r.error().message();
    n = *r;
    if (n == 0) {
      pollfd p{(**h.server)->fd(), POLLIN, 0};
      ::poll(&p, 1, 20);
    }
  }
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(got[2], 3);
}

TEST_F(TlsTest, RevokedAgentIsRefused) {
  TempDir dir;
  ASSERT_TRUE(pki::init(dir.path()).ok());
  ASSERT_TRUE(pki::issue(dir.path(), "gone").ok());
  ASSERT_TRUE(pki::issue(dir.path(), "kept").ok());
  // Keep a copy of the credentials the revoked agent still holds.
  TempDir stolen;
  auto gone = pki::agent_files(dir.path(), "gone");
  std::filesystem::copy_file(gone.cert, stolen.path() / "gone.crt");
  std::filesystem::copy_file(gone.key, stolen.path() / "gone.key");
  ASSERT_TRUE(pki::revoke(dir.path(), "gone").ok());

  auto files = pki::collector_files(dir.path());
  ASSERT_FALSE(files.crl.empty());
  auto server = server_ctx(files);
  auto h = handshake(listener_, server,
                     client_ctx({dir.path() / "ca.crt", stolen.path() / "gone.crt", stolen.path() / "gone.key"}));
  ASSERT_FALSE(h.server->ok());
  EXPECT_THAT(h.server->error().message(), HasSubstr("certificate verify failed: certificate revoked"));
  ASSERT_TRUE(h.client->ok());  // TLS 1.3: the agent hears it on its first read
  EXPECT_EQ(read_until_error(***h.client), "read: peer sent alert: sslv3 alert certificate revoked");

  auto ok = handshake(listener_, server, client_ctx(pki::agent_files(dir.path(), "kept")));
  ASSERT_TRUE(ok.server->ok()) << ok.server->error().message();
  EXPECT_EQ((**ok.server)->identity(), "kept");
}

// CA roll-over: a ca.crt holding the old and the new CA trusts both.
TEST_F(TlsTest, CaBundleTrustsEveryCaInIt) {
  TempDir dir;
  const auto bundle = dir.path() / "bundle.crt";
  {
    std::ofstream out(bundle);
    for (auto* d : {home_, foreign_}) out << std::ifstream(d->path() / "ca.crt").rdbuf();
  }
  TlsFiles server_files = pki::collector_files(home_->path());
  server_files.ca = bundle;
  auto server = server_ctx(server_files);
  for (auto* d : {home_, foreign_}) {
    TlsFiles f = pki::agent_files(d->path(), "edge-1");
    f.ca = bundle;
    auto h = handshake(listener_, server, client_ctx(f));
    ASSERT_TRUE(h.server->ok()) << h.server->error().message();
    EXPECT_EQ((**h.server)->identity(), "edge-1");
  }
}

TEST_F(TlsTest, ContextErrorsNameTheFile) {
  TlsFiles f = pki::collector_files(home_->path());
  f.key = home_->path() / "missing.key";
  auto r = tls_server_context(f);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("missing.key"));
  EXPECT_THAT(r.error().message(), HasSubstr("No such file"));

  f = pki::collector_files(home_->path());
  f.key = pki::agent_files(home_->path(), "edge-1").key;
  r = tls_server_context(f);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("key values mismatch"));
}

TEST_F(TlsTest, WrongContextRoleIsAnError) {
  auto [cfd, s] = testing::tcp_pair(listener_);
  auto r = tls_accept(agent("edge-1"), s.fd, s.peer_address, 100);
  ::close(cfd);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("server context"));
}

// Certificates made with the openssl CLI, as docs/pki.md describes, work;
// names that are not valid agent names are refused.
TEST_F(TlsTest, OpensslCliAgentCertificates) {
  if (std::system("openssl version >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl CLI not installed";
  TempDir dir;
  ASSERT_TRUE(pki::init(dir.path()).ok());
  auto make = [&](const std::string& file, const std::string& name) {
    const std::string d = dir.path().string();
    std::string cmd =
        "cd '" + d + "' && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + file +
        ".key 2>/dev/null && openssl req -new -key " + file + ".key -subj '/CN=" + name + "' -out " + file +
        ".csr && printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
        "extendedKeyUsage=clientAuth\\nsubjectAltName=DNS:" + name + "\\n' > " + file +
        ".ext && openssl x509 -req -in " + file + ".csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 730 -sha256"
        " -extfile " + file + ".ext -out " + file + ".crt 2>/dev/null";
    return std::system(cmd.c_str());
  };
  ASSERT_EQ(make("cli", "cli-agent"), 0);
  ASSERT_EQ(make("bad", "bad name"), 0);
  auto server = server_ctx(pki::collector_files(dir.path()));
  auto files = [&](const std::string& f) {
    return TlsFiles{dir.path() / "ca.crt", dir.path() / (f + ".crt"), dir.path() / (f + ".key")};
  };
  auto good = handshake(listener_, server, client_ctx(files("cli")));
  ASSERT_TRUE(good.server->ok()) << good.server->error().message();
  EXPECT_EQ((**good.server)->identity(), "cli-agent");
  auto bad = handshake(listener_, server, client_ctx(files("bad")));
  ASSERT_FALSE(bad.server->ok());
  EXPECT_THAT(bad.server->error().message(), HasSubstr("names no valid agent"));
}

}  // namespace
}  // namespace trawl::wire
