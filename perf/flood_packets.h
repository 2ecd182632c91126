// Packets for perf/flood (the DoS lab's attack tool, scripts/doslab.sh):
// raw IPv4 TCP segments and UDP datagrams with correct checksums, spoofed
// source addresses drawn from an explicit CIDR, and rudp INITIALs built
// with rudp's own wire code. Pure functions, no sockets, so the builder is
// unit-tested on its own (perf/flood_packets_test.cc).
//
// Addresses and ports are host byte order here; the builders write network
// order into the packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::perf::flood {

// An IPv4 prefix, "10.77.128.0/17". base has its host bits cleared.
struct Cidr {
  uint32_t base = 0;
  int prefix = 32;
  uint64_t size() const { return uint64_t{1} << (32 - prefix); }
  bool contains(uint32_t addr) const;
};
// 0 or -EINVAL (with *err set): "A.B.C.D/N", N in [8, 32]; host bits must
// be zero, so a typo does not silently name another network. Wider than
// /8 is refused: a flood source range that large is never what was meant.
int parse_cidr(std::string_view text, Cidr* out, std::string* err);
// "A.B.C.D" -> host order; false if not a dotted quad.
bool parse_ipv4(std::string_view text, uint32_t* out);
std::string format_ipv4(uint32_t addr);

// An address of c chosen by r (any 64 random bits). Below /31 the network
// and broadcast addresses are never chosen (a router treats them apart).
uint32_t pick_source(const Cidr& c, uint64_t r);

// The Internet checksum (RFC 1071) of data, folded, not complemented,
// starting from `sum` (a running 32-bit sum, e.g. a pseudo-header's).
uint32_t checksum_add(const void* data, size_t len, uint32_t sum);
uint16_t checksum_finish(uint32_t sum);  // fold to 16 bits and complement

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

struct TcpSpec {
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = kSyn;
  uint16_t window = 64240;
  uint16_t ip_id = 0;
  uint8_t ttl = 64;
  bool mss_option = true;  // SYN: an MSS option (1460), as every real stack sends
};
// A whole IPv4 packet (20-byte header, TCP header, no payload) into out
// (replaced). IP and TCP checksums filled in. Returns its length.
size_t build_tcp(const TcpSpec& s, std::string& out);

struct UdpSpec {
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;
  uint16_t ip_id = 0;
  uint8_t ttl = 64;
};
// A whole IPv4 packet carrying payload, checksums filled in. Returns its
// length, or 0 if the payload does not fit one IPv4 packet.
size_t build_udp(const UdpSpec& s, std::string_view payload, std::string& out);

// A valid rudp INITIAL (no cookie, default parameters) from client
// `client_id` (0 is invalid on the wire and is mapped to 1), padded to
// rudp::kInitialSize like the real client's, sealed with its CRC-32C.
void build_rudp_initial(uint32_t client_id, std::string& out);

}  // namespace sluice::perf::flood
