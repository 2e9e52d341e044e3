// TLS 1.3 contexts, handshakes with a deadline, and the TLS Connection.
//
// Error-queue discipline: OpenSSL keeps one error queue per thread. Every
// SSL_* call below starts with ERR_clear_error() and every failure drains the
// queue into the returned Error, so one connection's failure never shows up
// as another connection's error on the same thread.
#include "wire/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <mutex>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace trawl::wire {

// Holds the configured SSL_CTX. Immutable after construction; SSL_CTX is
// safe to share between threads once configured.
class TlsContext {
 public:
  TlsContext(SSL_CTX* ctx, bool server) : ctx_(ctx), server_(server) {}
  ~TlsContext() { SSL_CTX_free(ctx_); }
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* native() const { return ctx_; }
  bool server() const { return server_; }

 private:
  SSL_CTX* ctx_;
  bool server_;
};

namespace {

// With read_ahead, one recv() can fill this many bytes of TLS records, so a
// busy connection needs one syscall per ~4 records instead of two per record.
constexpr size_t kReadBufferBytes = 64 * 1024;

// Appends the text of one queued error to out ("a; b"), once. Alerts the
// peer sent are marked as such: they describe what the peer disliked about us.
void append_error_text(std::string& out, unsigned long e) {
  char buf[256];
  const char* reason = ERR_reason_error_string(e);
  if (reason == nullptr) {
    ERR_error_string_n(e, buf, sizeof buf);
    reason = buf;
  }
  const bool alert = ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET;
  std::string text = alert ? fmt::format("peer sent alert: {}", reason) : std::string(reason);
  if (out.find(text) != std::string::npos) return;
  if (!out.empty()) out += "; ";
  out += text;
}

// Drains this thread's OpenSSL error queue into "reason; reason".
std::string take_openssl_errors() {
  std::string out;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) append_error_text(out, e);
  return out;
}

Error openssl_error(std::string_view what) {
  std::string q = take_openssl_errors();
  return Error(q.empty() ? std::string(what) : fmt::format("{}: {}", what, q));
}

// Error for a failed SSL_read_ex/SSL_write_ex. saved_errno is errno right
// after the call (0 when the socket reported EOF).
Error io_error(std::string_view op, int ssl_error, int saved_errno) {
  switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      return Error(std::string(kPeerClosed));
    case SSL_ERROR_SYSCALL: {
      std::string q = take_openssl_errors();
      if (saved_errno == EPIPE || (saved_errno == 0 && q.empty())) return Error(std::string(kPeerClosed));
      if (saved_errno != 0) return Error::from_errno(op, saved_errno);
      return Error(fmt::format("{}: {}", op, q));
    }
    case SSL_ERROR_SSL: {
      unsigned long first = ERR_peek_error();
      // EOF without close_notify. Frames are length-prefixed, so the frame
      // layer notices a truncated frame by itself; report it as a close.
      if (ERR_GET_LIB(first) == ERR_LIB_SSL && ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return Error(std::string(kPeerClosed));
      }
      return openssl_error(op);
    }
    default:
      ERR_clear_error();
      return Error(fmt::format("{}: unexpected SSL error {}", op, ssl_error));
  }
}

// Reason a handshake failed, in words an operator can act on.
std::string handshake_failure(SSL* ssl, int ssl_error, int saved_errno) {
  static constexpr std::string_view kClosed = "peer closed the connection during the handshake";
  if (ssl_error == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return std::string(kClosed);
  }
  std::string special;
  std::string all;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    if (special.empty() && ERR_GET_LIB(e) == ERR_LIB_SSL) {
      switch (ERR_GET_REASON(e)) {
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
          special = fmt::format("certificate verify failed: {}",
                                X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
          break;
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
          special = "no client certificate";
          break;
        case SSL_R_UNEXPECTED_EOF_WHILE_READING:
          special = kClosed;
          break;
        default:
          break;
      }
    }
    append_error_text(all, e);
  }
  if (!special.empty()) return special;
  if (!all.empty()) return all;
  if (ssl_error == SSL_ERROR_SYSCALL) {
    if (saved_errno != 0) return std::strerror(saved_errno);
    return std::string(kClosed);
  }
  return fmt::format("unexpected SSL error {}", ssl_error);
}

