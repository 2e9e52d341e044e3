// Mutually authenticated TLS 1.3 over a connected nonblocking TCP socket
// (OpenSSL 3). The collector is the TLS server and knows each agent by its
// client certificate; agents are TLS clients and trust only the collector's
// CA. Both sides check the peer's extended key usage (clientAuth for agents,
// serverAuth for the collector), so an agent certificate can never stand in
// for the collector. No hostname check: the CA is private to one trawl
// deployment and signs serverAuth certificates only for collectors.
//
// Ownership: a TlsContext (wraps SSL_CTX) is immutable once built and safe to
// share between threads; connections keep it alive. tls_accept/tls_connect
// take ownership of the fd, also when they fail (they close it).
// Blocking: tls_accept/tls_connect block up to timeout_ms in poll(); the
// returned Connection never blocks.
// SIGPIPE: OpenSSL writes with write(2), which raises SIGPIPE on a reset
// connection; building a context calls ignore_sigpipe().
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "wire/connection.h"

namespace trawl::wire {

struct TlsFiles {
  std::filesystem::path ca;    // PEM CA certificate(s) that sign the peer
  std::filesystem::path cert;  // PEM certificate (chain) presented to the peer
  std::filesystem::path key;   // PEM private key of cert
  // Optional PEM CRL from the CA (server side): client certificates it lists
  // are refused ("certificate verify failed: certificate revoked"). Empty = no
  // revocation check. Read once, when the context is built.
  std::filesystem::path crl;
};

class TlsContext;  // opaque; see tls.cc

// Collector side: TLS 1.3 only; requires a client certificate that chains to
// files.ca and carries EKU clientAuth.
Result<std::shared_ptr<TlsContext>> tls_server_context(const TlsFiles& files);
// Agent side: TLS 1.3 only; the server certificate must chain to files.ca and
// carry EKU serverAuth.
Result<std::shared_ptr<TlsContext>> tls_client_context(const TlsFiles& files);

// Runs the server handshake on fd (connected, nonblocking) within timeout_ms.
// On success identity() is the agent name from the verified client
// certificate (first DNS SAN, else CN), which must be a valid agent name.
// Errors (prefixed "TLS handshake with <peer>: "):
//   "certificate verify failed: unable to get local issuer certificate"
//   "certificate verify failed: unsuitable certificate purpose"
//   "certificate verify failed: certificate revoked"
//   "no client certificate", "unsupported protocol", "handshake timed out",
//   "peer sent alert: tlsv1 alert unknown ca" (the peer refused our certificate),
//   "peer closed the connection during the handshake", ...
Result<std::unique_ptr<Connection>> tls_accept(std::shared_ptr<TlsContext> ctx, int fd,
                                               std::string peer_address, int timeout_ms);

// Runs the client handshake. TLS 1.3 finishes the client's handshake before
// the server has checked the client certificate: when the collector refuses
// this agent, tls_connect still succeeds and the refusal arrives as the Error
// of the first read() ("read: peer sent alert: tlsv1 alert unknown ca",
// "read: peer sent alert: sslv3 alert certificate revoked").
Result<std::unique_ptr<Connection>> tls_connect(std::shared_ptr<TlsContext> ctx, int fd,
                                                std::string peer_address, int timeout_ms);

// [A-Za-z0-9][A-Za-z0-9._-]{0,62}: safe as a directory name and a DNS label
// sequence. The collector refuses certificates naming anything else.
bool is_valid_agent_name(std::string_view name);

// Sets SIGPIPE to SIG_IGN unless the process already installed a handler.
// Idempotent and thread-safe.
void ignore_sigpipe();

}  // namespace trawl::wire
