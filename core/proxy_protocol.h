// The PROXY protocol (HAProxy's "proxy-protocol.txt", versions 1 and 2):
// a balancer that relays a TCP connection first sends one header naming
// the client it relays for. This is the parser, and nothing else: no
// sockets, no allocation, no state between calls. Connection feeds it
// the bytes received so far (core/connection_proxy.cc); the operator's
// view is in docs/OPERATIONS.md, "PROXY protocol".
//
// Why stateless: a header is at most a few hundred bytes in practice and
// almost always arrives in one read, so re-parsing the prefix on the rare
// split read costs less than the per-connection state an incremental
// parser would keep. A result that needs more bytes consumed nothing.
//
// Version 1 is one text line, "PROXY TCP4|TCP6|UNKNOWN ...\r\n", at most
// 107 bytes. Version 2 is binary: a 12-byte signature, version/command,
// family/transport, a 16-bit length and that many bytes of addresses and
// TLVs. A LOCAL command (a balancer's own health check), UNKNOWN, UNSPEC
// and the families this TCP listener cannot use as a peer (UNIX, UDP) all
// mean "keep the socket's own peer address": ProxyHeader::proxied false.
//
// Thread rules: pure functions of their arguments; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/net.h"

namespace sluice {

// A listener's PROXY protocol mode (ServerOptions::proxy_protocol).
enum class ProxyProtocol : uint8_t {
  kOff,       // no header is expected; the first bytes are the protocol's
  kOptional,  // a header if the first bytes start one; otherwise plain data
  kRequired,  // every connection must start with a header, or it is closed
};
const char* to_string(ProxyProtocol mode);

enum class ProxyStatus : uint8_t {
  kNeedMore,  // a valid prefix so far: call again with more bytes
  kDone,      // a complete header: `consumed` bytes of it
  kError,     // not a (valid) header: `error` says why
};

enum class ProxyError : uint8_t {
  kNone,
  kNotProxy,        // starts with neither "PROXY " nor the v2 signature
  kTooLong,         // longer than the cap (v1: 107 bytes; v2: the caller's)
  kV1Malformed,     // no CRLF, wrong spacing, unknown protocol word
  kV1BadAddress,    // not a strict IPv4/IPv6 literal of the announced family
  kV1BadPort,       // not 1-5 decimal digits in 0..65535
  kV2BadVersion,    // version nibble is not 2
  kV2BadCommand,    // command nibble is neither LOCAL nor PROXY
  kV2BadFamily,     // family/transport byte not one the spec defines
  kV2ShortAddress,  // the length is too short for the announced family
  kV2BadTlv,        // a TLV runs past the header's end
};
const char* to_string(ProxyError error);

struct ProxyHeader {
  uint8_t version = 0;  // 1 or 2
  // The header names the connection's real endpoints. False for LOCAL,
  // UNKNOWN, UNSPEC, UNIX and UDP: use the socket's own addresses.
  bool proxied = false;
  PeerAddr source;       // the client (when proxied)
  PeerAddr destination;  // the address the client connected to (when proxied)
};

struct ProxyParse {
  ProxyStatus status = ProxyStatus::kNeedMore;
  ProxyError error = ProxyError::kNone;
  size_t consumed = 0;  // kDone: the header's length; otherwise 0
  ProxyHeader header;   // kDone only
};

// The most a v2 header can be: the 16-byte fixed part plus a 16-bit length.
inline constexpr size_t kProxyV2MaxHeader = 16 + 65535;
// Version 1's line, CRLF included, is never longer than this.
inline constexpr size_t kProxyV1MaxHeader = 107;

// Parses the header at the start of `in` (everything received so far).
// A v2 header longer than max_v2 bytes is kTooLong as soon as its length
// field arrives (max_v2 is clamped to [232, kProxyV2MaxHeader]: 232 holds
// the largest address block, UNIX's 216 bytes plus the fixed 16).
// Bytes after the header are not looked at: they are the protocol's.
ProxyParse parse_proxy_header(std::string_view in, size_t max_v2 = kProxyV2MaxHeader);

}  // namespace sluice