// Depth 0 only: the peer's own certificate must explicitly allow its role.
// OpenSSL's default purpose check accepts a leaf without any EKU extension;
// we do not, so a CA-signed certificate made for something else cannot be
// used as an agent or as the collector.
int verify_callback(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok != 1 || X509_STORE_CTX_get_error_depth(store) != 0) return preverify_ok;
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (cert == nullptr || ssl == nullptr) return 0;
  const uint32_t want = SSL_is_server(ssl) ? XKU_SSL_CLIENT : XKU_SSL_SERVER;
  if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) == 0 || (X509_get_extended_key_usage(cert) & want) == 0) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_INVALID_PURPOSE);
    return 0;
  }
  return 1;
}

// First DNS subjectAltName, else the subject CN; "" when neither exists.
std::string certificate_name(X509* cert) {
  std::string name;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type == GEN_DNS) {
        name.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                    static_cast<size_t>(ASN1_STRING_length(g->d.dNSName)));
        break;
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (name.empty()) {
    X509_NAME* subject = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (idx >= 0) {
      unsigned char* utf8 = nullptr;
      int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
      if (len > 0) name.assign(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
      OPENSSL_free(utf8);
    }
  }
  return name;
}

Status check_readable(std::string_view what, const std::filesystem::path& p) {
  if (p.empty()) return Error(fmt::format("{}: no file given", what));
  if (::access(p.c_str(), R_OK) != 0) return Error::from_errno(fmt::format("{} {}", what, p.string()));
  return ok_status();
}

Status load_crl(SSL_CTX* ctx, const std::filesystem::path& path) {
  TRAWL_TRY(check_readable("CRL", path), "loading CRL");
  BIO* bio = BIO_new_file(path.c_str(), "r");
  if (bio == nullptr) return openssl_error(fmt::format("loading CRL {}", path.string()));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int count = 0;
  while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr)) {
    int ok = X509_STORE_add_crl(store, crl);
    X509_CRL_free(crl);
    if (ok != 1) {
      BIO_free(bio);
      return openssl_error(fmt::format("loading CRL {}", path.string()));
    }
    ++count;
  }
  BIO_free(bio);
  ERR_clear_error();  // the read loop ends on a "no start line" error at EOF
  if (count == 0) return Error(fmt::format("loading CRL {}: no CRL in file", path.string()));
  // Leaf only: our CAs sign agents directly.
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_CRL_CHECK);
  return ok_status();
}

