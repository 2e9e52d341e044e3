// Private PKI for trawl: CA, collector and agent certificates, CRL.
#include "pki/pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <memory>
#include <string_view>

#include <fmt/format.h>

namespace trawl::pki {
namespace fs = std::filesystem;
namespace {

constexpr long kCaDays = 3652;         // 10 years
constexpr long kLeafDays = 730;        // 2 years, agents and collector
constexpr long kBackdateSeconds = 3600;  // tolerate an hour of clock skew between hosts

template <class T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY, EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Free<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, Free<X509, X509_free>>;
using CrlPtr = std::unique_ptr<X509_CRL, Free<X509_CRL, X509_CRL_free>>;
using BioPtr = std::unique_ptr<BIO, Free<BIO, BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Free<BIGNUM, BN_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES, GENERAL_NAMES_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION, X509_EXTENSION_free>>;
using IntPtr = std::unique_ptr<ASN1_INTEGER, Free<ASN1_INTEGER, ASN1_INTEGER_free>>;
using TimePtr = std::unique_ptr<ASN1_TIME, Free<ASN1_TIME, ASN1_TIME_free>>;

// "what: openssl reasons", draining this thread's error queue.
Error openssl_error(std::string_view what) {
  std::string out(what);
  bool first = true;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += first ? ": " : "; ";
    out += buf;
    first = false;
  }
  return Error(std::move(out));
}

// ---- files ----------------------------------------------------------------

Status ensure_private_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error(fmt::format("creating {}: {}", dir.string(), ec.message()));
  if (::chmod(dir.c_str(), 0700) != 0) return Error::from_errno(fmt::format("chmod 0700 {}", dir.string()));
  return ok_status();
}

Status fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno(fmt::format("opening {}", dir.string()));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Error::from_errno(fmt::format("fsync {}", dir.string()), err);
  return ok_status();
}

// Writes content to path, mode 0600, via a temporary file so a reader never
// sees half a key. replace=false fails with EEXIST when path exists (link(2)
// is atomic, so two writers cannot both win).
Status write_private_file(const fs::path& path, std::string_view content, bool replace) {
  static std::atomic<unsigned> counter{0};
  fs::path tmp = path;
  tmp += fmt::format(".tmp{}.{}", ::getpid(), counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error::from_errno(fmt::format("creating {}", tmp.string()));
  auto fail = [&](std::string_view what) -> Status {
    Error e = Error::from_errno(fmt::format("{} {}", what, tmp.string()));
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  if (::fchmod(fd, 0600) != 0) return fail("chmod");
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("writing");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  ::close(fd);
  if (replace) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      Error e = Error::from_errno(fmt::format("renaming to {}", path.string()));
      ::unlink(tmp.c_str());
      return e;
    }
  } else {
    int rc = ::link(tmp.c_str(), path.c_str());
    int err = errno;
    ::unlink(tmp.c_str());
    if (rc != 0) return Error::from_errno(fmt::format("creating {}", path.string()), err);
  }
  return fsync_dir(path.parent_path());
}

Result<std::string> read_file_text(const fs::path& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    return Error::from_errno(fmt::format("reading {}", path.string()));
  }
  std::string out;
  char buf[4096];
  int n = 0;
  while ((n = BIO_read(bio.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// ---- PEM ------------------------------------------------------------------

Result<std::string> bio_text(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len < 0) return openssl_error("BIO_get_mem_data");
  return std::string(data, static_cast<size_t>(len));
}

Result<std::string> key_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return openssl_error("encoding private key");
  return bio_text(bio.get());
}

Result<std::string> cert_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return openssl_error("encoding certificate");
  return bio_text(bio.get());
}

Result<std::string> crl_pem(X509_CRL* crl) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl) != 1) return openssl_error("encoding CRL");
  return bio_text(bio.get());
}

Result<X509Ptr> read_cert(const fs::path& path) {
  ERR_clear_error();
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    return Error::from_errno(fmt::format("reading {}", path.string()));
  }
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return openssl_error(fmt::format("parsing certificate {}", path.string()));
  return cert;
}

Result<PkeyPtr> read_key(const fs::path& path) {
  ERR_clear_error();
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    return Error::from_errno(fmt::format("reading {}", path.string()));
  }
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return openssl_error(fmt::format("parsing key {}", path.string()));
  return key;
}

// ---- certificates ---------------------------------------------------------

Result<PkeyPtr> new_p256_key() {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256") != 1 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1)
    return openssl_error("generating P-256 key");
  return PkeyPtr(raw);
}

