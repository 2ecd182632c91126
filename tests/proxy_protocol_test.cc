// The PROXY protocol parser (core/proxy_protocol.h), without sockets:
// every valid v1/v2 form, every split point (a prefix needs more and
// consumes nothing), malformed headers, and the bytes that follow.
#include "core/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace sluice {
namespace {

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string be16(uint16_t v) {
  return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

// A v2 header: ver/cmd byte, family byte, and the body (addresses, TLVs).
std::string v2(unsigned char ver_cmd, unsigned char fam, const std::string& body) {
  return kSig + std::string{static_cast<char>(ver_cmd), static_cast<char>(fam)} +
         be16(static_cast<uint16_t>(body.size())) + body;
}

std::string ipv4(const char* text) {
  in_addr a{};
  EXPECT_EQ(::inet_pton(AF_INET, text, &a), 1);
  return std::string(reinterpret_cast<const char*>(&a), 4);
}

std::string ipv6(const char* text) {
  in6_addr a{};
  EXPECT_EQ(::inet_pton(AF_INET6, text, &a), 1);
  return std::string(reinterpret_cast<const char*>(&a), 16);
}

std::string tlv(unsigned char type, const std::string& value) {
  return std::string(1, static_cast<char>(type)) + be16(static_cast<uint16_t>(value.size())) +
         value;
}

std::string tcp4_v2(const std::string& tlvs = "") {
  return v2(0x21, 0x11, ipv4("203.0.113.7") + ipv4("192.0.2.1") + be16(4242) + be16(443) + tlvs);
}

// Every strict prefix needs more and consumes nothing; the whole parses
// as the whole does.
void expect_prefixes_need_more(const std::string& header) {
  for (size_t n = 0; n < header.size(); ++n) {
    const ProxyParse r = parse_proxy_header(std::string_view(header).substr(0, n));
    EXPECT_EQ(r.status, ProxyStatus::kNeedMore) << "prefix of " << n << " bytes";
    EXPECT_EQ(r.consumed, 0u);
  }
}

ProxyError error_of(const std::string& in, size_t max_v2 = kProxyV2MaxHeader) {
  const ProxyParse r = parse_proxy_header(in, max_v2);
  EXPECT_EQ(r.status, ProxyStatus::kError) << in.size() << " bytes";
  EXPECT_EQ(r.consumed, 0u);
  return r.error;
}

TEST(ProxyProtocolV1, Tcp4) {
  const std::string h = "PROXY TCP4 203.0.113.7 192.0.2.1 4242 443\r\n";
  const ProxyParse r = parse_proxy_header(h + "payload");
  ASSERT_EQ(r.status, ProxyStatus::kDone);
  EXPECT_EQ(r.consumed, h.size());
  EXPECT_EQ(r.header.version, 1);
  EXPECT_TRUE(r.header.proxied);
  EXPECT_EQ(r.header.source.str(), "203.0.113.7:4242");
  EXPECT_EQ(r.header.destination.str(), "192.0.2.1:443");
  EXPECT_EQ(r.header.source.family, AF_INET);
  expect_prefixes_need_more(h);
}

TEST(ProxyProtocolV1, Tcp6) {
  const std::string h = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
  const ProxyParse r = parse_proxy_header(h);
  ASSERT_EQ(r.status, ProxyStatus::kDone);
  EXPECT_EQ(r.consumed, h.size());
  EXPECT_EQ(r.header.source.str(), "[2001:db8::7]:65535");
  EXPECT_EQ(r.header.destination.str(), "[2001:db8::1]:0");
  expect_prefixes_need_more(h);
}

TEST(ProxyProtocolV1, LongestLines) {
  const std::string addrs =
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  // The longest TCP line is 104 bytes; the spec's 107 is UNKNOWN's worst case.
  const std::string tcp6 = "PROXY TCP6 " + addrs;
  const std::string unknown = "PROXY UNKNOWN " + addrs;
  ASSERT_EQ(tcp6.size(), 104u);
  ASSERT_EQ(unknown.size(), kProxyV1MaxHeader);
  for (const std::string& h : {tcp6, unknown}) {
    const ProxyParse r = parse_proxy_header(h + "x");
    ASSERT_EQ(r.status, ProxyStatus::kDone);
    EXPECT_EQ(r.consumed, h.size());
    expect_prefixes_need_more(h);
  }
  // One byte more and the CRLF is past the limit.
  EXPECT_EQ(error_of("PROXY UNKNOWN  " + addrs), ProxyError::kTooLong);
}

TEST(ProxyProtocolV1, UnknownKeepsTheRealAddress) {
  for (const std::string h : {"PROXY UNKNOWN\r\n",
                              "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"}) {
    const ProxyParse r = parse_proxy_header(h + "GET /");
    ASSERT_EQ(r.status, ProxyStatus::kDone) << h;
    EXPECT_EQ(r.consumed, h.size());
    EXPECT_FALSE(r.header.proxied);
    EXPECT_EQ(r.header.source.family, 0);
  }
}

TEST(ProxyProtocolV1, Malformed) {
  EXPECT_EQ(error_of("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), ProxyError::kV1Malformed);  // no CR
  EXPECT_EQ(error_of("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx"), ProxyError::kV1Malformed);
  EXPECT_EQ(error_of("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), ProxyError::kV1Malformed);
  EXPECT_EQ(error_of("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), ProxyError::kV1Malformed);
  EXPECT_EQ(error_of("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), ProxyError::kV1Malformed);
  EXPECT_EQ(error_of("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), ProxyError::kV1Malformed);
  EXPECT_EQ(error_of("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), ProxyError::kV1Malformed);
  EXPECT_EQ(error_of("PROXY \r\n"), ProxyError::kV1Malformed);
  EXPECT_EQ(error_of("PROXY UNKNOWNX\r\n"), ProxyError::kV1Malformed);
  // No CRLF within 107 bytes.
  EXPECT_EQ(error_of("PROXY TCP4 " + std::string(96, '1')), ProxyError::kTooLong);
  EXPECT_EQ(error_of("PROXY UNKNOWN " + std::string(200, 'a') + "\r\n"), ProxyError::kTooLong);
}

TEST(ProxyProtocolV1, BadAddresses) {
  for (const char* h : {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
                        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
                        "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
                        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",    // v6 under TCP4
                        "PROXY TCP6 ::1 5.6.7.8 1 2\r\n",    // v4 under TCP6
                        "PROXY TCP6 ::1 ::g 1 2\r\n",
                        "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
                        "PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:0 ::1 1 2\r\n"}) {
    EXPECT_EQ(error_of(h), ProxyError::kV1BadAddress) << h;
  }
}

TEST(ProxyProtocolV1, BadPorts) {
  for (const char* h : {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                        "PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
                        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
                        "PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n",
                        "PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n",
                        "PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n"}) {
    EXPECT_EQ(error_of(h), ProxyError::kV1BadPort) << h;
  }
}

TEST(ProxyProtocolV2, Tcp4) {
  const std::string h = tcp4_v2();
  const ProxyParse r = parse_proxy_header(h + "after");
  ASSERT_EQ(r.status, ProxyStatus::kDone);
  EXPECT_EQ(r.consumed, 16u + 12u);
  EXPECT_EQ(r.header.version, 2);
  EXPECT_TRUE(r.header.proxied);
  EXPECT_EQ(r.header.source.str(), "203.0.113.7:4242");
  EXPECT_EQ(r.header.destination.str(), "192.0.2.1:443");
  expect_prefixes_need_more(h);
}

TEST(ProxyProtocolV2, Tcp6WithTlvs) {
  const std::string tlvs = tlv(0x02, "example.com") + tlv(0x01, "h2") + tlv(0x04, std::string(5, '\0')) +
                           tlv(0xE0, "");
  const std::string h = v2(0x21, 0x21, ipv6("2001:db8::7") + ipv6("2001:db8::1") + be16(50000) +
                                           be16(8443) + tlvs);
  const ProxyParse r = parse_proxy_header(h + "tail");
  ASSERT_EQ(r.status, ProxyStatus::kDone);
  EXPECT_EQ(r.consumed, h.size());
  EXPECT_EQ(r.header.source.str(), "[2001:db8::7]:50000");
  EXPECT_EQ(r.header.destination.str(), "[2001:db8::1]:8443");
  expect_prefixes_need_more(h);
}

TEST(ProxyProtocolV2, LocalKeepsTheRealAddress) {
  // LOCAL discards the block whatever it holds (family byte included).
  for (const std::string& h : {v2(0x20, 0x00, ""), v2(0x20, 0x11, std::string(12, 'x')),
                               v2(0x20, 0xFF, "whatever")}) {
    const ProxyParse r = parse_proxy_header(h + "data");
    ASSERT_EQ(r.status, ProxyStatus::kDone);
    EXPECT_EQ(r.consumed, h.size());
    EXPECT_FALSE(r.header.proxied);
    expect_prefixes_need_more(h);
  }
}

TEST(ProxyProtocolV2, UnspecUnixAndUdpKeepTheRealAddress) {
  const std::string unix_block(216, '/');
  for (const std::string& h :
       {v2(0x21, 0x00, ""), v2(0x21, 0x00, "ignored"), v2(0x21, 0x31, unix_block),
        v2(0x21, 0x32, unix_block + tlv(0x02, "x")),
        v2(0x21, 0x12, ipv4("1.2.3.4") + ipv4("5.6.7.8") + be16(1) + be16(2)),
        v2(0x21, 0x22, std::string(36, '\1'))}) {
    const ProxyParse r = parse_proxy_header(h);
    ASSERT_EQ(r.status, ProxyStatus::kDone) << h.size();
    EXPECT_EQ(r.consumed, h.size());
    EXPECT_FALSE(r.header.proxied);
  }
}

TEST(ProxyProtocolV2, Malformed) {
  std::string bad_sig = tcp4_v2();
  bad_sig[11] = 'X';
  EXPECT_EQ(error_of(bad_sig), ProxyError::kNotProxy);
  EXPECT_EQ(error_of(kSig + "\x11"), ProxyError::kV2BadVersion);  // version 1 in binary
  EXPECT_EQ(error_of(kSig + "\x31"), ProxyError::kV2BadVersion);
  EXPECT_EQ(error_of(kSig + "\x22"), ProxyError::kV2BadCommand);
  EXPECT_EQ(error_of(kSig + "\x21\x13"), ProxyError::kV2BadFamily);
  EXPECT_EQ(error_of(kSig + "\x21\x41"), ProxyError::kV2BadFamily);
  EXPECT_EQ(error_of(kSig + "\x21\x10"), ProxyError::kV2BadFamily);
  EXPECT_EQ(error_of(v2(0x21, 0x11, std::string(11, 'a'))), ProxyError::kV2ShortAddress);
  EXPECT_EQ(error_of(v2(0x21, 0x21, std::string(35, 'a'))), ProxyError::kV2ShortAddress);
  EXPECT_EQ(error_of(v2(0x21, 0x31, std::string(215, 'a'))), ProxyError::kV2ShortAddress);
  // A TLV that runs past the end, and one cut in its own header.
  EXPECT_EQ(error_of(tcp4_v2(tlv(0x02, "abc").substr(0, 5))), ProxyError::kV2BadTlv);
  EXPECT_EQ(error_of(tcp4_v2(std::string("\x02\x00", 2))), ProxyError::kV2BadTlv);
}

TEST(ProxyProtocolV2, LengthCap) {
  // The whole 64 KiB block is allowed by default ...
  const std::string big = tcp4_v2(tlv(0xE1, std::string(65535 - 12 - 3, 'z')));
  ASSERT_EQ(big.size(), kProxyV2MaxHeader);
  const ProxyParse r = parse_proxy_header(big);
  ASSERT_EQ(r.status, ProxyStatus::kDone);
  EXPECT_EQ(r.consumed, big.size());
  // ... and refused under a smaller cap as soon as the length is in,
  // before the body arrives.
  EXPECT_EQ(error_of(big.substr(0, 16), 4096), ProxyError::kTooLong);
  const std::string fits = tcp4_v2(tlv(0xE1, std::string(4096 - 16 - 12 - 3, 'z')));
  EXPECT_EQ(parse_proxy_header(fits, 4096).status, ProxyStatus::kDone);
  EXPECT_EQ(error_of(fits + "", 4095), ProxyError::kTooLong);
  // The cap never goes below what a UNIX address block needs.
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x31, std::string(216, '/')), 1).status,
            ProxyStatus::kDone);
}

TEST(ProxyProtocol, NotAHeader) {
  for (const std::string& in : {std::string("GET / HTTP/1.1\r\n"), std::string("PROXX"),
                                std::string("proxy "), std::string("\r\n\r\nX"),
                                std::string("\0", 1), std::string("P R")}) {
    EXPECT_EQ(error_of(in), ProxyError::kNotProxy) << in;
  }
  // A prefix of either opening is still undecided.
  for (const std::string& in : {std::string("P"), std::string("PROX"), std::string("PROXY"),
                                std::string("\r"), std::string("\r\n\r\n"), kSig.substr(0, 11)}) {
    EXPECT_EQ(parse_proxy_header(in).status, ProxyStatus::kNeedMore) << in.size();
  }
}

TEST(ProxyProtocol, GarbageNeverCrashesAndNeverOverConsumes) {
  std::mt19937_64 rng(19);
  const std::string seeds[] = {tcp4_v2(tlv(0x02, "host")),
                               "PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n"};
  for (int i = 0; i < 20000; ++i) {
    std::string in = seeds[i % 2];
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) in[rng() % in.size()] = static_cast<char>(rng());
    in.resize(rng() % (in.size() + 1));
    const ProxyParse r = parse_proxy_header(in);
    if (r.status == ProxyStatus::kDone) {
      EXPECT_LE(r.consumed, in.size());
      EXPECT_GT(r.consumed, 0u);
    } else {
      EXPECT_EQ(r.consumed, 0u);
    }
  }
}

TEST(ProxyProtocol, Names) {
  EXPECT_STREQ(to_string(ProxyProtocol::kRequired), "required");
  EXPECT_STREQ(to_string(ProxyError::kV2BadTlv), "PROXY v2 header: TLV past the end");
}

}  // namespace
}  // namespace sluice
