// TLS configuration: options (what the --tls-* flags set) and the
// OpenSSL SSL_CTX built from them, checked once at start so that a bad
// certificate, key or cipher string fails Server::start() / Client set-up
// with a message instead of failing every handshake later.
//
// One TlsContext is shared by every loop of a server (or by a client's
// connections): OpenSSL's SSL_CTX is safe to use from many threads for
// SSL_new() and its session cache; nothing here changes it after make_*().
//
// Thread rules: make_server()/make_client() on any one thread; the made
// context is then immutable apart from OpenSSL's internally locked session
// cache and the client's remembered session (locked here), so any thread
// may use it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

namespace sluice {

struct TlsOptions {
  // Server: its certificate chain and private key (PEM files; required).
  // Client: a certificate and key to present for mutual TLS (optional).
  std::string cert_file{};
  std::string key_file{};
  // Server: CA certificates (PEM) that client certificates must chain to;
  // set, clients must present one (mutual TLS). Client: CA certificates to
  // verify the server with; empty: the system's default trust store.
  std::string ca_file{};
  // Client: verify the server's certificate and name (off: --tls-insecure).
  bool verify_peer = true;
  // Client: the name sent as SNI and checked against the certificate
  // (an IP address is checked as one and sends no SNI); empty: the host.
  std::string server_name{};
  // Server: the names it answers to. A client whose SNI names none of them
  // is refused with an unrecognized_name alert (RFC 6066 section 3) and
  // counted as a failed handshake; "*.example.com" matches one label. A
  // client that sends no SNI (one that connects by address) is served.
  // Empty: any name.
  std::vector<std::string> server_names{};
  // ALPN protocols in preference order ("h2,http/1.1" style when parsed
  // from a flag). Server: a client that offers none of them is refused.
  std::vector<std::string> alpn{};
  // Session resumption (server: tickets and a session cache; client:
  // offer the last session of this context on the next connection).
  bool resumption = true;
  // Lowest protocol version: "1.2" or "1.3" (1.3 is always preferred).
  std::string min_version = "1.2";
  // TLS 1.2 cipher list (OpenSSL syntax); empty: kDefaultCiphers.
  std::string ciphers{};
  // TLS 1.3 suites; empty: OpenSSL's default (AES-GCM, ChaCha20).
  std::string ciphersuites{};
  // A handshake not done by then is cut off (TLS slowloris).
  std::chrono::milliseconds handshake_timeout{10000};
};

// Forward secrecy and AEAD only: ECDHE with AES-GCM or ChaCha20-Poly1305
// (Mozilla's "intermediate" TLS 1.2 list, less DHE).
inline constexpr const char* kDefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Handshakes of a server's connections (Server::tls_stats()).
struct TlsStats {
  uint64_t handshakes = 0;  // completed
  uint64_t resumed = 0;     // of those, resumed sessions
  uint64_t failed = 0;      // refused: bad input, verification, no shared cipher ...
  uint64_t timed_out = 0;   // not done within handshake_timeout
  // Of the established connections: the peer's stream ended with a TCP FIN
  // and no close_notify (Connection::tls_truncated()).
  uint64_t truncated = 0;
};

// How one connection's handshake ended (Connection::Owner::tls_done), and
// kTruncated, reported later for an established connection whose peer
// ended its stream without close_notify.
enum class TlsEvent : uint8_t { kDone, kResumed, kFailed, kTimedOut, kTruncated };

class TlsContext {
 public:
  // nullptr and *error set when the options are unusable.
  static std::unique_ptr<TlsContext> make_server(const TlsOptions& options,
                                                 std::string* error);
  static std::unique_ptr<TlsContext> make_client(const TlsOptions& options,
                                                 std::string* error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  bool is_server() const { return server_; }
  const TlsOptions& options() const { return options_; }
  SSL_CTX* ctx() const { return ctx_; }

  // A new SSL object for one connection: server or client end, with the
  // client's name checks for `host` (options().server_name wins) and the
  // remembered session offered. nullptr (and *error) on failure.
  SSL* new_ssl(const std::string& host, std::string* error) const;
  // Client: remember a session for resumption (takes a reference), for
  // the name it was made with: it is offered only to that name again (a
  // resumed session skips the certificate and name checks).
  void remember(SSL_SESSION* session, const std::string& name) const;

 private:
  TlsContext(SSL_CTX* ctx, bool server, TlsOptions options);

  SSL_CTX* ctx_;
  bool server_;
  TlsOptions options_;
  std::vector<unsigned char> alpn_wire_;  // ALPN in wire format
  mutable std::mutex session_mu_;
  mutable SSL_SESSION* session_ = nullptr;  // client: the last new session
  mutable std::string session_name_;         // ... and the name it was made for
};

// Whether an SNI `name` is one of `names` (ASCII case-insensitive; a
// "*.example.com" entry matches exactly one leftmost label).
bool server_name_matches(const std::vector<std::string>& names, const std::string& name);

// "h2,http/1.1" -> {"h2", "http/1.1"}; empty entries are dropped.
std::vector<std::string> split_alpn(const std::string& list);

// The OpenSSL error queue of this thread, oldest first, as one line; clears
// it. `fallback` when empty.
std::string tls_error_string(const char* fallback);

}  // namespace sluice
