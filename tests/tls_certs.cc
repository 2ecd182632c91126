#include "tests/tls_certs.h"

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace sluice::testing {
namespace {

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("tls_certs: ") + what);
}

Key new_key() {
  Key k(EVP_EC_gen("P-256"), EVP_PKEY_free);
  check(k != nullptr, "EVP_EC_gen");
  return k;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` named `cn`, signed by issuer (self-signed when
// null), valid from now+from_s to now+to_s.
Cert make_cert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, bool ca,
               long from_s, long to_s, long serial) {
  Cert c(X509_new(), X509_free);
  X509_set_version(c.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), from_s);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), to_s);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509* iss = issuer ? issuer : c.get();
  X509_set_issuer_name(c.get(), X509_get_subject_name(iss));
  if (ca) {
    add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(c.get(), iss, NID_basic_constraints, "CA:FALSE");
    add_ext(c.get(), iss, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    add_ext(c.get(), iss, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  check(X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
  return c;
}

void write_cert(const std::string& path, X509* c) {
  FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "fopen");
  PEM_write_X509(f, c);
  std::fclose(f);
}

void write_key(const std::string& path, EVP_PKEY* k) {
  FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "fopen");
  PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

TlsFiles make_files() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/tlsXXXXXX";
  check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
  TlsFiles f;
  f.dir = tmpl;
  constexpr long kDay = 86400;
  Key ca_key = new_key();
  Cert ca = make_cert(ca_key.get(), "sluice test CA", nullptr, nullptr, true, -kDay, 30 * kDay, 1);
  Key rogue_ca_key = new_key();
  Cert rogue_ca =
      make_cert(rogue_ca_key.get(), "rogue CA", nullptr, nullptr, true, -kDay, 30 * kDay, 2);
  f.ca = f.dir + "/ca.pem";
  write_cert(f.ca, ca.get());
  f.rogue_ca = f.dir + "/rogue_ca.pem";
  write_cert(f.rogue_ca, rogue_ca.get());
  struct Leaf {
    std::string* cert;
    std::string* key;
    const char* name;
    X509* issuer;
    EVP_PKEY* issuer_key;
    long from, to;
  };
  const Leaf leaves[] = {
      {&f.cert, &f.key, "server", ca.get(), ca_key.get(), -3600, kDay},
      {&f.expired_cert, &f.expired_key, "expired", ca.get(), ca_key.get(), -2 * kDay, -kDay},
      {&f.client_cert, &f.client_key, "client", ca.get(), ca_key.get(), -3600, kDay},
      {&f.rogue_cert, &f.rogue_key, "rogue", rogue_ca.get(), rogue_ca_key.get(), -3600, kDay},
  };
  long serial = 10;
  for (const Leaf& l : leaves) {
    Key k = new_key();
    Cert c = make_cert(k.get(), "localhost", l.issuer, l.issuer_key, false, l.from, l.to,
                       serial++);
    *l.cert = f.dir + "/" + l.name + ".pem";
    *l.key = f.dir + "/" + l.name + ".key";
    write_cert(*l.cert, c.get());
    write_key(*l.key, k.get());
  }
  return f;
}

}  // namespace

const TlsFiles& tls_files() {
  static const TlsFiles files = make_files();
  return files;
}

}  // namespace sluice::testing
