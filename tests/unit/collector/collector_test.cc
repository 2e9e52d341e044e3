// Collector dedupe across restarts: the collector remembers the last stored
// (spool_id, seq) per agent in its segments only, so after a clean stop or a
// kill -9 it must WELCOME the agent with that seq and acknowledge, without
// storing, any batch at or below it that is sent again (as an agent whose
// ACKs were lost, or a superseded connection, does). The e2e fault tests
// (tests/e2e/fault_*_test.sh) check the same through the real agent; here the
// client is a scripted agent over plain TCP, so duplicates are sent on purpose.
#include "collector/collector.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "../store/store_test_util.h"
#include "wire/frames.h"
#include "wire/tcp.h"

namespace trawl::collector {
namespace {

namespace fs = std::filesystem;
using store::testing::list_segments;
using store::testing::read_segment;
using store::testing::TempDir;

const std::vector<InterfaceInfo> kIfaces = {{"eth0", 1, 262144}};
constexpr uint64_t kSpool = 0x5eed;
constexpr int kTimeoutMs = 10000;

CollectorOptions options(const fs::path& data) {
  CollectorOptions o;
  o.listen = "127.0.0.1:0";
  o.data_dir = data;
  o.credentials.insecure = true;
  o.rotate_every_ns = 0;
  return o;
}

// A scripted agent: blocking helpers over a nonblocking plain connection.
class FakeAgent {
 public:
  explicit FakeAgent(uint16_t port) {
    auto fd = wire::tcp_connect({"127.0.0.1", port}, kTimeoutMs);
    EXPECT_TRUE(fd.ok()) << (fd.ok() ? "" : fd.error().message());
    if (fd.ok()) conn_ = wire::plain_connection(*fd, "collector");
  }

  // HELLO -> WELCOME; returns the WELCOME's durable_seq.
  uint64_t hello(uint64_t spool_id, uint64_t last_seq) {
    wire::Hello h;
    h.agent_name = "edge1";
    h.hostname = "edge1.example";
    h.software = "collector_test";
    h.spool_id = spool_id;
    h.last_seq = last_seq;
    std::vector<uint8_t> out;
    wire::encode(out, h);
    send(out);
    auto f = read_frame();
    EXPECT_EQ(f.first, wire::FrameType::kWelcome);
    auto w = wire::decode_welcome(f.second);
    EXPECT_TRUE(w.ok());
    return w.ok() ? w->durable_seq : ~0ull;
  }