Result<std::shared_ptr<TlsContext>> build_context(const TlsFiles& files, bool server) {
  ignore_sigpipe();
  TRAWL_TRY(check_readable("CA", files.ca), "TLS setup");
  TRAWL_TRY(check_readable("certificate", files.cert), "TLS setup");
  TRAWL_TRY(check_readable("key", files.key), "TLS setup");

  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (raw == nullptr) return openssl_error("TLS setup: SSL_CTX_new");
  auto ctx = std::make_shared<TlsContext>(raw, server);

  SSL_CTX_set_min_proto_version(raw, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(raw, TLS1_3_VERSION);
  // Every connection does a full handshake: connections are few and
  // long-lived, and no resumption state means nothing to protect or expire.
  SSL_CTX_set_options(raw, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  // AES-128-GCM first: as safe for this use and ~30 % cheaper than AES-256
  // per byte, which matters when every captured byte is encrypted once.
  if (SSL_CTX_set_ciphersuites(raw, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1) {
    return openssl_error("TLS setup: ciphersuites");
  }
  if (server) SSL_CTX_set_options(raw, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
  if (server) SSL_CTX_set_num_tickets(raw, 0);
  // NO_AUTO_CHAIN: send the chain file as given, not our CA too (the peer
  // must hold the CA already; sending it only wastes bytes and turns a foreign
  // peer's error into "self-signed certificate in certificate chain").
  SSL_CTX_set_mode(raw, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
  SSL_CTX_set_read_ahead(raw, 1);
  SSL_CTX_set_default_read_buffer_len(raw, kReadBufferBytes);

  if (SSL_CTX_load_verify_file(raw, files.ca.c_str()) != 1)
    return openssl_error(fmt::format("TLS setup: loading CA {}", files.ca.string()));
  if (server) {
    // Tell clients which CA we accept (helps clients holding several certs).
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.ca.c_str());
    if (names == nullptr) return openssl_error(fmt::format("TLS setup: reading CA names from {}", files.ca.string()));
    SSL_CTX_set_client_CA_list(raw, names);
  }
  if (SSL_CTX_use_certificate_chain_file(raw, files.cert.c_str()) != 1)
    return openssl_error(fmt::format("TLS setup: loading certificate {}", files.cert.string()));
  if (SSL_CTX_use_PrivateKey_file(raw, files.key.c_str(), SSL_FILETYPE_PEM) != 1)
    return openssl_error(fmt::format("TLS setup: loading key {}", files.key.string()));
  if (SSL_CTX_check_private_key(raw) != 1)
    return openssl_error(fmt::format("TLS setup: key {} does not match certificate {}", files.key.string(),
                                     files.cert.string()));

  X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(raw), server ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER);
  SSL_CTX_set_verify(raw, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), verify_callback);
  if (!files.crl.empty()) TRAWL_TRY(load_crl(raw, files.crl), "TLS setup");
  ERR_clear_error();
  return ctx;
}

class TlsConnection final : public Connection {
 public:
  TlsConnection(std::shared_ptr<TlsContext> ctx, SSL* ssl, int fd, std::string peer, std::string identity)
      : ctx_(std::move(ctx)), ssl_(ssl), fd_(fd), peer_(std::move(peer)), identity_(std::move(identity)) {}
  ~TlsConnection() override {
    SSL_free(ssl_);
    ::close(fd_);
  }
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  int fd() const override { return fd_; }

  // Loops so one call drains everything already buffered and readable, up to
  // buf.size(); stops at the first would-block.
  Result<size_t> read(std::span<uint8_t> buf) override {
    want_write_ = false;
    if (fatal_) return *fatal_;
    if (closed_) return *closed_;
    size_t total = 0;
    while (total < buf.size()) {
      ERR_clear_error();
      errno = 0;
      size_t n = 0;
      int r = SSL_read_ex(ssl_, buf.data() + total, buf.size() - total, &n);
      int saved_errno = errno;
      if (r == 1) {
        total += n;
        continue;
      }
      int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ) {
        read_blocked_ = true;
        return total;
      }
      if (e == SSL_ERROR_WANT_WRITE) {
        want_write_ = true;
        read_blocked_ = true;
        return total;
      }
      Error err = io_error("read", e, saved_errno);
      // A close_notify ends only the peer's direction; we may still write.
      auto& slot = e == SSL_ERROR_ZERO_RETURN ? closed_ : fatal_;
      slot = std::move(err);
      if (total > 0) return total;  // hand over what arrived; the error comes next call
      return *slot;
    }
    read_blocked_ = false;  // buf is full: more may be buffered
    return total;
  }

  // Loops record by record (partial-write mode) until all of buf is accepted
  // or the socket is full.
  Result<size_t> write(std::span<const uint8_t> buf) override {
    want_write_ = false;
    if (fatal_) return *fatal_;
    size_t total = 0;
    while (total < buf.size()) {
      ERR_clear_error();
      errno = 0;
      size_t n = 0;
      int r = SSL_write_ex(ssl_, buf.data() + total, buf.size() - total, &n);
      int saved_errno = errno;
      if (r == 1) {
        total += n;
        continue;
      }
      int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_WRITE) {
        want_write_ = true;
        break;
      }
      if (e == SSL_ERROR_WANT_READ) break;
      fatal_ = io_error("write", e, saved_errno);
      if (total > 0) break;
      return *fatal_;
    }
    return total;
  }

  bool want_write() const override { return want_write_; }
  // SSL_has_pending, not SSL_pending: with read_ahead, whole records can sit
  // in OpenSSL's buffer not yet decrypted, and poll() would never report them.
  // Once a read stopped on would-block, whatever is left is a partial record
  // and the socket will turn readable for the rest.
  bool has_buffered_read() const override {
    return !fatal_ && !closed_ && !read_blocked_ && SSL_has_pending(ssl_) == 1;
  }
  const std::string& peer_address() const override { return peer_; }
  const std::string& identity() const override { return identity_; }

  void shutdown() override {
    // SSL_shutdown is not allowed after a fatal error.
    if (!fatal_) {
      ERR_clear_error();
      SSL_shutdown(ssl_);
      ERR_clear_error();
    }
    ::shutdown(fd_, SHUT_WR);
  }

 private:
  std::shared_ptr<TlsContext> ctx_;
  SSL* ssl_;
  int fd_;
  std::string peer_;
  std::string identity_;
  // Sticky errors: a failed TLS stream does not recover (and SSL_shutdown is
  // not allowed after a fatal error); closed_ is the peer's close_notify.
  std::optional<Error> fatal_;
  std::optional<Error> closed_;
  bool want_write_ = false;
  // The last read() stopped because the socket had nothing more. Starts false:
  // application data can arrive together with the handshake's last flight.
  bool read_blocked_ = false;
};

