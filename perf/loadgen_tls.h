// loadgen's TLS (--tls, TCP only): OpenSSL straight over each nonblocking
// socket (SSL_set_fd), not sluice's TLS layer, so the instrument stays
// independent of what it measures (see loadgen.cc). The flags are spelled
// like the tools' client set (servers/tls_flags.h): --tls, --tls-ca,
// --tls-insecure, --tls-server-name; the server is verified by default
// (its certificate must chain to --tls-ca, or the system store, and name
// --tls-server-name, default --host).
//
// One SSL_CTX per worker thread, made on the main thread before the
// workers start (each then used by its worker only: no contention on
// OpenSSL's certificate store between the instrument's threads).
// Sessions are not resumed: every connection makes a full handshake, once,
// before the measured window.
//
// Thread rules: tls_context() on the main thread; the rest on the worker
// thread that owns the connection.
#ifndef SLUICE_PERF_LOADGEN_TLS_H_
#define SLUICE_PERF_LOADGEN_TLS_H_

#include <sys/types.h>

#include <string>

#include <CLI/CLI.hpp>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace sluice::perf::loadgen {

struct TlsFlags {
  bool on = false;
  std::string ca;           // empty: the system's trust store
  bool insecure = false;    // no verification (tests only)
  std::string server_name;  // SNI and the name checked; empty: --host
};

void add_tls_flags(CLI::App& app, TlsFlags& flags);

// The client context the flags describe, or null and *error (a missing CA
// file, --tls-* without --tls). Null and no error when TLS is off.
SSL_CTX* tls_context(const TlsFlags& flags, std::string* error);
void tls_context_free(SSL_CTX* ctx);  // null: nothing

// A client SSL on the connected socket fd, checking `name`; null on failure.
SSL* tls_new(SSL_CTX* ctx, int fd, const std::string& name);
void tls_free(SSL* ssl);

// One handshake step.
enum class TlsStep { kDone, kWantRead, kWantWrite, kFailed };
// On kFailed, *why says why (OpenSSL's reason, the verification result).
TlsStep tls_handshake(SSL* ssl, std::string* why);

// Like send()/recv() on the socket: bytes moved (> 0), 0 for the peer's
// close (read only), -1 with errno EAGAIN when the socket must become
// writable (write) or readable (read) first, or -1 with another errno.
ssize_t tls_write(SSL* ssl, const char* data, size_t len);
ssize_t tls_read(SSL* ssl, char* data, size_t len);
// Decrypted or undecrypted bytes OpenSSL holds that the socket no longer
// shows (read-ahead): the reader must not wait for epoll before them.
bool tls_has_pending(SSL* ssl);

}  // namespace sluice::perf::loadgen

#endif  // SLUICE_PERF_LOADGEN_TLS_H_
