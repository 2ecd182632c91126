// The heartbeat protocol's payload codec and TCP framing: round trips,
// every malformed shape, and streams split at every byte boundary.
#include "codec/heartbeat.h"

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sluice::codec::heartbeat {
namespace {

std::string s(const std::array<char, kProbeSize>& a) { return std::string(a.data(), a.size()); }

TEST(HeartbeatCodec, PingLayoutIsTypeThenBigEndianFields) {
  const std::string p = s(encode_ping(0x0102030405060708ull, 0x1112131415161718ull));
  const unsigned char want[kProbeSize] = {0x01, 1, 2, 3, 4, 5, 6, 7, 8,
                                          0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};
  ASSERT_EQ(p.size(), kProbeSize);
  EXPECT_EQ(std::memcmp(p.data(), want, kProbeSize), 0);
  Message m;
  ASSERT_EQ(parse(p, &m), ParseError::kNone);
  EXPECT_EQ(m.type, Type::kPing);
  EXPECT_EQ(m.seq, 0x0102030405060708ull);
  EXPECT_EQ(m.timestamp_ns, 0x1112131415161718ull);
}

TEST(HeartbeatCodec, PongEchoesThePingsSixteenBytes) {
  Message ping;
  const std::string p = s(encode_ping(42, 0xdeadbeefcafef00dull));
  ASSERT_EQ(parse(p, &ping), ParseError::kNone);
  const std::string q = s(pong_for(ping));
  EXPECT_EQ(q[0], 0x02);
  EXPECT_EQ(q.substr(1), p.substr(1));
  Message pong;
  ASSERT_EQ(parse(q, &pong), ParseError::kNone);
  EXPECT_EQ(pong.type, Type::kPong);
  EXPECT_EQ(pong.seq, 42u);
}

TEST(HeartbeatCodec, DataCarriesAnyBytes) {
  const std::string bytes("\x00\x01\xff zero and binary", 19);
  Message m;
  const std::string p = encode_data(bytes);
  ASSERT_EQ(parse(p, &m), ParseError::kNone);
  EXPECT_EQ(m.type, Type::kData);
  EXPECT_EQ(m.data, bytes);
  ASSERT_EQ(parse(std::string(1, '\x03'), &m), ParseError::kNone);  // empty DATA
  EXPECT_TRUE(m.data.empty());
}

TEST(HeartbeatCodec, MalformedPayloadsAreProtocolErrors) {
  Message m;
  EXPECT_EQ(parse("", &m), ParseError::kEmpty);
  EXPECT_EQ(parse(std::string(1, '\x00'), &m), ParseError::kUnknownType);
  EXPECT_EQ(parse(std::string(1, '\x04'), &m), ParseError::kUnknownType);
  EXPECT_EQ(parse(std::string(17, '\xff'), &m), ParseError::kUnknownType);
  // PING/PONG: exactly 17 bytes.
  for (char t : {'\x01', '\x02'}) {
    for (size_t len : {size_t{1}, size_t{9}, size_t{16}, size_t{18}, size_t{100}}) {
      std::string p(len, '\0');
      p[0] = t;
      EXPECT_EQ(parse(p, &m), ParseError::kBadLength) << int(t) << " len " << len;
    }
  }
  EXPECT_EQ(describe(ParseError::kUnknownType, std::string(1, '\x07')), "unknown type 0x07");
  EXPECT_EQ(describe(ParseError::kBadLength, std::string(5, '\x01')), "PING of 5 bytes (want 17)");
}

TEST(HeartbeatCodec, FrameIsFourByteBigEndianLength) {
  const std::string f = frame("abc");
  EXPECT_EQ(f, std::string("\x00\x00\x00\x03" "abc", 7));
  EXPECT_EQ(frame(""), std::string(4, '\0'));
}

// A stream of frames, fed split at every boundary (and byte by byte),
// decodes to the same messages.
TEST(HeartbeatCodec, StreamSplitAtEveryBoundary) {
  std::vector<std::string> payloads = {
      s(encode_ping(1, 100)), s(encode_pong(1, 100)), encode_data("hello"),
      encode_data(""),        s(encode_ping(~0ull, 0)), encode_data(std::string(300, 'z')),
  };
  std::string wire;
  for (const auto& p : payloads) wire += frame(p);
  auto check = [&](const std::vector<std::string>& pieces) {
    StreamParser parser;
    std::vector<std::string> got;
    for (const auto& piece : pieces) {
      ASSERT_EQ(parser.feed(piece,
                            [&](const Message& m) {
                              std::string p;
                              if (m.type == Type::kData) {
                                p = encode_data(m.data);
                              } else if (m.type == Type::kPing) {
                                p = s(encode_ping(m.seq, m.timestamp_ns));
                              } else {
                                p = s(encode_pong(m.seq, m.timestamp_ns));
                              }
                              got.push_back(p);
                            }),
                StreamParser::Status::kOk);
    }
    EXPECT_EQ(got, payloads);
    EXPECT_EQ(parser.buffered(), 0u);
  };
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    SCOPED_TRACE(cut);
    check({wire.substr(0, cut), wire.substr(cut)});
  }
  for (size_t a = 0; a <= wire.size(); a += 7) {
    for (size_t b = a; b <= wire.size(); b += 11) {
      check({wire.substr(0, a), wire.substr(a, b - a), wire.substr(b)});
    }
  }
  std::vector<std::string> bytes;
  for (char c : wire) bytes.emplace_back(1, c);
  check(bytes);
}

TEST(HeartbeatCodec, StreamErrorsAreStickyAndStopAtTheBadFrame) {
  {
    StreamParser parser;
    int n = 0;
    const std::string wire = frame(s(encode_ping(1, 1))) + frame(std::string(1, '\x09')) +
                             frame(s(encode_ping(2, 2)));
    EXPECT_EQ(parser.feed(wire, [&](const Message&) { ++n; }), StreamParser::Status::kParseError);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(parser.error(), "unknown type 0x09");
    EXPECT_EQ(parser.feed(frame(s(encode_ping(3, 3))), [&](const Message&) { ++n; }),
              StreamParser::Status::kParseError);
    EXPECT_EQ(n, 1);
  }
  {
    // A length field announcing 4 GiB: rejected at once, never buffered.
    StreamParser parser;
    EXPECT_EQ(parser.feed(std::string("\xff\xff\xff\xff", 4), [](const Message&) {}),
              StreamParser::Status::kFrameError);
  }
  {
    // Just over the largest payload.
    StreamParser parser;
    std::string big(kMaxPayload + 1, '\x03');
    EXPECT_EQ(parser.feed(frame(big), [](const Message&) {}), StreamParser::Status::kFrameError);
    StreamParser ok;
    big.resize(kMaxPayload);
    int n = 0;
    EXPECT_EQ(ok.feed(frame(big), [&](const Message&) { ++n; }), StreamParser::Status::kOk);
    EXPECT_EQ(n, 1);
  }
}

}  // namespace
}  // namespace sluice::codec::heartbeat