// 159 random bits: positive, unique with overwhelming probability (RFC 5280
// allows up to 20 octets).
Status set_random_serial(X509* cert) {
  BnPtr bn(BN_new());
  if (!bn || BN_rand(bn.get(), 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ODD) != 1) return openssl_error("serial");
  if (BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) return openssl_error("serial");
  return ok_status();
}

Status add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return openssl_error(fmt::format("adding extension {}={}", OBJ_nid2sn(nid), value));
  return ok_status();
}

Status add_san(X509* cert, const std::vector<std::string>& dns, const std::vector<std::string>& ips) {
  NamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return openssl_error("subjectAltName");
  for (const auto& d : dns) {
    GENERAL_NAME* g = GENERAL_NAME_new();
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    if (g == nullptr || s == nullptr || ASN1_STRING_set(s, d.data(), static_cast<int>(d.size())) != 1) {
      GENERAL_NAME_free(g);
      ASN1_IA5STRING_free(s);
      return openssl_error("subjectAltName");
    }
    GENERAL_NAME_set0_value(g, GEN_DNS, s);
    sk_GENERAL_NAME_push(names.get(), g);
  }
  for (const auto& ip : ips) {
    GENERAL_NAME* g = GENERAL_NAME_new();
    ASN1_OCTET_STRING* addr = a2i_IPADDRESS(ip.c_str());
    if (g == nullptr || addr == nullptr) {
      GENERAL_NAME_free(g);
      ASN1_OCTET_STRING_free(addr);
      return openssl_error(fmt::format("subjectAltName IP {}", ip));
    }
    GENERAL_NAME_set0_value(g, GEN_IPADD, addr);
    sk_GENERAL_NAME_push(names.get(), g);
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1)
    return openssl_error("adding subjectAltName");
  return ok_status();
}

struct CertSpec {
  std::string common_name;
  long days = kLeafDays;
  bool ca = false;
  const char* eku = nullptr;  // "serverAuth" / "clientAuth"
  std::vector<std::string> dns;
  std::vector<std::string> ips;
};

// Builds and signs a certificate for key. issuer/issuer_key null = self-signed.
Result<X509Ptr> make_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  ERR_clear_error();
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) return openssl_error("X509_new");
  TRAWL_TRY(set_random_serial(cert.get()), "certificate");

  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1, 0) != 1)
    return openssl_error("subject name");
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1) return openssl_error("issuer name");

  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), static_cast<int>(spec.days), 0, nullptr) == nullptr)
    return openssl_error("validity");
  // A certificate cannot usefully outlive its CA.
  if (issuer != nullptr && ASN1_TIME_compare(X509_get0_notAfter(cert.get()), X509_get0_notAfter(issuer)) > 0 &&
      X509_set1_notAfter(cert.get(), X509_get0_notAfter(issuer)) != 1)
    return openssl_error("validity");

  if (X509_set_pubkey(cert.get(), key) != 1) return openssl_error("public key");

  if (spec.ca) {
    TRAWL_TRY(add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"), "CA");
    TRAWL_TRY(add_ext(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign"), "CA");
  } else {
    TRAWL_TRY(add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE"), "certificate");
    TRAWL_TRY(add_ext(cert.get(), signer, NID_key_usage, "critical,digitalSignature"), "certificate");
    TRAWL_TRY(add_ext(cert.get(), signer, NID_ext_key_usage, spec.eku), "certificate");
    TRAWL_TRY(add_san(cert.get(), spec.dns, spec.ips), "certificate");
  }
  TRAWL_TRY(add_ext(cert.get(), signer, NID_subject_key_identifier, "hash"), "certificate");
  // Self-signed: the SKID just added is found on `signer` (the cert itself).
  TRAWL_TRY(add_ext(cert.get(), signer, NID_authority_key_identifier, "keyid:always"), "certificate");

  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0)
    return openssl_error("signing certificate");
  return cert;
}

struct Ca {
  X509Ptr cert;
  PkeyPtr key;
};

Result<Ca> load_ca(const fs::path& dir) {
  Ca ca;
  auto cert = read_cert(dir / "ca.crt");
  if (!cert.ok()) return std::move(cert).error().with_context("loading CA");
  auto key = read_key(dir / "ca.key");
  if (!key.ok()) return std::move(key).error().with_context("loading CA");
  ca.cert = std::move(*cert);
  ca.key = std::move(*key);
  if (X509_check_private_key(ca.cert.get(), ca.key.get()) != 1)
    return openssl_error(fmt::format("loading CA: {} does not match {}", (dir / "ca.key").string(),
                                     (dir / "ca.crt").string()));
  return ca;
}

bool valid_dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_' && c != '*') return false;
  }
  return true;
}