  // One BATCH of two packets whose first payload byte is the seq.
  void batch(uint64_t spool_id, uint64_t seq) {
    wire::BatchBuilder b;
    b.reset(spool_id, kIfaces);
    std::vector<uint8_t> data(64, static_cast<uint8_t>(seq));
    b.add_packet(0, 1'000'000'000ull * seq, 64, data);
    b.add_packet(0, 1'000'000'000ull * seq + 1, 64, data);
    auto frame = b.finish(seq, 1'000'000'000ull * seq + 2);
    send({frame.begin(), frame.end()});
  }

  // Reads ACKs until one covers `seq`.
  void wait_ack(uint64_t seq) {
    for (;;) {
      auto f = read_frame();
      if (f.first == wire::FrameType::kPing) continue;
      ASSERT_EQ(f.first, wire::FrameType::kAck);
      auto a = wire::decode_ack(f.second);
      ASSERT_TRUE(a.ok());
      ASSERT_LE(a->seq, seq) << "ACK for a batch never sent";
      if (a->seq == seq) return;
    }
  }

  void close() {
    if (conn_) conn_->shutdown();
    conn_.reset();
  }

 private:
  void send(const std::vector<uint8_t>& bytes) {
    size_t pos = 0;
    while (pos < bytes.size()) {
      auto n = conn_->write({bytes.data() + pos, bytes.size() - pos});
      ASSERT_TRUE(n.ok()) << n.error().message();
      pos += *n;
      if (*n == 0) wait(POLLOUT);
    }
  }

  std::pair<wire::FrameType, std::vector<uint8_t>> read_frame() {
    for (;;) {
      auto f = in_.next();
      EXPECT_TRUE(f.ok());
      if (!f.ok()) return {wire::FrameType::kError, {}};
      if (f->has_value()) return {(*f)->type, {(*f)->body.begin(), (*f)->body.end()}};
      auto span = in_.writable(16 << 10);
      auto n = conn_->read(span);
      EXPECT_TRUE(n.ok()) << (n.ok() ? "" : n.error().message());
      if (!n.ok()) return {wire::FrameType::kError, {}};
      if (*n == 0) {
        if (!wait(POLLIN)) return {wire::FrameType::kError, {}};
        continue;
      }
      in_.commit(*n);
    }
  }

  bool wait(short events) {
    pollfd p{conn_->fd(), events, 0};
    int rc = ::poll(&p, 1, kTimeoutMs);
    EXPECT_EQ(rc, 1) << "collector did not answer within " << kTimeoutMs << " ms";
    return rc == 1;
  }

  std::unique_ptr<wire::Connection> conn_;
  wire::FrameDecoder in_;
};

// Every stored batch's seq, in storage order, over all sealed segments.
std::vector<uint64_t> stored_seqs(const fs::path& data) {
  std::vector<uint64_t> seqs;
  for (const auto& path : list_segments(data / "edge1", "edge1")) {
    auto seg = read_segment(path);
    EXPECT_TRUE(seg.clean_end) << path << ": " << seg.error;
    EXPECT_TRUE(seg.seal_is_last) << path;
    for (const auto& b : seg.batches) {
      EXPECT_EQ(b.spool_id, kSpool);
      EXPECT_EQ(b.packets.size(), 2u);
      if (!b.packets.empty()) {
        EXPECT_EQ(b.packets[0].data.at(0), static_cast<uint8_t>(b.seq));
      }
      seqs.push_back(b.seq);
    }
  }
  return seqs;
}

std::vector<uint64_t> iota(uint64_t from, uint64_t to) {
  std::vector<uint64_t> v;
  for (uint64_t s = from; s <= to; ++s) v.push_back(s);
  return v;
}

// A collector that stores batches 1..3 of kSpool, then stops cleanly.
void store_first_three(const fs::path& data) {
  Collector c(options(data));
  ASSERT_TRUE(c.start().ok());
  FakeAgent a(c.port());
  EXPECT_EQ(a.hello(kSpool, 0), 0u);
  for (uint64_t s = 1; s <= 3; ++s) a.batch(kSpool, s);
  a.wait_ack(3);
  a.close();
  c.stop();
  EXPECT_EQ(c.counters().batches_stored.load(), 3u);
}

TEST(CollectorDedupe, ResentBatchesAfterACleanRestartAreAckedNotStored) {
  TempDir tmp;
  store_first_three(tmp.path());
  Collector c(options(tmp.path()));
  ASSERT_TRUE(c.start().ok());
  FakeAgent a(c.port());
  EXPECT_EQ(a.hello(kSpool, 4), 3u);  // remembered from the sealed segment
  for (uint64_t s = 2; s <= 5; ++s) a.batch(kSpool, s);  // 2 and 3 again
  a.wait_ack(5);
  a.close();
  c.stop();
  EXPECT_EQ(c.counters().batches_duplicate.load(), 2u);
  EXPECT_EQ(c.counters().batches_stored.load(), 2u);
  EXPECT_EQ(stored_seqs(tmp.path()), iota(1, 5));
}

TEST(CollectorDedupe, ResentBatchesAfterKill9AreAckedNotStored) {
  TempDir tmp;
  // The first collector runs in a child process that is SIGKILLed after
  // acknowledging seq 1..6, leaving its segment as a .part file.
  int port_pipe[2];
  ASSERT_EQ(pipe(port_pipe), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Collector c(options(tmp.path()));
    uint16_t port = c.start().ok() ? c.port() : 0;
    (void)!write(port_pipe[1], &port, sizeof port);
    for (;;) pause();
  }
  close(port_pipe[1]);
  uint16_t port = 0;
  ASSERT_EQ(read(port_pipe[0], &port, sizeof port), static_cast<ssize_t>(sizeof port));
  close(port_pipe[0]);
  ASSERT_NE(port, 0);
  {
    FakeAgent a(port);
    EXPECT_EQ(a.hello(kSpool, 0), 0u);
    for (uint64_t s = 1; s <= 6; ++s) a.batch(kSpool, s);
    a.wait_ack(6);
    kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
  }
  bool part = false;
  for (const auto& e : fs::directory_iterator(tmp.path() / "edge1")) {
    part = part || e.path().extension() == ".part";
  }
  ASSERT_TRUE(part) << "the killed collector left no .part segment";

  Collector c(options(tmp.path()));
  ASSERT_TRUE(c.start().ok());
  {
    FakeAgent a(c.port());
    // Everything acknowledged before the kill was durable: recovered from the .part.
    EXPECT_EQ(a.hello(kSpool, 7), 6u);
    for (uint64_t s = 1; s <= 8; ++s) a.batch(kSpool, s);  // the whole spool again
    a.wait_ack(8);
    a.close();
  }
  {
    // A second connection in the same run: the dedupe state is the live writer's.
    FakeAgent a(c.port());
    EXPECT_EQ(a.hello(kSpool, 8), 8u);
    a.batch(kSpool, 8);
    a.batch(kSpool, 9);
    a.wait_ack(9);
    a.close();
  }
  c.stop();
  EXPECT_EQ(c.counters().batches_duplicate.load(), 7u);
  EXPECT_EQ(c.counters().batches_stored.load(), 3u);
  EXPECT_EQ(stored_seqs(tmp.path()), iota(1, 9));
}

TEST(CollectorDedupe, ANewSpoolIdStartsANewSequenceSpace) {
  TempDir tmp;
  store_first_three(tmp.path());
  Collector c(options(tmp.path()));
  ASSERT_TRUE(c.start().ok());
  FakeAgent a(c.port());
  // The agent's spool was wiped: a new id, seqs from 1 again, none dropped.
  EXPECT_EQ(a.hello(kSpool + 1, 0), 0u);
  a.batch(kSpool + 1, 1);
  a.batch(kSpool + 1, 2);
  a.wait_ack(2);
  a.close();
  c.stop();
  EXPECT_EQ(c.counters().batches_duplicate.load(), 0u);
  EXPECT_EQ(c.counters().batches_stored.load(), 2u);
}

}  // namespace
}  // namespace trawl::collector

namespace trawl::collector {
namespace {

TEST(TlsFailureReason, ClassifiesOpenSslMessages) {
  EXPECT_EQ(classify_tls_failure("TLS handshake with 10.0.0.1:5: peer sent alert: tlsv1 alert unknown ca"),
            TlsFailure::kUntrustedCertificate);
  EXPECT_EQ(classify_tls_failure("TLS handshake with x: certificate verify failed: unable to get local issuer certificate"),
            TlsFailure::kUntrustedCertificate);
  EXPECT_EQ(classify_tls_failure("TLS handshake with x: peer did not return a certificate"), TlsFailure::kNoCertificate);
  EXPECT_EQ(classify_tls_failure("TLS handshake with x: wrong version number"), TlsFailure::kNotTls);
  EXPECT_EQ(classify_tls_failure("TLS handshake with x: handshake timed out"), TlsFailure::kTimeout);
  EXPECT_EQ(classify_tls_failure("something new"), TlsFailure::kOther);
  EXPECT_EQ(to_string(TlsFailure::kNotTls), "not_tls");
  EXPECT_EQ(to_string(MalformedReason::kOutOfOrder), "out_of_order");
}

}  // namespace
}  // namespace trawl::collector
