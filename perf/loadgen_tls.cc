#include "perf/loadgen_tls.h"

#include <arpa/inet.h>

#include <cerrno>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace sluice::perf::loadgen {

namespace {

std::string error_queue(const char* fallback) {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? fallback : out;
}

}  // namespace

void add_tls_flags(CLI::App& app, TlsFlags& f) {
  const std::string g = "TLS";
  app.add_flag("--tls", f.on, "TCP over TLS (the server's certificate is verified)")->group(g);
  app.add_option("--tls-ca", f.ca, "CA file (PEM) to verify the server with (default: the system's)")
      ->group(g);
  app.add_flag("--tls-insecure", f.insecure, "Do not verify the server's certificate (tests only)")
      ->group(g);
  app.add_option("--tls-server-name", f.server_name,
                 "SNI and the name the certificate must carry (default: --host)")
      ->group(g);
}

SSL_CTX* tls_context(const TlsFlags& f, std::string* error) {
  error->clear();
  if (!f.on) {
    if (!f.ca.empty() || f.insecure || !f.server_name.empty()) *error = "--tls-* options need --tls";
    return nullptr;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    *error = error_queue("SSL_CTX_new failed");
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Partial writes and a moving buffer: a connection's output string may
  // grow (and move) between a write that would block and its retry.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Whole socket reads, not a header then a body: half the recv() calls.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (f.insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    const int ok = f.ca.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                : SSL_CTX_load_verify_locations(ctx, f.ca.c_str(), nullptr);
    if (ok != 1) {
      *error = "--tls-ca " + f.ca + ": " + error_queue("cannot load");
      SSL_CTX_free(ctx);
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  return ctx;
}

void tls_context_free(SSL_CTX* ctx) { SSL_CTX_free(ctx); }

SSL* tls_new(SSL_CTX* ctx, int fd, const std::string& name) {
  SSL* ssl = SSL_new(ctx);
  if (!ssl) return nullptr;
  in6_addr ip;
  const bool is_ip = ::inet_pton(AF_INET, name.c_str(), &ip) == 1 ||
                     ::inet_pton(AF_INET6, name.c_str(), &ip) == 1;
  bool ok = SSL_set_fd(ssl, fd) == 1;
  if (ok && !is_ip) ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
  if (ok && SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE) {
    ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1
               : SSL_set1_host(ssl, name.c_str()) == 1;
  }
  if (!ok) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

void tls_free(SSL* ssl) { SSL_free(ssl); }

TlsStep tls_handshake(SSL* ssl, std::string* why) {
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl);
  if (rc == 1) return TlsStep::kDone;
  switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      return TlsStep::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return TlsStep::kWantWrite;
    default:
      break;
  }
  const long verify = SSL_get_verify_result(ssl);
  if (SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE && verify != X509_V_OK) {
    *why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    ERR_clear_error();
  } else {
    *why = error_queue(rc == 0 ? "the server closed during the handshake" : "handshake failed");
  }
  return TlsStep::kFailed;
}

ssize_t tls_write(SSL* ssl, const char* data, size_t len) {
  ERR_clear_error();
  size_t n = 0;
  const int rc = SSL_write_ex(ssl, data, len, &n);
  if (rc == 1) return static_cast<ssize_t>(n);
  const int e = SSL_get_error(ssl, rc);
  ERR_clear_error();
  errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPROTO;
  return -1;
}

ssize_t tls_read(SSL* ssl, char* data, size_t len) {
  ERR_clear_error();
  size_t n = 0;
  const int rc = SSL_read_ex(ssl, data, len, &n);
  if (rc == 1) return static_cast<ssize_t>(n);
  const int e = SSL_get_error(ssl, rc);
  ERR_clear_error();
  if (e == SSL_ERROR_ZERO_RETURN) return 0;  // close_notify
  errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPROTO;
  return -1;
}

bool tls_has_pending(SSL* ssl) { return SSL_has_pending(ssl) == 1; }

}  // namespace sluice::perf::loadgen