bool is_ip(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// SAN lists for the collector: fixed loopback names, this host, extras.
Result<CertSpec> collector_spec(const std::vector<std::string>& extra_names) {
  CertSpec spec;
  spec.common_name = "trawl collector";
  spec.eku = "serverAuth";
  spec.dns = {"localhost"};
  spec.ips = {"127.0.0.1", "::1"};
  auto add = [&](std::string name) -> Status {
    if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
    if (is_ip(name)) {
      // Compare in binary form so "::1" and "0::1" are the same address.
      unsigned char a[16] = {}, b[16] = {};
      int fam = name.find(':') != std::string::npos ? AF_INET6 : AF_INET;
      inet_pton(fam, name.c_str(), a);
      for (const auto& ip : spec.ips) {
        int f2 = ip.find(':') != std::string::npos ? AF_INET6 : AF_INET;
        std::fill(std::begin(b), std::end(b), 0);
        inet_pton(f2, ip.c_str(), b);
        if (f2 == fam && std::equal(std::begin(a), std::end(a), std::begin(b))) return ok_status();
      }
      spec.ips.push_back(name);
      return ok_status();
    }
    if (!valid_dns_name(name)) return Error(fmt::format("'{}' is neither an IP address nor a DNS name", name));
    for (const auto& d : spec.dns) {
      if (lower(d) == lower(name)) return ok_status();
    }
    spec.dns.push_back(name);
    return ok_status();
  };
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0 && valid_dns_name(host)) TRAWL_TRY(add(host), "hostname");
  for (const auto& n : extra_names) TRAWL_TRY(add(n), "collector name");
  return spec;
}

Status write_collector(const fs::path& dir, const Ca& ca, const std::vector<std::string>& extra_names) {
  auto spec = collector_spec(extra_names);
  if (!spec.ok()) return std::move(spec).error();
  auto key = new_p256_key();
  if (!key.ok()) return std::move(key).error();
  auto cert = make_cert(*spec, key->get(), ca.cert.get(), ca.key.get());
  if (!cert.ok()) return std::move(cert).error().with_context("collector certificate");
  auto kp = key_pem(key->get());
  if (!kp.ok()) return std::move(kp).error();
  auto cp = cert_pem(cert->get());
  if (!cp.ok()) return std::move(cp).error();
  TRAWL_TRY(write_private_file(dir / "collector.key", *kp, true), "collector key");
  TRAWL_TRY(write_private_file(dir / "collector.crt", *cp, true), "collector certificate");
  return ok_status();
}

std::string serial_hex(X509* cert) {
  BnPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "unknown";
  char* hex = BN_bn2hex(bn.get());
  std::string out = lower(hex != nullptr ? hex : "unknown");
  OPENSSL_free(hex);
  return out;
}

}  // namespace

Status init(const fs::path& dir, const std::vector<std::string>& extra_names) {
  const std::string what = fmt::format("initialising PKI in {}", dir.string());
  std::error_code ec;
  if (fs::exists(dir / "ca.key", ec) || fs::exists(dir / "ca.crt", ec))
    return Error(fmt::format("{} already holds a CA", dir.string()));
  // Validate names before writing anything.
  auto spec = collector_spec(extra_names);
  if (!spec.ok()) return std::move(spec).error().with_context(what);
  TRAWL_TRY(ensure_private_dir(dir), what);
  TRAWL_TRY(ensure_private_dir(dir / "agents"), what);

  Ca ca;
  auto key = new_p256_key();
  if (!key.ok()) return std::move(key).error().with_context(what);
  unsigned char id[4] = {};
  if (RAND_bytes(id, sizeof id) != 1) return openssl_error(what + ": RAND_bytes");
  // A distinct name per CA, so certificates from two deployments never look
  // like they share an issuer.
  CertSpec ca_spec;
  ca_spec.common_name = fmt::format("trawl CA {:02x}{:02x}{:02x}{:02x}", id[0], id[1], id[2], id[3]);
  ca_spec.days = kCaDays;
  ca_spec.ca = true;
  auto cert = make_cert(ca_spec, key->get(), nullptr, nullptr);
  if (!cert.ok()) return std::move(cert).error().with_context(what);
  ca.key = std::move(*key);
  ca.cert = std::move(*cert);

  auto kp = key_pem(ca.key.get());
  if (!kp.ok()) return std::move(kp).error().with_context(what);
  auto cp = cert_pem(ca.cert.get());
  if (!cp.ok()) return std::move(cp).error().with_context(what);
  // The key is written with link(2): if another init won the race, stop here.
  auto st = write_private_file(dir / "ca.key", *kp, false);
  if (!st.ok()) {
    if (st.error().sys_errno() == EEXIST) return Error(fmt::format("{} already holds a CA", dir.string()));
    return std::move(st).error().with_context(what);
  }
  TRAWL_TRY(write_private_file(dir / "ca.crt", *cp, false), what);
  TRAWL_TRY(write_collector(dir, ca, extra_names), what);
  return ok_status();
}

