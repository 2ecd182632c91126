// The flood tool's packets, checked without sockets: the checksums by an
// independent ones'-complement sum (and one header from outside, the
// worked example every IPv4 text uses), the spoofed sources always inside
// their CIDR, and the rudp INITIAL through rudp's own parser.
#include "perf/flood_packets.h"

#include <random>
#include <string>

#include <gtest/gtest.h>

#include "rudp/wire.h"

namespace sluice::perf::flood {
namespace {

// Written apart from checksum_add on purpose: byte pairs summed into a
// 64-bit total, folded once at the end. A correct checksum makes the sum
// over the covered bytes (checksum field included) 0xffff.
uint16_t ones_sum(const std::string& bytes, uint64_t extra = 0) {
  uint64_t s = extra;
  for (size_t i = 0; i < bytes.size(); i += 2) {
    const auto hi = static_cast<uint8_t>(bytes[i]);
    const auto lo = i + 1 < bytes.size() ? static_cast<uint8_t>(bytes[i + 1]) : 0;
    s += hi * 256u + lo;
  }
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}
uint16_t be16(const std::string& b, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(b[at]) << 8 | static_cast<uint8_t>(b[at + 1]));
}
uint32_t be32(const std::string& b, size_t at) {
  return uint32_t{be16(b, at)} << 16 | be16(b, at + 2);
}
uint64_t pseudo(const std::string& pkt, uint8_t proto) {
  const size_t len = pkt.size() - 20;
  return uint64_t{be16(pkt, 12)} + be16(pkt, 14) + be16(pkt, 16) + be16(pkt, 18) + proto + len;
}

TEST(FloodPackets, IpHeaderMatchesTheWorkedExample) {
  // 45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7
  UdpSpec s;
  ASSERT_TRUE(parse_ipv4("192.168.0.1", &s.src));
  ASSERT_TRUE(parse_ipv4("192.168.0.199", &s.dst));
  s.ip_id = 0;
  s.ttl = 64;
  std::string pkt;
  ASSERT_EQ(build_udp(s, std::string(0x73 - 28, 'x'), pkt), 0x73u);
  EXPECT_EQ(be16(pkt, 10), 0xb861);
}

TEST(FloodPackets, TcpChecksumsVerify) {
  std::mt19937_64 rng(7);
  for (uint8_t flags : {kSyn, kAck, kRst, uint8_t(kSyn | kAck)}) {
    for (int i = 0; i < 200; ++i) {
      TcpSpec s;
      s.src = static_cast<uint32_t>(rng());
      s.dst = static_cast<uint32_t>(rng());
      s.sport = static_cast<uint16_t>(rng());
      s.dport = 7000;
      s.seq = static_cast<uint32_t>(rng());
      s.ack = static_cast<uint32_t>(rng());
      s.flags = flags;
      s.ip_id = static_cast<uint16_t>(rng());
      std::string pkt;
      const size_t n = build_tcp(s, pkt);
      ASSERT_EQ(n, pkt.size());
      ASSERT_EQ(n, (flags & kSyn) ? 44u : 40u);
      EXPECT_EQ(be16(pkt, 2), n);
      EXPECT_EQ(pkt[9], 6);
      EXPECT_EQ(ones_sum(pkt.substr(0, 20)), 0xffff) << "IP header";
      EXPECT_EQ(ones_sum(pkt.substr(20), pseudo(pkt, 6)), 0xffff) << "TCP";
      EXPECT_EQ(be32(pkt, 12), s.src);
      EXPECT_EQ(be32(pkt, 16), s.dst);
      EXPECT_EQ(be32(pkt, 24), s.seq);
      EXPECT_EQ(static_cast<uint8_t>(pkt[33]), flags);
      // One flipped bit breaks it: the check above can fail.
      pkt[25] ^= 0x10;
      EXPECT_NE(ones_sum(pkt.substr(20), pseudo(pkt, 6)), 0xffff);
    }
  }
}

TEST(FloodPackets, UdpChecksumsVerify) {
  std::mt19937_64 rng(11);
  for (size_t len : {0, 1, 7, 64, 513, 1200}) {
    UdpSpec s;
    s.src = static_cast<uint32_t>(rng());
    s.dst = static_cast<uint32_t>(rng());
    s.sport = static_cast<uint16_t>(rng());
    s.dport = 7001;
    std::string payload(len, '\0');
    for (auto& c : payload) c = static_cast<char>(rng());
    std::string pkt;
    ASSERT_EQ(build_udp(s, payload, pkt), 28 + len);
    EXPECT_EQ(be16(pkt, 24), 8 + len);
    EXPECT_EQ(ones_sum(pkt.substr(0, 20)), 0xffff);
    EXPECT_EQ(ones_sum(pkt.substr(20), pseudo(pkt, 17)), 0xffff) << len;
    EXPECT_EQ(pkt.substr(28), payload);
  }
  std::string pkt;
  EXPECT_EQ(build_udp(UdpSpec{}, std::string(65536, 'x'), pkt), 0u);
}

TEST(FloodPackets, CidrParsing) {
  Cidr c;
  std::string err;
  ASSERT_EQ(parse_cidr("10.77.128.0/17", &c, &err), 0) << err;
  EXPECT_EQ(format_ipv4(c.base), "10.77.128.0");
  EXPECT_EQ(c.size(), 32768u);
  uint32_t a = 0;
  ASSERT_TRUE(parse_ipv4("10.77.255.255", &a));
  EXPECT_TRUE(c.contains(a));
  ASSERT_TRUE(parse_ipv4("10.77.127.255", &a));
  EXPECT_FALSE(c.contains(a));
  EXPECT_NE(parse_cidr("10.77.128.1/17", &c, &err), 0);
  EXPECT_NE(err.find("host bits"), std::string::npos) << err;
  EXPECT_NE(parse_cidr("10.0.0.0/4", &c, &err), 0);
  EXPECT_NE(parse_cidr("10.0.0.0", &c, &err), 0);
  EXPECT_NE(parse_cidr("10.0.0.0/17x", &c, &err), 0);
  EXPECT_NE(parse_cidr("300.0.0.0/17", &c, &err), 0);
  ASSERT_EQ(parse_cidr("10.1.2.3/32", &c, &err), 0);
  EXPECT_EQ(format_ipv4(pick_source(c, 12345)), "10.1.2.3");
}

TEST(FloodPackets, SourcesStayInsideTheCidr) {
  std::mt19937_64 rng(3);
  for (const char* text : {"10.77.128.0/17", "192.168.5.0/24", "10.0.0.0/30", "10.9.9.8/31"}) {
    Cidr c;
    std::string err;
    ASSERT_EQ(parse_cidr(text, &c, &err), 0) << err;
    const uint32_t last = c.base + static_cast<uint32_t>(c.size() - 1);
    for (int i = 0; i < 100000; ++i) {
      const uint32_t a = pick_source(c, rng());
      ASSERT_TRUE(c.contains(a)) << text << " " << format_ipv4(a);
      if (c.prefix < 31) {
        ASSERT_NE(a, c.base) << text;
        ASSERT_NE(a, last) << text;
      }
    }
  }
}

TEST(FloodPackets, RudpInitialParsesBack) {
  for (uint32_t id : {0u, 1u, 0xdeadbeefu}) {
    std::string d;
    build_rudp_initial(id, d);
    ASSERT_EQ(d.size(), rudp::kInitialSize);
    rudp::Header h;
    ASSERT_EQ(rudp::parse_header(d, &h), rudp::WireError::kNone);
    EXPECT_EQ(h.type, rudp::PacketType::kInitial);
    EXPECT_EQ(h.dst_id, 0u);
    rudp::Initial in;
    ASSERT_EQ(rudp::parse_initial(std::string_view(d).substr(rudp::kHeaderSize), &in),
              rudp::WireError::kNone);
    EXPECT_EQ(in.src_id, id == 0 ? 1u : id);
    EXPECT_TRUE(in.cookie.empty());
    d[600] ^= 1;  // padding is covered by the CRC too
    EXPECT_EQ(rudp::parse_header(d, &h), rudp::WireError::kBadChecksum);
  }
}

}  // namespace
}  // namespace sluice::perf::flood
