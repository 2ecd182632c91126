#include "core/tls_context.h"

#include <arpa/inet.h>

#include <cstring>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace sluice {

namespace {

int version_of(const std::string& v) {
  if (v == "1.2") return TLS1_2_VERSION;
  if (v == "1.3") return TLS1_3_VERSION;
  return 0;
}

bool fail(std::string* error, const std::string& what) {
  if (error) *error = what + ": " + tls_error_string("failed");
  return false;
}

// Settings both ends share: versions, ciphers, buffers.
bool configure_common(SSL_CTX* ctx, const TlsOptions& o, std::string* error) {
  const int min = version_of(o.min_version);
  if (min == 0) {
    if (error) *error = "tls: min version must be 1.2 or 1.3, not '" + o.min_version + "'";
    return false;
  }
  if (SSL_CTX_set_min_proto_version(ctx, min) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return fail(error, "tls: protocol versions");
  }
  // No compression (CRIME), no renegotiation (a peer-driven CPU sink and a
  // handshake outside the loop's accounting).
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  // An idle connection keeps no record buffers (docs/TLS.md, "Memory").
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  const std::string& ciphers = o.ciphers.empty() ? std::string(kDefaultCiphers) : o.ciphers;
  if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    return fail(error, "tls: cipher list '" + ciphers + "'");
  }
  if (!o.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, o.ciphersuites.c_str()) != 1) {
    return fail(error, "tls: TLS 1.3 cipher suites '" + o.ciphersuites + "'");
  }
  if (o.handshake_timeout.count() <= 0) {
    if (error) *error = "tls: the handshake timeout must be positive";
    return false;
  }
  return true;
}

bool load_identity(SSL_CTX* ctx, const TlsOptions& o, std::string* error) {
  if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1) {
    return fail(error, "tls: certificate '" + o.cert_file + "'");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail(error, "tls: private key '" + o.key_file + "'");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return fail(error, "tls: key '" + o.key_file + "' does not match '" + o.cert_file + "'");
  }
  return true;
}

std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protos,
                                     std::string* error) {
  std::vector<unsigned char> wire;
  for (const std::string& p : protos) {
    if (p.empty() || p.size() > 255) {
      if (error) *error = "tls: ALPN protocol names are 1 to 255 bytes";
      return {};
    }
    wire.push_back(static_cast<unsigned char>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}

// Server: the first of our protocols the client offers; none shared is a
// handshake failure (RFC 7301: no_application_protocol alert).
int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                const unsigned char* in, unsigned int inlen, void* arg) {
  (void)ssl;
  const auto* ours = static_cast<const std::vector<unsigned char>*>(arg);
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, ours->data(),
                            static_cast<unsigned>(ours->size()), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

// Server: RFC 6066 section 3, a name we do not serve is refused with a
// fatal unrecognized_name alert rather than answered with a certificate
// for another name. No SNI at all is allowed (clients that connect by
// address send none).
int check_server_name(SSL* ssl, int* alert, void* arg) {
  const auto* names = static_cast<const std::vector<std::string>*>(arg);
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!sni || server_name_matches(*names, sni)) return SSL_TLSEXT_ERR_OK;
  // Peers choose the name: it is cut to a printable prefix for the log.
  std::string shown;
  for (const char* p = sni; *p && shown.size() < 64; ++p) {
    shown += (*p >= 0x20 && *p < 0x7f) ? *p : '?';
  }
  ERR_raise_data(ERR_LIB_SSL, SSL_R_CALLBACK_FAILED, "unrecognized server name '%s'",
                 shown.c_str());
  *alert = SSL_AD_UNRECOGNIZED_NAME;
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// Client: OpenSSL hands every new session here (TLS 1.3 tickets arrive
// after the handshake, so SSL_get1_session() at handshake end would miss
// them).
int on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!self) return 0;
  // The name this connection checked (see new_ssl): a host or an address.
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  std::string name;
  // get1_ip_asc() queues an error when no address is set (verification
  // off): left on this thread's queue, it would make SSL_get_error() call
  // the SSL_read() that brought the ticket a fatal error.
  ERR_set_mark();
  if (const char* host = X509_VERIFY_PARAM_get0_host(param, 0)) {
    name = host;
  } else if (char* ip = X509_VERIFY_PARAM_get1_ip_asc(param)) {
    name = ip;
    OPENSSL_free(ip);
  }
  ERR_pop_to_mark();
  self->remember(session, name);
  return 0;  // not kept by us: remember() took its own reference
}

}  // namespace