Status issue(const fs::path& dir, const std::string& name) {
  const std::string what = fmt::format("issuing agent certificate '{}'", name);
  if (!wire::is_valid_agent_name(name))
    return Error(fmt::format("{}: invalid agent name (want [A-Za-z0-9][A-Za-z0-9._-]{{0,62}})", what));
  const fs::path crt = dir / "agents" / (name + ".crt");
  const fs::path key_path = dir / "agents" / (name + ".key");
  std::error_code ec;
  if (fs::exists(crt, ec)) return Error(fmt::format("{}: {} already exists", what, crt.string()));
  if (fs::exists(key_path, ec))
    return Error(fmt::format("{}: {} already exists (left over? remove it to re-issue)", what, key_path.string()));

  auto ca = load_ca(dir);
  if (!ca.ok()) return std::move(ca).error().with_context(what);
  TRAWL_TRY(ensure_private_dir(dir / "agents"), what);
  auto key = new_p256_key();
  if (!key.ok()) return std::move(key).error().with_context(what);
  CertSpec spec;
  spec.common_name = name;
  spec.eku = "clientAuth";
  spec.dns = {name};
  auto cert = make_cert(spec, key->get(), ca->cert.get(), ca->key.get());
  if (!cert.ok()) return std::move(cert).error().with_context(what);
  auto kp = key_pem(key->get());
  if (!kp.ok()) return std::move(kp).error().with_context(what);
  auto cp = cert_pem(cert->get());
  if (!cp.ok()) return std::move(cp).error().with_context(what);
  TRAWL_TRY(write_private_file(key_path, *kp, false), what);
  TRAWL_TRY(write_private_file(crt, *cp, false), what);
  return ok_status();
}

Status reissue_collector(const fs::path& dir, const std::vector<std::string>& extra_names) {
  const std::string what = fmt::format("re-issuing collector certificate in {}", dir.string());
  auto ca = load_ca(dir);
  if (!ca.ok()) return std::move(ca).error().with_context(what);
  TRAWL_TRY(write_collector(dir, *ca, extra_names), what);
  return ok_status();
}

