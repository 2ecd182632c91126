#include "servers/tls_flags.h"

#include <chrono>

namespace sluice::servers {

namespace {

void add_common(CLI::App& app, TlsFlags& f, const std::string& g) {
  app.add_option("--tls-alpn", f.alpn,
                 "ALPN protocols, comma-separated, in preference order (a server refuses a "
                 "client that offers none of them)")
      ->group(g);
  app.add_option("--tls-min-version", f.options.min_version,
                 "Lowest TLS version: 1.2 or 1.3 (1.3 is always preferred)")
      ->group(g)
      ->check(CLI::IsMember({"1.2", "1.3"}))
      ->capture_default_str();
  app.add_option("--tls-ciphers", f.options.ciphers,
                 "TLS 1.2 cipher list, OpenSSL syntax (default: ECDHE with AES-GCM or "
                 "ChaCha20-Poly1305 only)")
      ->group(g);
  app.add_option("--tls-ciphersuites", f.options.ciphersuites,
                 "TLS 1.3 suites, OpenSSL syntax (default: OpenSSL's)")
      ->group(g);
  app.add_flag("--tls-no-resumption", f.no_resumption,
               "No session resumption (tickets and the session cache are on by default)")
      ->group(g);
  app.add_option("--tls-handshake-timeout-ms", f.handshake_timeout_ms,
                 "Cut off a TLS handshake not done within this long")
      ->group(g)
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

}  // namespace

void add_tls_server_flags(CLI::App& app, TlsFlags& f) {
  const std::string g = "TLS";
  f.client = false;
  app.add_option("--tls-cert", f.options.cert_file,
                 "Certificate chain (PEM): serve TLS (with --tls-key; TCP only)")
      ->group(g);
  app.add_option("--tls-key", f.options.key_file, "Private key (PEM) for --tls-cert")->group(g);
  app.add_option("--tls-client-ca", f.options.ca_file,
                 "Mutual TLS: clients must present a certificate from this CA file (PEM)")
      ->group(g);
  app.add_option("--tls-sni", f.server_names,
                 "Host names served, comma-separated (*.domain allowed): a client whose SNI "
                 "names another is refused with unrecognized_name (default: any)")
      ->group(g);
  add_common(app, f, g);
}

void add_tls_client_flags(CLI::App& app, TlsFlags& f) {
  const std::string g = "TLS";
  f.client = true;
  app.add_flag("--tls", f.on, "Connect with TLS (the server's certificate is verified)")
      ->group(g);
  app.add_option("--tls-ca", f.options.ca_file,
                 "CA file (PEM) to verify the server with (default: the system's)")
      ->group(g);
  app.add_flag("--tls-insecure", [&f](int64_t) { f.options.verify_peer = false; },
               "Do not verify the server's certificate (tests only)")
      ->group(g);
  app.add_option("--tls-server-name", f.options.server_name,
                 "SNI and the name the certificate must carry (default: --host)")
      ->group(g);
  app.add_option("--tls-cert", f.options.cert_file, "Client certificate (PEM), for mutual TLS")
      ->group(g);
  app.add_option("--tls-key", f.options.key_file, "Private key (PEM) for --tls-cert")->group(g);
  add_common(app, f, g);
}

bool tls_enabled(const TlsFlags& f, std::string* error) {
  error->clear();
  if (f.client) {
    if (!f.on && (!f.options.ca_file.empty() || !f.options.cert_file.empty() ||
                  !f.options.server_name.empty() || !f.options.verify_peer)) {
      *error = "--tls-* options need --tls";
    }
    if (f.options.cert_file.empty() != f.options.key_file.empty()) {
      *error = "--tls-cert and --tls-key go together";
    }
    return f.on && error->empty();
  }
  if (f.options.cert_file.empty() != f.options.key_file.empty()) {
    *error = "--tls-cert and --tls-key go together";
    return false;
  }
  if (f.options.cert_file.empty() && !f.options.ca_file.empty()) {
    *error = "--tls-client-ca needs --tls-cert and --tls-key";
    return false;
  }
  return !f.options.cert_file.empty();
}

TlsOptions tls_options(const TlsFlags& f) {
  TlsOptions o = f.options;
  o.alpn = split_alpn(f.alpn);
  o.server_names = split_alpn(f.server_names);  // the same comma list
  o.resumption = !f.no_resumption;
  o.handshake_timeout = std::chrono::milliseconds(f.handshake_timeout_ms);
  return o;
}

std::shared_ptr<const TlsContext> tls_client_context(const TlsFlags& f, std::string* error) {
  return TlsContext::make_client(tls_options(f), error);
}

}  // namespace sluice::servers
