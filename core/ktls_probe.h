// Whether this kernel offers kTLS (the "tls" TCP upper-layer protocol),
// found at run time: setsockopt(TCP_ULP, "tls") on a connected loopback
// socket, the step every kTLS user takes first. Linux answers ENOENT when
// CONFIG_TLS is off or the module cannot be loaded.
//
// sluice's TLS runs in user space on every kernel (docs/TLS.md, "kTLS");
// the probe is what the server reports at start, so an operator sees why
// records are not offloaded, and what a future offload would key on.
//
// Thread rules: any thread; the probe runs once per process (a function
// local static) and costs three sockets.
#pragma once

#include <string>

namespace sluice {

struct KtlsProbe {
  bool available = false;
  std::string detail;  // "tls ULP accepted", or why not ("... ENOENT ...")
};

const KtlsProbe& ktls_probe();

}  // namespace sluice
