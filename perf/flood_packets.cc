#include "perf/flood_packets.h"

#include <arpa/inet.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "rudp/wire.h"

namespace sluice::perf::flood {

namespace {

void put16(std::string& out, size_t at, uint16_t v) {
  out[at] = static_cast<char>(v >> 8);
  out[at + 1] = static_cast<char>(v & 0xff);
}
void put32(std::string& out, size_t at, uint32_t v) {
  put16(out, at, static_cast<uint16_t>(v >> 16));
  put16(out, at + 2, static_cast<uint16_t>(v & 0xffff));
}

// The 20-byte IPv4 header (no options, DF set: nothing here fragments).
void ip_header(std::string& out, size_t total, uint8_t proto, uint16_t id, uint8_t ttl,
               uint32_t src, uint32_t dst) {
  out.assign(20, '\0');
  out[0] = 0x45;
  put16(out, 2, static_cast<uint16_t>(total));
  put16(out, 4, id);
  put16(out, 6, 0x4000);
  out[8] = static_cast<char>(ttl);
  out[9] = static_cast<char>(proto);
  put32(out, 12, src);
  put32(out, 16, dst);
  put16(out, 10, checksum_finish(checksum_add(out.data(), 20, 0)));
}

// TCP's and UDP's pseudo-header sum (RFC 793 / 768).
uint32_t pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, size_t len) {
  return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto +
         static_cast<uint32_t>(len);
}

}  // namespace

bool Cidr::contains(uint32_t addr) const {
  const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return (addr & mask) == base;
}

bool parse_ipv4(std::string_view text, uint32_t* out) {
  in_addr a{};
  const std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  *out = ntohl(a.s_addr);
  return true;
}

std::string format_ipv4(uint32_t addr) {
  return fmt::format("{}.{}.{}.{}", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff,
                     addr & 0xff);
}

int parse_cidr(std::string_view text, Cidr* out, std::string* err) {
  const size_t slash = text.find('/');
  uint32_t addr = 0;
  int prefix = -1;
  if (slash == std::string_view::npos || !parse_ipv4(text.substr(0, slash), &addr)) {
    *err = fmt::format("bad CIDR '{}' (want A.B.C.D/N)", text);
    return -EINVAL;
  }
  const std::string_view p = text.substr(slash + 1);
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
  if (ec != std::errc() || end != p.data() + p.size() || prefix < 8 || prefix > 32) {
    *err = fmt::format("bad prefix length in '{}' (want 8..32)", text);
    return -EINVAL;
  }
  Cidr c;
  c.prefix = prefix;
  c.base = addr;
  const uint32_t mask = ~uint32_t{0} << (32 - prefix);
  if ((addr & mask) != addr) {
    *err = fmt::format("'{}' has host bits set (did you mean {}/{}?)", text,
                       format_ipv4(addr & mask), prefix);
    return -EINVAL;
  }
  *out = c;
  return 0;
}

uint32_t pick_source(const Cidr& c, uint64_t r) {
  const uint64_t n = c.size();
  if (n <= 2) return c.base + static_cast<uint32_t>(r % n);
  return c.base + 1 + static_cast<uint32_t>(r % (n - 2));  // not .0, not broadcast
}

uint32_t checksum_add(const void* data, size_t len, uint32_t sum) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t s = sum;
  for (; len >= 2; p += 2, len -= 2) s += static_cast<uint32_t>(p[0] << 8 | p[1]);
  if (len) s += static_cast<uint32_t>(p[0] << 8);
  while (s >> 32) s = (s & 0xffffffff) + (s >> 32);
  return static_cast<uint32_t>(s);
}

uint16_t checksum_finish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

size_t build_tcp(const TcpSpec& s, std::string& out) {
  const bool mss = s.mss_option && (s.flags & kSyn);
  const size_t tcp_len = mss ? 24 : 20;
  ip_header(out, 20 + tcp_len, IPPROTO_TCP, s.ip_id, s.ttl, s.src, s.dst);
  out.resize(20 + tcp_len, '\0');
  put16(out, 20, s.sport);
  put16(out, 22, s.dport);
  put32(out, 24, s.seq);
  put32(out, 28, (s.flags & kAck) ? s.ack : 0);
  out[32] = static_cast<char>((tcp_len / 4) << 4);
  out[33] = static_cast<char>(s.flags);
  put16(out, 34, s.window);
  if (mss) {
    out[40] = 2;  // kind MSS, length 4, 1460
    out[41] = 4;
    put16(out, 42, 1460);
  }
  const uint32_t sum = checksum_add(out.data() + 20, tcp_len,
                                    pseudo_sum(s.src, s.dst, IPPROTO_TCP, tcp_len));
  put16(out, 36, checksum_finish(sum));
  return out.size();
}

size_t build_udp(const UdpSpec& s, std::string_view payload, std::string& out) {
  const size_t udp_len = 8 + payload.size();
  if (20 + udp_len > 65535) return 0;
  ip_header(out, 20 + udp_len, IPPROTO_UDP, s.ip_id, s.ttl, s.src, s.dst);
  out.resize(28, '\0');
  put16(out, 20, s.sport);
  put16(out, 22, s.dport);
  put16(out, 24, static_cast<uint16_t>(udp_len));
  out.append(payload);
  uint16_t c = checksum_finish(
      checksum_add(out.data() + 20, udp_len, pseudo_sum(s.src, s.dst, IPPROTO_UDP, udp_len)));
  if (c == 0) c = 0xffff;  // RFC 768: zero means "no checksum"
  put16(out, 26, c);
  return out.size();
}

void build_rudp_initial(uint32_t client_id, std::string& out) {
  rudp::begin_datagram(out, rudp::PacketType::kInitial, 0);
  rudp::Initial in;
  in.src_id = client_id == 0 ? 1 : client_id;
  rudp::write_initial(out, in);
  rudp::seal_datagram(out);
}

}  // namespace sluice::perf::flood
