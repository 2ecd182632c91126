#include "core/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace sluice {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr unsigned char kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr size_t kV2Fixed = 16;  // signature, ver/cmd, fam/transport, length
// The largest address block (AF_UNIX: two 108-byte paths).
constexpr size_t kV2UnixBlock = 216;

// Whether the first bytes of `in` agree with `prefix` (as far as both go).
bool starts_like(std::string_view in, const void* prefix, size_t len) {
  return std::memcmp(in.data(), prefix, std::min(in.size(), len)) == 0;
}

ProxyParse fail(ProxyError e) {
  ProxyParse r;
  r.status = ProxyStatus::kError;
  r.error = e;
  return r;
}

ProxyParse done(size_t consumed, const ProxyHeader& h) {
  ProxyParse r;
  r.status = ProxyStatus::kDone;
  r.consumed = consumed;
  r.header = h;
  return r;
}

uint16_t be16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);  // the bytes may lie anywhere: no cast
  return ntohs(v);
}

// A strict address literal of family `af` (inet_pton: dotted quad with no
// leading zeros for IPv4, RFC 4291 text for IPv6) into p->addr.
bool v1_address(std::string_view s, int af, PeerAddr* p) {
  char buf[INET6_ADDRSTRLEN];
  if (s.empty() || s.size() >= sizeof buf) return false;
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  unsigned char bin[16];
  if (::inet_pton(af, buf, bin) != 1) return false;
  p->family = static_cast<uint8_t>(af);
  std::memcpy(p->addr, bin, af == AF_INET ? 4 : 16);
  return true;
}

// 1-5 decimal digits, at most 65535.
bool v1_port(std::string_view s, uint16_t* port) {
  if (s.empty() || s.size() > 5) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

// "PROXY " seen: the rest of the line up to CRLF, within 107 bytes.
ProxyParse parse_v1(std::string_view in) {
  const std::string_view window = in.substr(0, kProxyV1MaxHeader);
  const size_t lf = window.find('\n');
  if (lf == std::string_view::npos) {
    // A CR that is not followed by LF can never become a valid line.
    const size_t cr = window.find('\r');
    if (cr != std::string_view::npos && cr + 1 < window.size()) {
      return fail(ProxyError::kV1Malformed);
    }
    return window.size() >= kProxyV1MaxHeader ? fail(ProxyError::kTooLong)
                                               : ProxyParse{};
  }
  if (lf < kV1Prefix.size() + 1 || in[lf - 1] != '\r') return fail(ProxyError::kV1Malformed);
  std::string_view line = in.substr(kV1Prefix.size(), lf - 1 - kV1Prefix.size());
  ProxyHeader h;
  h.version = 1;
  // "UNKNOWN", optionally followed by anything: the sender could not name
  // the connection (the spec says to ignore the rest of the line).
  if (line == "UNKNOWN" || line.substr(0, 8) == "UNKNOWN ") return done(lf + 1, h);
  // Exactly five fields, one space apart.
  std::string_view f[5];
  for (size_t i = 0; i < 5; ++i) {
    const size_t sp = line.find(' ');
    if (i < 4 && sp == std::string_view::npos) return fail(ProxyError::kV1Malformed);
    if (i == 4 && sp != std::string_view::npos) return fail(ProxyError::kV1Malformed);
    f[i] = line.substr(0, sp);
    if (f[i].empty()) return fail(ProxyError::kV1Malformed);
    line = i < 4 ? line.substr(sp + 1) : std::string_view{};
  }
  int af;
  if (f[0] == "TCP4") {
    af = AF_INET;
  } else if (f[0] == "TCP6") {
    af = AF_INET6;
  } else {
    return fail(ProxyError::kV1Malformed);
  }
  if (!v1_address(f[1], af, &h.source) || !v1_address(f[2], af, &h.destination)) {
    return fail(ProxyError::kV1BadAddress);
  }
  if (!v1_port(f[3], &h.source.port) || !v1_port(f[4], &h.destination.port)) {
    return fail(ProxyError::kV1BadPort);
  }
  h.proxied = true;
  return done(lf + 1, h);
}

// Every TLV of [pos, end) lies wholly inside it (their content is not
// used: PP2_TYPE_AUTHORITY, ALPN, SSL ... are skipped).
bool v2_tlvs_fit(std::string_view in, size_t pos, size_t end) {
  while (pos < end) {
    if (end - pos < 3) return false;
    pos += 3 + be16(in.data() + pos + 1);
    if (pos > end) return false;
  }
  return true;
}

// The signature seen (in.size() >= 12).
ProxyParse parse_v2(std::string_view in, size_t max_v2) {
  // Reject what is wrong as soon as its byte arrives, not at the deadline.
  if (in.size() < 13) return {};
  const auto ver_cmd = static_cast<unsigned char>(in[12]);
  if ((ver_cmd >> 4) != 2) return fail(ProxyError::kV2BadVersion);
  const unsigned cmd = ver_cmd & 0x0F;
  if (cmd > 1) return fail(ProxyError::kV2BadCommand);
  const bool local = cmd == 0;
  if (in.size() < 14) return {};
  const auto fam = static_cast<unsigned char>(in[13]);
  // What the spec defines: UNSPEC, and {INET, INET6, UNIX} x {STREAM, DGRAM}.
  // LOCAL discards the block, family included.
  const unsigned family = fam >> 4, transport = fam & 0x0F;
  const bool defined = fam == 0x00 || (family >= 1 && family <= 3 && transport >= 1 && transport <= 2);
  if (!local && !defined) return fail(ProxyError::kV2BadFamily);
  if (in.size() < kV2Fixed) return {};
  const size_t total = kV2Fixed + be16(in.data() + 14);
  if (total > std::clamp(max_v2, kV2Fixed + kV2UnixBlock, kProxyV2MaxHeader)) {
    return fail(ProxyError::kTooLong);
  }
  if (in.size() < total) return {};
  ProxyHeader h;
  h.version = 2;
  // LOCAL: the balancer's own connection (a health check); UNSPEC: it
  // could not say. Either way the socket's addresses stand.
  if (local || fam == 0x00) return done(total, h);
  const size_t block = family == 1 ? 12 : family == 2 ? 36 : kV2UnixBlock;
  if (total - kV2Fixed < block) return fail(ProxyError::kV2ShortAddress);
  if (!v2_tlvs_fit(in, kV2Fixed + block, total)) return fail(ProxyError::kV2BadTlv);
  // UNIX, and UDP on this TCP listener: valid, but not a peer we can name;
  // the spec's fallback is UNSPEC (keep the socket's addresses).
  if (family == 3 || transport != 1) return done(total, h);
  const char* p = in.data() + kV2Fixed;
  const size_t alen = family == 1 ? 4 : 16;
  h.source.family = h.destination.family = family == 1 ? AF_INET : AF_INET6;
  std::memcpy(h.source.addr, p, alen);
  std::memcpy(h.destination.addr, p + alen, alen);
  h.source.port = be16(p + 2 * alen);
  h.destination.port = be16(p + 2 * alen + 2);
  h.proxied = true;
  return done(total, h);
}

}  // namespace