Status revoke(const fs::path& dir, const std::string& name) {
  const std::string what = fmt::format("revoking agent '{}'", name);
  if (!wire::is_valid_agent_name(name)) return Error(fmt::format("{}: invalid agent name", what));
  const fs::path crt = dir / "agents" / (name + ".crt");
  auto ca = load_ca(dir);
  if (!ca.ok()) return std::move(ca).error().with_context(what);
  auto cert = read_cert(crt);
  if (!cert.ok()) return std::move(cert).error().with_context(what);
  if (X509_check_issued(ca->cert.get(), cert->get()) != X509_V_OK)
    return Error(fmt::format("{}: {} was not issued by this CA", what, crt.string()));

  ERR_clear_error();
  const fs::path crl_path = dir / "ca.crl";
  CrlPtr crl;
  std::error_code ec;
  if (fs::exists(crl_path, ec)) {
    auto text = read_file_text(crl_path);
    if (!text.ok()) return std::move(text).error().with_context(what);
    BioPtr bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
    crl.reset(bio ? PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!crl) return openssl_error(fmt::format("{}: parsing {}", what, crl_path.string()));
  } else {
    crl.reset(X509_CRL_new());
    if (!crl || X509_CRL_set_version(crl.get(), 1) != 1 ||  // v2, for extensions
        X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca->cert.get())) != 1)
      return openssl_error(what + ": new CRL");
  }

  X509_REVOKED* existing = nullptr;
  if (X509_CRL_get0_by_serial(crl.get(), &existing, X509_get0_serialNumber(cert->get())) == 0) {
    X509_REVOKED* rev = X509_REVOKED_new();
    TimePtr now(X509_gmtime_adj(nullptr, 0));
    if (rev == nullptr || !now || X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(cert->get())) != 1 ||
        X509_REVOKED_set_revocationDate(rev, now.get()) != 1 || X509_CRL_add0_revoked(crl.get(), rev) != 1) {
      X509_REVOKED_free(rev);
      return openssl_error(what + ": adding entry");
    }
  }

  // CRL number: one more than the last.
  BnPtr number;
  int idx = X509_CRL_get_ext_by_NID(crl.get(), NID_crl_number, -1);
  if (idx >= 0) {
    IntPtr old(static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl.get(), NID_crl_number, nullptr, nullptr)));
    if (old) number.reset(ASN1_INTEGER_to_BN(old.get(), nullptr));
    X509_EXTENSION_free(X509_CRL_delete_ext(crl.get(), idx));
  }
  if (!number) {
    number.reset(BN_new());
    if (number) BN_zero(number.get());
  }
  if (!number || BN_add_word(number.get(), 1) != 1) return openssl_error(what + ": CRL number");
  IntPtr next(BN_to_ASN1_INTEGER(number.get(), nullptr));
  if (!next || X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, next.get(), 0, X509V3_ADD_DEFAULT) != 1)
    return openssl_error(what + ": CRL number");
  if (X509_CRL_get_ext_by_NID(crl.get(), NID_authority_key_identifier, -1) < 0) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->cert.get(), nullptr, nullptr, crl.get(), 0);
    ExtPtr akid(X509V3_EXT_nconf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
    if (!akid || X509_CRL_add_ext(crl.get(), akid.get(), -1) != 1) return openssl_error(what + ": CRL AKID");
  }
  // Valid until the CA expires: nothing republishes this CRL, and an expired
  // CRL would lock every agent out.
  TimePtr now(X509_gmtime_adj(nullptr, -kBackdateSeconds));
  if (!now || X509_CRL_set1_lastUpdate(crl.get(), now.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), X509_get0_notAfter(ca->cert.get())) != 1)
    return openssl_error(what + ": CRL dates");
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), ca->key.get(), EVP_sha256()) == 0) return openssl_error(what + ": signing CRL");
  auto pem = crl_pem(crl.get());
  if (!pem.ok()) return std::move(pem).error().with_context(what);
  TRAWL_TRY(write_private_file(crl_path, *pem, true), what);

  // Move the certificate aside so NAME can be issued again; its key is useless now.
  const fs::path revoked_dir = dir / "agents" / "revoked";
  TRAWL_TRY(ensure_private_dir(revoked_dir), what);
  const fs::path moved = revoked_dir / fmt::format("{}-{}.crt", name, serial_hex(cert->get()));
  if (::rename(crt.c_str(), moved.c_str()) != 0) return Error::from_errno(fmt::format("{}: moving {}", what, crt.string()));
  const fs::path key_path = dir / "agents" / (name + ".key");
  if (::unlink(key_path.c_str()) != 0 && errno != ENOENT)
    return Error::from_errno(fmt::format("{}: removing {}", what, key_path.string()));
  TRAWL_TRY(fsync_dir(dir / "agents"), what);
  return ok_status();
}

wire::TlsFiles collector_files(const fs::path& dir) {
  wire::TlsFiles f;
  f.ca = dir / "ca.crt";
  f.cert = dir / "collector.crt";
  f.key = dir / "collector.key";
  std::error_code ec;
  if (fs::exists(dir / "ca.crl", ec)) f.crl = dir / "ca.crl";
  return f;
}

wire::TlsFiles agent_files(const fs::path& dir, const std::string& name) {
  wire::TlsFiles f;
  f.ca = dir / "ca.crt";
  f.cert = dir / "agents" / (name + ".crt");
  f.key = dir / "agents" / (name + ".key");
  return f;
}

Result<wire::TlsFiles> resolve(const Credentials& c, const std::string& agent_name) {
  wire::TlsFiles files;
  if (!c.pki_dir.empty()) files = agent_name.empty() ? collector_files(c.pki_dir) : agent_files(c.pki_dir, agent_name);
  if (!c.ca_file.empty()) files.ca = c.ca_file;
  if (!c.cert_file.empty()) files.cert = c.cert_file;
  if (!c.key_file.empty()) files.key = c.key_file;
  if (files.ca.empty() || files.cert.empty() || files.key.empty()) {
    return Error("no credentials: give --pki DIR (or --ca/--cert/--key), or --insecure for a lab");
  }
  return files;
}

}  // namespace trawl::pki
