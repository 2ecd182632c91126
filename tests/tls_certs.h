// Certificates for the TLS tests, made at run time with OpenSSL's API (no
// key is ever committed): a CA, a server certificate for localhost and
// 127.0.0.1 signed by it, an expired one, a client certificate for mutual
// TLS, and a client certificate from another CA that the server must
// refuse. EC P-256 keys: fast to make. Test code only.
//
// Thread rules: tls_files() may be called from any thread (made once).
#pragma once

#include <string>

namespace sluice::testing {

struct TlsFiles {
  std::string dir;
  std::string ca;                        // the CA certificate (trust anchor)
  std::string cert, key;                 // server: localhost, 127.0.0.1, valid now
  std::string expired_cert, expired_key; // server: same names, expired a day ago
  std::string client_cert, client_key;   // signed by `ca`
  std::string rogue_cert, rogue_key;     // signed by another CA
  std::string rogue_ca;                  // that other CA's certificate
};

// Made once per process, in $TEST_TMPDIR (or /tmp) under a fresh directory.
const TlsFiles& tls_files();

}  // namespace sluice::testing