Result<std::unique_ptr<Connection>> handshake(std::shared_ptr<TlsContext> ctx, int fd, std::string peer,
                                              int timeout_ms, bool server) {
  const std::string what = fmt::format("TLS handshake with {}", peer);
  SSL* ssl = nullptr;
  auto fail = [&](std::string reason) -> Result<std::unique_ptr<Connection>> {
    SSL_free(ssl);
    ::close(fd);
    ERR_clear_error();
    return Error(fmt::format("{}: {}", what, reason));
  };
  if (!ctx) return fail("no TLS context");
  if (ctx->server() != server) return fail(server ? "accept needs a server context" : "connect needs a client context");

  ERR_clear_error();
  ssl = SSL_new(ctx->native());
  if (ssl == nullptr) return fail("SSL_new: " + take_openssl_errors());
  if (SSL_set_fd(ssl, fd) != 1) return fail("SSL_set_fd: " + take_openssl_errors());
  if (server) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl);
    int saved_errno = errno;
    if (r == 1) break;
    int e = SSL_get_error(ssl, r);
    short events = 0;
    if (e == SSL_ERROR_WANT_READ) {
      events = POLLIN;
    } else if (e == SSL_ERROR_WANT_WRITE) {
      events = POLLOUT;
    } else {
      return fail(handshake_failure(ssl, e, saved_errno));
    }
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return fail("handshake timed out");
      pollfd p{fd, events, 0};
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n > 0) break;  // readable, writable, or HUP/ERR: let OpenSSL find out
      if (n == 0) return fail("handshake timed out");
      if (errno != EINTR) return fail(fmt::format("poll: {}", std::strerror(errno)));
    }
  }

  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return fail("no peer certificate");  // verify mode forbids this; belt and braces
  std::string identity = certificate_name(cert);
  if (server && !is_valid_agent_name(identity))
    return fail(fmt::format("client certificate names no valid agent (got '{}')", identity));
  spdlog::debug("{}: done, {} {}, peer '{}'", what, SSL_get_version(ssl), SSL_get_cipher_name(ssl), identity);
  ERR_clear_error();
  return std::unique_ptr<Connection>(
      std::make_unique<TlsConnection>(std::move(ctx), ssl, fd, std::move(peer), std::move(identity)));
}

}  // namespace

Result<std::shared_ptr<TlsContext>> tls_server_context(const TlsFiles& files) { return build_context(files, true); }

Result<std::shared_ptr<TlsContext>> tls_client_context(const TlsFiles& files) { return build_context(files, false); }

Result<std::unique_ptr<Connection>> tls_accept(std::shared_ptr<TlsContext> ctx, int fd, std::string peer_address,
                                               int timeout_ms) {
  return handshake(std::move(ctx), fd, std::move(peer_address), timeout_ms, true);
}

Result<std::unique_ptr<Connection>> tls_connect(std::shared_ptr<TlsContext> ctx, int fd, std::string peer_address,
                                                int timeout_ms) {
  return handshake(std::move(ctx), fd, std::move(peer_address), timeout_ms, false);
}

bool is_valid_agent_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front())) return false;
  for (char c : name) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) != 0) return;
    if ((old.sa_flags & SA_SIGINFO) != 0 || old.sa_handler != SIG_DFL) return;  // someone chose already
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, nullptr);
  });
}

}  // namespace trawl::wire
