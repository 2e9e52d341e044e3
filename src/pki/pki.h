// trawl's private PKI: one CA per deployment, one serverAuth certificate for
// the collector, one clientAuth certificate per agent, made with the OpenSSL 3
// C API (no shelling out). Layout of DIR (see docs/pki.md):
//
//   DIR/ca.key  ca.crt               CA, ECDSA P-256, 10 years
//   DIR/collector.key  collector.crt serverAuth, SAN localhost/127.0.0.1/::1/hostname/extra, 2 years
//   DIR/agents/NAME.key  NAME.crt     clientAuth, CN=NAME, SAN DNS:NAME, 2 years
//   DIR/ca.crl                        after the first revoke()
//   DIR/agents/revoked/NAME-SERIAL.crt  revoked certificates, kept for the record
//
// Every file is written mode 0600 under a temporary name and renamed into
// place; directories are 0700. Functions are safe to call from several
// threads but not from several processes on the same DIR at once (no lock).
// All of them block on file I/O.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/result.h"
#include "wire/tls.h"

namespace trawl::pki {

// Creates the CA and the collector credentials in dir (created if needed).
// extra_names: more IP addresses or DNS names for the collector certificate
// (the addresses agents dial). Refuses an existing CA: "DIR already holds a CA".
Status init(const std::filesystem::path& dir, const std::vector<std::string>& extra_names = {});

// Issues agents/NAME.{key,crt} signed by the CA in dir. NAME must match
// [A-Za-z0-9][A-Za-z0-9._-]{0,62} (wire::is_valid_agent_name); refuses to
// overwrite an existing agent certificate (revoke it first to re-issue).
Status issue(const std::filesystem::path& dir, const std::string& name);

// Replaces collector.{key,crt} with a fresh key and certificate from the CA
// in dir (renewal, or new names/addresses). Agents need no change.
Status reissue_collector(const std::filesystem::path& dir, const std::vector<std::string>& extra_names = {});

// Adds agents/NAME.crt to DIR/ca.crl (created on first use, signed by the
// CA), moves the certificate to agents/revoked/ and deletes its key, so NAME
// can be issued again. The collector refuses the revoked certificate once it
// rebuilds its TLS context (restart) with collector_files(dir).
Status revoke(const std::filesystem::path& dir, const std::string& name);

// Files for the collector's tls_server_context: CA, collector cert and key,
// and DIR/ca.crl when it exists.
wire::TlsFiles collector_files(const std::filesystem::path& dir);

// Where a process finds its credentials: a PKI directory in the layout
// above, and/or single files that override its entries.
struct Credentials {
  std::string pki_dir;
  std::string ca_file, cert_file, key_file;
  bool insecure = false;  // plaintext, no authentication (labs only)
};
// The files to load: the collector's (agent_name empty) or that agent's.
// Error when something is missing and insecure is not set.
Result<wire::TlsFiles> resolve(const Credentials& c, const std::string& agent_name = "");
// Files for an agent's tls_client_context.
wire::TlsFiles agent_files(const std::filesystem::path& dir, const std::string& name);

}  // namespace trawl::pki