std::string tls_error_string(const char* fallback) {
  std::string out;
  unsigned long e;
  const char* data = nullptr;
  int flags = 0;
  while ((e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
    // What the code that raised it added (ERR_raise_data), e.g. the name.
    if ((flags & ERR_TXT_STRING) && data && *data) {
      out += " (";
      out += data;
      out += ")";
    }
  }
  return out.empty() ? fallback : out;
}

bool server_name_matches(const std::vector<std::string>& names, const std::string& name) {
  auto lower = [](std::string s) {
    for (char& c : s) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return s;
  };
  std::string n = lower(name);
  if (!n.empty() && n.back() == '.') n.pop_back();  // "example.com." is the same name
  for (const std::string& entry : names) {
    const std::string e = lower(entry);
    if (e == n) return true;
    // "*.example.com": one label, non-empty, before ".example.com".
    if (e.size() > 2 && e.compare(0, 2, "*.") == 0 && n.size() > e.size() - 1) {
      const std::string suffix = e.substr(1);
      const size_t label = n.size() - suffix.size();
      if (n.compare(label, std::string::npos, suffix) == 0 &&
          n.find('.') == label) {
        return true;
      }
    }
  }
  return false;
}

std::vector<std::string> split_alpn(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

TlsContext::TlsContext(SSL_CTX* ctx, bool server, TlsOptions options)
    : ctx_(ctx), server_(server), options_(std::move(options)) {}

TlsContext::~TlsContext() {
  if (session_) SSL_SESSION_free(session_);
  SSL_CTX_free(ctx_);
}

std::unique_ptr<TlsContext> TlsContext::make_server(const TlsOptions& o, std::string* error) {
  ERR_clear_error();
  if (o.cert_file.empty() || o.key_file.empty()) {
    if (error) *error = "tls: a server needs a certificate and a key";
    return nullptr;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    fail(error, "tls: SSL_CTX_new");
    return nullptr;
  }
  std::unique_ptr<TlsContext> self(new TlsContext(ctx, true, o));
  if (!configure_common(ctx, o, error) || !load_identity(ctx, o, error)) return nullptr;
  if (!o.ca_file.empty()) {
    // Mutual TLS: a client without a certificate that chains to ca_file
    // fails the handshake.
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      fail(error, "tls: client CA '" + o.ca_file + "'");
      return nullptr;
    }
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (o.resumption) {
    // Tickets (stateless; OpenSSL's per-context key) and, for TLS 1.2
    // clients without ticket support, the internal session-id cache. The
    // id context lets sessions resume when client certificates are asked
    // for too.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    static const unsigned char kIdContext[] = "sluice";
    SSL_CTX_set_session_id_context(ctx, kIdContext, sizeof kIdContext - 1);
    SSL_CTX_set_num_tickets(ctx, 1);  // TLS 1.3: one ticket per handshake is enough to resume
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
  }
  if (!o.alpn.empty()) {
    self->alpn_wire_ = alpn_wire(o.alpn, error);
    if (self->alpn_wire_.empty()) return nullptr;
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, &self->alpn_wire_);
  }
  for (const std::string& name : o.server_names) {
    if (name.empty() || name.size() > 253 || name == "*." ||
        name.find('*', name.compare(0, 2, "*.") == 0 ? 1 : 0) != std::string::npos) {
      if (error) *error = "tls: server name '" + name + "' is not a host name or *.domain";
      return nullptr;
    }
  }
  if (!o.server_names.empty()) {
    SSL_CTX_set_tlsext_servername_callback(ctx, check_server_name);
    SSL_CTX_set_tlsext_servername_arg(ctx, &self->options_.server_names);
  }
  return self;
}

std::unique_ptr<TlsContext> TlsContext::make_client(const TlsOptions& o, std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    fail(error, "tls: SSL_CTX_new");
    return nullptr;
  }
  std::unique_ptr<TlsContext> self(new TlsContext(ctx, false, o));
  if (!configure_common(ctx, o, error)) return nullptr;
  if (!o.cert_file.empty() || !o.key_file.empty()) {
    if (!load_identity(ctx, o, error)) return nullptr;
  }
  if (o.verify_peer) {
    const int rc = o.ca_file.empty()
                       ? SSL_CTX_set_default_verify_paths(ctx)
                       : SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr);
    if (rc != 1) {
      fail(error, "tls: CA '" + (o.ca_file.empty() ? std::string("(system)") : o.ca_file) + "'");
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!o.alpn.empty()) {
    self->alpn_wire_ = alpn_wire(o.alpn, error);
    if (self->alpn_wire_.empty()) return nullptr;
    // SSL_CTX_set_alpn_protos returns 0 on success.
    if (SSL_CTX_set_alpn_protos(ctx, self->alpn_wire_.data(),
                                static_cast<unsigned>(self->alpn_wire_.size())) != 0) {
      fail(error, "tls: ALPN");
      return nullptr;
    }
  }
  if (o.resumption) {
    SSL_CTX_set_app_data(ctx, self.get());
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  } else {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  return self;
}

void TlsContext::remember(SSL_SESSION* session, const std::string& name) const {
  if (!SSL_SESSION_is_resumable(session)) return;
  SSL_SESSION_up_ref(session);
  std::lock_guard lock(session_mu_);
  if (session_) SSL_SESSION_free(session_);
  session_ = session;
  session_name_ = name;
}

SSL* TlsContext::new_ssl(const std::string& host, std::string* error) const {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) {
    fail(error, "tls: SSL_new");
    return nullptr;
  }
  if (server_) {
    SSL_set_accept_state(ssl);
    return ssl;
  }
  SSL_set_connect_state(ssl);
  const std::string& name = options_.server_name.empty() ? host : options_.server_name;
  in6_addr ip;
  const bool is_ip = ::inet_pton(AF_INET, name.c_str(), &ip) == 1 ||
                     ::inet_pton(AF_INET6, name.c_str(), &ip) == 1;
  bool ok = true;
  if (!is_ip && !name.empty()) ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
  if (ok && options_.verify_peer && !name.empty()) {
    // The certificate must name this host (or address): a valid chain
    // for another name is a failed handshake.
    ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1
               : SSL_set1_host(ssl, name.c_str()) == 1;
  }
  if (!ok) {
    fail(error, "tls: server name '" + name + "'");
    SSL_free(ssl);
    return nullptr;
  }
  if (options_.resumption) {
    // Only to the name it was made with ("" unverified: only unverified).
    const std::string checked = options_.verify_peer ? name : std::string();
    std::lock_guard lock(session_mu_);
    if (session_ && session_name_ == checked) SSL_set_session(ssl, session_);
  }
  return ssl;
}

}  // namespace sluice
