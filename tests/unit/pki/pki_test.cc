// trawl::pki: layout, permissions, certificate contents, refusals, revocation,
// and a cross-check with the openssl CLI.
#include "pki/pki.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace trawl::pki {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "trawl-pki-XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

X509Ptr load(const fs::path& p) {
  FILE* f = std::fopen(p.c_str(), "r");
  if (f == nullptr) return nullptr;
  X509Ptr x(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  return x;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Days from now until notAfter.
int days_left(X509* x) {
  int days = 0, secs = 0;
  EXPECT_EQ(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(x)), 1);
  return days;
}

bool signed_by(X509* cert, X509* ca) {
  EVP_PKEY* k = X509_get0_pubkey(ca);
  return X509_verify(cert, k) == 1;
}

std::string first_cn(X509* x) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof buf);
  return buf;
}

bool have_openssl_cli() { return std::system("openssl version >/dev/null 2>&1") == 0; }

int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

TEST(Pki, InitCreatesLayoutWithPrivatePermissions) {
  TempDir t;
  fs::path dir = t.path() / "pki";
  auto st = init(dir, {"10.1.2.3", "collector.example", "[2001:db8::7]"});
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(dir / "agents"), 0700u);
  for (const char* f : {"ca.key", "ca.crt", "collector.key", "collector.crt"}) EXPECT_EQ(mode_of(dir / f), 0600u) << f;
  EXPECT_FALSE(fs::exists(dir / "ca.crl"));
  // No temporary files left behind.
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_THAT(e.path().string(), ::testing::Not(HasSubstr(".tmp")));

  auto ca = load(dir / "ca.crt");
  ASSERT_TRUE(ca);
  EXPECT_EQ(X509_check_ca(ca.get()), 1);
  EXPECT_TRUE(signed_by(ca.get(), ca.get()));
  EXPECT_THAT(first_cn(ca.get()), ::testing::StartsWith("trawl CA "));
  EXPECT_GE(days_left(ca.get()), 3650);
  EXPECT_LE(days_left(ca.get()), 3653);
  char group[64] = {};
  size_t glen = 0;
  ASSERT_EQ(EVP_PKEY_get_group_name(X509_get0_pubkey(ca.get()), group, sizeof group, &glen), 1);
  EXPECT_STREQ(group, "prime256v1");

  auto col = load(dir / "collector.crt");
  ASSERT_TRUE(col);
  EXPECT_TRUE(signed_by(col.get(), ca.get()));
  EXPECT_EQ(X509_check_ca(col.get()), 0);
  EXPECT_TRUE(X509_get_extension_flags(col.get()) & EXFLAG_XKUSAGE);
  EXPECT_EQ(X509_get_extended_key_usage(col.get()), uint32_t{XKU_SSL_SERVER});
  for (const char* host : {"localhost", "collector.example"})
    EXPECT_EQ(X509_check_host(col.get(), host, 0, 0, nullptr), 1) << host;
  char hostname[256] = {};
  ASSERT_EQ(::gethostname(hostname, sizeof hostname - 1), 0);
  EXPECT_EQ(X509_check_host(col.get(), hostname, 0, 0, nullptr), 1) << hostname;
  for (const char* ip : {"127.0.0.1", "::1", "10.1.2.3", "2001:db8::7"})
    EXPECT_EQ(X509_check_ip_asc(col.get(), ip, 0), 1) << ip;
  EXPECT_EQ(X509_check_ip_asc(col.get(), "10.9.9.9", 0), 0);
  EXPECT_GE(days_left(col.get()), 729);
  EXPECT_LE(days_left(col.get()), 731);
}

TEST(Pki, InitRefusesToOverwriteCa) {
  TempDir t;
  ASSERT_TRUE(init(t.path()).ok());
  const std::string key_before = slurp(t.path() / "ca.key");
  auto again = init(t.path());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().message(), t.path().string() + " already holds a CA");
  EXPECT_EQ(slurp(t.path() / "ca.key"), key_before);

  // Also when only one half of the CA is there.
  TempDir u;
  std::ofstream(u.path() / "ca.crt") << "x";
  EXPECT_FALSE(init(u.path()).ok());
  EXPECT_FALSE(fs::exists(u.path() / "ca.key"));
}

