#include "core/tls_engine.h"

#include <algorithm>
#include <cstring>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace sluice {

// The BIO over the engine's current view and output Buffer (see the
// header). One BIO serves as both read and write BIO.
struct TlsBio {
  static TlsEngine* engine(BIO* b) { return static_cast<TlsEngine*>(BIO_get_data(b)); }

  static int read(BIO* b, char* out, int len) {
    BIO_clear_retry_flags(b);
    TlsEngine* e = engine(b);
    if (!e || !e->in_ || e->in_->empty() || len <= 0) {
      // "Nothing yet", never EOF: the connection reports the peer's EOF
      // itself, so OpenSSL turns a missing record into WANT_READ.
      BIO_set_retry_read(b);
      return -1;
    }
    const size_t n = std::min(e->in_->size(), static_cast<size_t>(len));
    std::memcpy(out, e->in_->data(), n);
    e->in_->remove_prefix(n);
    return static_cast<int>(n);
  }

  static int write(BIO* b, const char* in, int len) {
    BIO_clear_retry_flags(b);
    TlsEngine* e = engine(b);
    if (!e || !e->out_) {  // outside read()/write(): nothing may be sent now
      BIO_set_retry_write(b);
      return -1;
    }
    e->out_->append(in, static_cast<size_t>(len));
    return len;
  }

  static long ctrl(BIO* b, int cmd, long num, void* ptr) {
    (void)num;
    (void)ptr;
    switch (cmd) {
      case BIO_CTRL_FLUSH:
      case BIO_CTRL_DUP:
        return 1;
      case BIO_CTRL_PENDING: {
        TlsEngine* e = engine(b);
        return e && e->in_ ? static_cast<long>(e->in_->size()) : 0;
      }
      default:
        return 0;
    }
  }

  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }

  static BIO_METHOD* method() {
    // Made once per process, never freed (OpenSSL keeps using it).
    static BIO_METHOD* m = [] {
      BIO_METHOD* meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice");
      BIO_meth_set_read(meth, read);
      BIO_meth_set_write(meth, write);
      BIO_meth_set_ctrl(meth, ctrl);
      BIO_meth_set_create(meth, create);
      return meth;
    }();
    return m;
  }
};

std::unique_ptr<TlsEngine> TlsEngine::make(const TlsContext& context, const std::string& host,
                                           std::string* error) {
  SSL* ssl = context.new_ssl(host, error);
  if (!ssl) return nullptr;
  BIO* bio = BIO_new(TlsBio::method());
  if (!bio) {
    SSL_free(ssl);
    if (error) *error = "tls: " + tls_error_string("BIO_new failed");
    return nullptr;
  }
  std::unique_ptr<TlsEngine> e(new TlsEngine(ssl));
  BIO_set_data(bio, e.get());
  SSL_set_bio(ssl, bio, bio);  // one reference, owned by the SSL
  return e;
}

TlsEngine::TlsEngine(SSL* ssl) : ssl_(ssl) {}

TlsEngine::~TlsEngine() { SSL_free(ssl_); }

TlsEngine::Status TlsEngine::start(Buffer& out) {
  if (SSL_is_server(ssl_)) return Status::kNeedInput;
  std::string_view none;
  size_t n = 0;
  return read(&none, out, nullptr, 0, &n);
}

TlsEngine::Status TlsEngine::read(std::string_view* in, Buffer& out, char* plain, size_t cap,
                                  size_t* n) {
  in_ = in;
  out_ = &out;
  *n = 0;
  const Status s = run(out, plain, cap, n);
  in_ = nullptr;
  out_ = nullptr;
  return s;
}

TlsEngine::Status TlsEngine::run(Buffer& out, char* plain, size_t cap, size_t* n) {
  (void)out;
  ERR_clear_error();
  if (!done_) {
    const int rc = SSL_do_handshake(ssl_);
    if (rc != 1) return status_of(rc);
    done_ = true;
    return Status::kMore;  // the caller sees the handshake end before any plaintext
  }
  while (*n < cap) {
    size_t got = 0;
    const int rc = SSL_read_ex(ssl_, plain + *n, cap - *n, &got);
    if (rc != 1) return status_of(rc);
    *n += got;
  }
  return Status::kMore;
}

TlsEngine::Status TlsEngine::status_of(int rc) {
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
      return Status::kNeedInput;
    case SSL_ERROR_ZERO_RETURN:
      return Status::kClosed;
    default:
      break;
  }
  const long verify = SSL_get_verify_result(ssl_);
  std::string queue = tls_error_string("");
  // Blame the certificate only for a handshake that checked it: without
  // verification (--tls-insecure) the result is never X509_V_OK, and
  // after the handshake a failure is about records, not certificates.
  const bool verifying = !done_ && (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0;
  if (verifying && verify != X509_V_OK &&
      (SSL_is_server(ssl_) == 0 || SSL_get0_peer_certificate(ssl_))) {
    error_ = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
  } else {
    error_ = queue.empty() ? "TLS error" : queue;
  }
  return Status::kError;
}

bool TlsEngine::write(std::string_view plain, Buffer& out) {
  if (!done_) return false;
  out_ = &out;
  ERR_clear_error();
  bool ok = true;
  while (!plain.empty()) {
    size_t wrote = 0;
    // The BIO takes everything, so a write is never partial; chunks keep
    // the length in an int for OpenSSL's record layer.
    const size_t chunk = std::min<size_t>(plain.size(), 1 << 30);
    if (SSL_write_ex(ssl_, plain.data(), chunk, &wrote) != 1) {
      status_of(0);
      ok = false;
      break;
    }
    plain.remove_prefix(wrote);
  }
  out_ = nullptr;
  return ok;
}

bool TlsEngine::close_notify(Buffer& out) {
  out_ = &out;
  ERR_clear_error();
  const int rc = SSL_shutdown(ssl_);  // 0: ours sent, the peer's not seen yet
  ERR_clear_error();
  out_ = nullptr;
  return rc >= 0;
}

bool TlsEngine::resumed() const { return SSL_session_reused(ssl_) == 1; }

std::string TlsEngine::alpn() const {
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

std::string TlsEngine::version() const { return SSL_get_version(ssl_); }

std::string TlsEngine::cipher() const {
  const char* c = SSL_get_cipher_name(ssl_);
  return c ? c : "";
}

}  // namespace sluice