const char* to_string(ProxyProtocol mode) {
  switch (mode) {
    case ProxyProtocol::kOff: return "off";
    case ProxyProtocol::kOptional: return "optional";
    case ProxyProtocol::kRequired: return "required";
  }
  return "?";
}

const char* to_string(ProxyError error) {
  switch (error) {
    case ProxyError::kNone: return "no error";
    case ProxyError::kNotProxy: return "no PROXY protocol header";
    case ProxyError::kTooLong: return "PROXY header too long";
    case ProxyError::kV1Malformed: return "malformed PROXY v1 line";
    case ProxyError::kV1BadAddress: return "bad address in PROXY v1 line";
    case ProxyError::kV1BadPort: return "bad port in PROXY v1 line";
    case ProxyError::kV2BadVersion: return "PROXY v2 header: bad version";
    case ProxyError::kV2BadCommand: return "PROXY v2 header: bad command";
    case ProxyError::kV2BadFamily: return "PROXY v2 header: bad family/transport";
    case ProxyError::kV2ShortAddress: return "PROXY v2 header: address block too short";
    case ProxyError::kV2BadTlv: return "PROXY v2 header: TLV past the end";
  }
  return "?";
}

ProxyParse parse_proxy_header(std::string_view in, size_t max_v2) {
  if (in.empty()) return {};
  // The two openings differ in their first byte ('\r' and 'P').
  if (starts_like(in, kV2Signature, sizeof kV2Signature)) {
    return in.size() < sizeof kV2Signature ? ProxyParse{} : parse_v2(in, max_v2);
  }
  if (starts_like(in, kV1Prefix.data(), kV1Prefix.size())) {
    return in.size() < kV1Prefix.size() ? ProxyParse{} : parse_v1(in);
  }
  return fail(ProxyError::kNotProxy);
}

}  // namespace sluice