TEST(Pki, InitRejectsBadExtraNamesBeforeWriting) {
  TempDir t;
  auto st = init(t.path() / "pki", {"ok.example", "not a name!"});
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message(), HasSubstr("'not a name!' is neither an IP address nor a DNS name"));
  EXPECT_FALSE(fs::exists(t.path() / "pki" / "ca.key"));
}

TEST(Pki, IssueMakesClientAuthCertificate) {
  TempDir t;
  ASSERT_TRUE(init(t.path()).ok());
  auto st = issue(t.path(), "edge-1");
  ASSERT_TRUE(st.ok()) << st.error().message();
  auto files = agent_files(t.path(), "edge-1");
  EXPECT_EQ(files.cert, t.path() / "agents" / "edge-1.crt");
  EXPECT_EQ(files.key, t.path() / "agents" / "edge-1.key");
  EXPECT_EQ(files.ca, t.path() / "ca.crt");
  EXPECT_EQ(mode_of(files.cert), 0600u);
  EXPECT_EQ(mode_of(files.key), 0600u);

  auto ca = load(t.path() / "ca.crt");
  auto x = load(files.cert);
  ASSERT_TRUE(x);
  EXPECT_TRUE(signed_by(x.get(), ca.get()));
  EXPECT_EQ(first_cn(x.get()), "edge-1");
  EXPECT_EQ(X509_check_host(x.get(), "edge-1", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_get_extended_key_usage(x.get()), uint32_t{XKU_SSL_CLIENT});
  EXPECT_EQ(X509_check_ca(x.get()), 0);
  EXPECT_GE(days_left(x.get()), 729);
  EXPECT_LE(days_left(x.get()), 731);
  // Serial numbers differ between certificates.
  ASSERT_TRUE(issue(t.path(), "edge-2").ok());
  auto y = load(agent_files(t.path(), "edge-2").cert);
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(x.get()), X509_get0_serialNumber(y.get())), 0);
}

TEST(Pki, IssueValidatesNames) {
  TempDir t;
  ASSERT_TRUE(init(t.path()).ok());
  for (const char* bad : {"", "-x", ".hidden", "..", "../x", "a/b", "a b", "a:b", "ü",
                          "x123456789012345678901234567890123456789012345678901234567890abc"}) {
    auto st = issue(t.path(), bad);
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_THAT(st.error().message(), HasSubstr("invalid agent name")) << bad;
  }
  for (const char* good : {"a", "Edge_1.dc-2", "x123456789012345678901234567890123456789012345678901234567890ab"})
    EXPECT_TRUE(issue(t.path(), good).ok()) << good;
  // Only the valid ones produced files.
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(t.path() / "agents")) n += e.path().extension() == ".crt";
  EXPECT_EQ(n, 3u);
}

TEST(Pki, IssueRefusesToOverwriteAndNeedsACa) {
  TempDir t;
  ASSERT_TRUE(init(t.path()).ok());
  ASSERT_TRUE(issue(t.path(), "edge-1").ok());
  const std::string before = slurp(t.path() / "agents" / "edge-1.crt");
  auto again = issue(t.path(), "edge-1");
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.error().message(), HasSubstr("already exists"));
  EXPECT_EQ(slurp(t.path() / "agents" / "edge-1.crt"), before);

  TempDir empty;
  auto no_ca = issue(empty.path(), "edge-1");
  ASSERT_FALSE(no_ca.ok());
  EXPECT_THAT(no_ca.error().message(), HasSubstr("loading CA"));
}

