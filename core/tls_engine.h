// TlsEngine: one TLS session (an OpenSSL SSL object) that never touches a
// socket. Ciphertext goes in as a view, plaintext comes out into the
// caller's array; plaintext goes in, ciphertext is appended to a Buffer.
// So the same engine serves a Connection on every IO back end (the back
// end moves ciphertext as it moves any bytes), and two engines can be
// wired to each other in memory for tests.
//
// The BIO: OpenSSL's memory BIO (BIO_s_mem) copies every byte once more
// and keeps its grown buffer for the connection's life. This engine's BIO
// is a memory BIO over the caller's storage instead: reads come straight
// from the view the back end handed to on_input (valid during the call),
// writes go straight into the connection's output Buffer. What the record
// layer has not finished (a partial record) OpenSSL keeps in its own read
// buffer, which SSL_MODE_RELEASE_BUFFERS frees once idle. An idle
// connection therefore holds only the SSL object and its session
// (docs/TLS.md, "Memory").
//
// kTLS would plug in here: after the handshake, hand the traffic keys to
// the socket (setsockopt TCP_ULP "tls") and let the back end move
// plaintext; this kernel has no tls module, so it is not built.
//
// Thread rules: one thread at a time (a connection's loop thread); the
// engine holds no locks and OpenSSL's per-thread error queue is cleared
// before each call.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "base/buffer.h"
#include "core/tls_context.h"

namespace sluice {

class TlsEngine {
 public:
  enum class Status : uint8_t {
    kNeedInput,  // everything given was consumed; more ciphertext needed
    kMore,       // progress (the handshake ended, or `cap` plaintext filled): call again
    kClosed,     // the peer sent close_notify: no more plaintext will come
    kError,      // fatal (error() says why); an alert may be in `out`
  };

  // A server or client end per `context`; `host` is what a client checks
  // the certificate against (see TlsContext::new_ssl). nullptr and *error
  // on failure.
  static std::unique_ptr<TlsEngine> make(const TlsContext& context, const std::string& host,
                                         std::string* error);
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // Client: the first flight (ClientHello) into `out`. Server: nothing.
  Status start(Buffer& out);
  // Consumes `*in` (ciphertext; shortened to what is left, which is empty
  // unless kClosed or kError), advances the handshake, and writes up to
  // `cap` bytes of plaintext into `plain` (*n). Whatever the TLS layer
  // must send meanwhile (handshake flights, alerts, ticket, key-update
  // answers) is appended to `out`. Call again while it returns kMore.
  Status read(std::string_view* in, Buffer& out, char* plain, size_t cap, size_t* n);
  // Encrypts `plain` (after the handshake) into records appended to `out`.
  // False on a fatal error.
  bool write(std::string_view plain, Buffer& out);
  // Appends close_notify to `out` (once). False if it could not.
  bool close_notify(Buffer& out);

  bool handshake_done() const { return done_; }
  bool resumed() const;
  std::string alpn() const;     // the negotiated protocol, or ""
  std::string version() const;  // "TLSv1.3" ...
  std::string cipher() const;
  const std::string& error() const { return error_; }

 private:
  explicit TlsEngine(SSL* ssl);
  Status run(Buffer& out, char* plain, size_t cap, size_t* n);
  Status status_of(int rc);
  friend struct TlsBio;

  SSL* ssl_;
  // Valid only during read()/write()/close_notify(): what the BIO reads
  // from and appends to.
  std::string_view* in_ = nullptr;
  Buffer* out_ = nullptr;
  bool done_ = false;
  std::string error_;
};

}  // namespace sluice
