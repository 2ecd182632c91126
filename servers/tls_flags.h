// The bundled tools' TLS flags (docs/TLS.md), in one place so every
// server and client spells and checks them alike.
//   servers: --tls-cert F --tls-key F  (both: TLS on; TCP only)
//            --tls-client-ca F         (mutual TLS: clients need a certificate from F)
//            --tls-sni NAMES           (refuse SNI naming another host)
//   clients: --tls                     (TLS on; the server is verified by default)
//            --tls-ca F                (trust F instead of the system store)
//            --tls-insecure            (skip verification: tests only)
//            --tls-server-name NAME    (SNI and the name checked; default: --host)
//            --tls-cert/--tls-key      (a client certificate, for mutual TLS)
//   both:    --tls-alpn LIST, --tls-min-version 1.2|1.3, --tls-ciphers,
//            --tls-ciphersuites, --tls-no-resumption,
//            --tls-handshake-timeout-ms MS (default 10000)
//
// Thread rules: main thread only (command-line parsing).
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "core/tls_context.h"

namespace sluice::servers {

struct TlsFlags {
  bool client = false;
  bool on = false;  // clients: --tls
  std::string alpn;
  std::string server_names;  // servers: --tls-sni
  bool no_resumption = false;
  int64_t handshake_timeout_ms = 10000;
  TlsOptions options;
};

// Adds the flags, grouped under "TLS" in --help: the server's set, or
// the client's.
void add_tls_server_flags(CLI::App& app, TlsFlags& flags);
void add_tls_client_flags(CLI::App& app, TlsFlags& flags);

// After parsing: whether TLS is on (a server: --tls-cert given; a client:
// --tls), and "" or what is wrong in *error (for stderr and exit 2).
bool tls_enabled(const TlsFlags& flags, std::string* error);

// The options the flags describe (call only when tls_enabled()).
TlsOptions tls_options(const TlsFlags& flags);

// A client context from the flags (null and *error when unusable).
std::shared_ptr<const TlsContext> tls_client_context(const TlsFlags& flags, std::string* error);

}  // namespace sluice::servers