TEST(Pki, RevokeWritesCrlAndAllowsReissue) {
  TempDir t;
  ASSERT_TRUE(init(t.path()).ok());
  ASSERT_TRUE(issue(t.path(), "edge-1").ok());
  EXPECT_TRUE(collector_files(t.path()).crl.empty());
  auto old = load(agent_files(t.path(), "edge-1").cert);
  auto st = revoke(t.path(), "edge-1");
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_EQ(collector_files(t.path()).crl, t.path() / "ca.crl");
  EXPECT_EQ(mode_of(t.path() / "ca.crl"), 0600u);
  EXPECT_FALSE(fs::exists(t.path() / "agents" / "edge-1.crt"));
  EXPECT_FALSE(fs::exists(t.path() / "agents" / "edge-1.key"));
  size_t kept = 0;
  for (const auto& e : fs::directory_iterator(t.path() / "agents" / "revoked")) {
    EXPECT_THAT(e.path().filename().string(), ::testing::StartsWith("edge-1-"));
    ++kept;
  }
  EXPECT_EQ(kept, 1u);

  FILE* f = std::fopen((t.path() / "ca.crl").c_str(), "r");
  ASSERT_NE(f, nullptr);
  X509_CRL* crl = PEM_read_X509_CRL(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  ASSERT_NE(crl, nullptr);
  auto ca = load(t.path() / "ca.crt");
  EXPECT_EQ(X509_CRL_verify(crl, X509_get0_pubkey(ca.get())), 1);
  X509_REVOKED* entry = nullptr;
  EXPECT_EQ(X509_CRL_get0_by_serial(crl, &entry, X509_get0_serialNumber(old.get())), 1);
  X509_CRL_free(crl);

  ASSERT_TRUE(issue(t.path(), "edge-1").ok());
  ASSERT_TRUE(issue(t.path(), "edge-2").ok());
  ASSERT_TRUE(revoke(t.path(), "edge-2").ok());  // second entry, same CRL
  EXPECT_FALSE(revoke(t.path(), "edge-2").ok());  // nothing left to revoke
  EXPECT_FALSE(revoke(t.path(), "nobody").ok());

  if (!have_openssl_cli()) GTEST_SKIP() << "openssl CLI not installed";
  const std::string d = t.path().string();
  // The re-issued edge-1 is good, the old one and edge-2 are revoked.
  EXPECT_EQ(run("cd '" + d + "' && openssl verify -crl_check -CAfile ca.crt -CRLfile ca.crl agents/edge-1.crt"), 0);
  EXPECT_NE(run("cd '" + d + "' && openssl verify -crl_check -CAfile ca.crt -CRLfile ca.crl agents/revoked/edge-1-*.crt"), 0);
  EXPECT_NE(run("cd '" + d + "' && openssl verify -crl_check -CAfile ca.crt -CRLfile ca.crl agents/revoked/edge-2-*.crt"), 0);
  EXPECT_EQ(run("cd '" + d + "' && openssl crl -in ca.crl -noout -text | grep -c 'Serial Number' | grep -qx 2"), 0);
}

TEST(Pki, ReissueCollectorKeepsCa) {
  TempDir t;
  ASSERT_TRUE(init(t.path()).ok());
  const std::string ca_before = slurp(t.path() / "ca.crt");
  const std::string col_before = slurp(t.path() / "collector.crt");
  auto st = reissue_collector(t.path(), {"192.0.2.10"});
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_EQ(slurp(t.path() / "ca.crt"), ca_before);
  EXPECT_NE(slurp(t.path() / "collector.crt"), col_before);
  auto col = load(t.path() / "collector.crt");
  EXPECT_EQ(X509_check_ip_asc(col.get(), "192.0.2.10", 0), 1);
  EXPECT_TRUE(signed_by(col.get(), load(t.path() / "ca.crt").get()));
}

TEST(Pki, OpensslCliAgreesWithOurCertificates) {
  if (!have_openssl_cli()) GTEST_SKIP() << "openssl CLI not installed";
  TempDir t;
  ASSERT_TRUE(init(t.path()).ok());
  ASSERT_TRUE(issue(t.path(), "x").ok());
  const std::string d = "cd '" + t.path().string() + "' && ";
  EXPECT_EQ(run(d + "openssl verify -CAfile ca.crt agents/x.crt"), 0);
  EXPECT_EQ(run(d + "openssl verify -CAfile ca.crt collector.crt"), 0);
  EXPECT_EQ(run(d + "openssl verify -x509_strict -purpose sslclient -CAfile ca.crt agents/x.crt"), 0);
  EXPECT_EQ(run(d + "openssl verify -x509_strict -purpose sslserver -CAfile ca.crt collector.crt"), 0);
  // Roles do not swap.
  EXPECT_NE(run(d + "openssl verify -purpose sslserver -CAfile ca.crt agents/x.crt"), 0);
  EXPECT_NE(run(d + "openssl verify -purpose sslclient -CAfile ca.crt collector.crt"), 0);
  EXPECT_EQ(run(d + "openssl pkey -in agents/x.key -noout"), 0);
  EXPECT_EQ(run(d + "openssl x509 -in agents/x.crt -noout -checkhost x"), 0);
}

}  // namespace
}  // namespace trawl::pki
