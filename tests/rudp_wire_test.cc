// rudp/wire.{h,cc}: QUIC varints, the datagram header and its CRC-32,
// the INITIAL/RETRY/ACCEPT bodies, every DATA frame, and for_each_frame's
// promise that a malformed packet is rejected whole (no frame applied).
#include "rudp/crc32c.h"
#include "rudp/wire.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::rudp {

// For EXPECT_EQ on range vectors (found by ADL from std::vector's ==).
bool operator==(const AckRange& a, const AckRange& b) { return a.low == b.low && a.high == b.high; }
std::ostream& operator<<(std::ostream& os, WireError e) { return os << to_string(e); }
std::ostream& operator<<(std::ostream& os, const AckRange& r) {
  return os << '[' << r.low << ", " << r.high << ']';
}

namespace {

std::string bytes(std::initializer_list<uint8_t> b) {
  std::string s;
  for (uint8_t c : b) s.push_back(static_cast<char>(c));
  return s;
}

std::string varint(uint64_t v) {
  std::string s;
  Writer(s).varint(v);
  return s;
}

// Decodes exactly one varint filling `s`; nullopt if it fails or leaves bytes.
std::optional<uint64_t> read_varint(std::string_view s) {
  Reader r(s);
  uint64_t v = 0;
  if (!r.varint(&v) || !r.done()) return std::nullopt;
  return v;
}

// ---- varints ----

TEST(RudpVarint, RoundTripsAtEveryLengthBoundary) {
  struct Case {
    uint64_t v;
    size_t size;
  };
  const Case cases[] = {
      {0, 1},
      {63, 1},
      {64, 2},
      {16383, 2},
      {16384, 4},
      {(uint64_t{1} << 30) - 1, 4},
      {uint64_t{1} << 30, 8},
      {kVarintMax, 8},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.v);
    EXPECT_EQ(varint_size(c.v), c.size);
    const std::string e = varint(c.v);
    ASSERT_EQ(e.size(), c.size);
    // The two high bits of the first byte are log2(length).
    const unsigned prefix = static_cast<uint8_t>(e[0]) >> 6;
    EXPECT_EQ(size_t{1} << prefix, c.size);
    EXPECT_EQ(read_varint(e), c.v);
  }
  EXPECT_EQ(kVarintMax, 4611686018427387903ull);
}

TEST(RudpVarint, Rfc9000AppendixA1Examples) {
  struct Case {
    std::string enc;
    uint64_t v;
  };
  const Case cases[] = {
      {bytes({0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c}), 151288809941952652ull},
      {bytes({0x9d, 0x7f, 0x3e, 0x7d}), 494878333},
      {bytes({0x7b, 0xbd}), 15293},
      {bytes({0x25}), 37},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.v);
    EXPECT_EQ(read_varint(c.enc), c.v);
    EXPECT_EQ(varint(c.v), c.enc);  // minimal encodings, byte for byte
  }
  // §A.1: "the two-byte sequence 0x4025 decodes to 37" (non-minimal, legal).
  EXPECT_EQ(read_varint(bytes({0x40, 0x25})), 37u);
}

TEST(RudpVarint, TruncatedFailsAndConsumesNothing) {
  for (uint64_t v : {uint64_t{64}, uint64_t{16384}, uint64_t{1} << 30, kVarintMax}) {
    const std::string e = varint(v);
    for (size_t n = 0; n < e.size(); ++n) {
      Reader r(std::string_view(e).substr(0, n));
      uint64_t got = 12345;
      EXPECT_FALSE(r.varint(&got)) << v << " cut at " << n;
      EXPECT_EQ(r.left(), n);
      EXPECT_EQ(got, 12345u);
    }
  }
}

TEST(RudpVarint, RandomValuesRoundTrip) {
  std::mt19937_64 rng(7);
  std::string all;
  std::vector<uint64_t> vals;
  for (int i = 0; i < 5000; ++i) {
    const uint64_t v = rng() >> (2 + rng() % 62);  // every magnitude
    vals.push_back(v);
    Writer(all).varint(v);
  }
  Reader r(all);
  for (uint64_t v : vals) {
    uint64_t got = 0;
    ASSERT_TRUE(r.varint(&got));
    ASSERT_EQ(got, v);
  }
  EXPECT_TRUE(r.done());
}

TEST(RudpFixedWidth, BigEndianAndBounded) {
  std::string s;
  Writer w(s);
  w.u8(0x01);
  w.u16(0x0203);
  w.u32(0x04050607);
  w.u64(0x08090a0b0c0d0e0full);
  EXPECT_EQ(s, bytes({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  Reader r(s);
  uint8_t a = 0;
  uint16_t b = 0;
  uint32_t c = 0;
  uint64_t d = 0;
  ASSERT_TRUE(r.u8(&a) && r.u16(&b) && r.u32(&c) && r.u64(&d));
  EXPECT_EQ(a, 0x01);
  EXPECT_EQ(b, 0x0203);
  EXPECT_EQ(c, 0x04050607u);
  EXPECT_EQ(d, 0x08090a0b0c0d0e0full);
  EXPECT_TRUE(r.done());
  EXPECT_FALSE(r.u8(&a));
  for (size_t n = 0; n < 8; ++n) {
    Reader t(std::string_view(s).substr(0, n));
    EXPECT_FALSE(t.u64(&d));
    EXPECT_EQ(t.left(), n);
  }
  std::string_view v;
  Reader t(s);
  EXPECT_FALSE(t.bytes(16, &v));
  EXPECT_TRUE(t.bytes(15, &v));
  EXPECT_EQ(v, s);
}

// ---- header and checksum ----

std::string data_datagram(uint32_t dst, std::string_view payload) {
  std::string d;
  begin_datagram(d, PacketType::kData, dst);
  d.append(payload);
  seal_datagram(d);
  return d;
}

// Rewrites byte `at` and seals again (a well-formed checksum over a bad field).
std::string resealed(std::string d, size_t at, uint8_t v) {
  d[at] = static_cast<char>(v);
  seal_datagram(d);
  return d;
}

// CRC-32C bit by bit, straight from the definition (reflected
// 0x1EDC6F41, init and final XOR 0xFFFFFFFF): the reference for rudp's.
uint32_t crc32c_reference(std::string_view d) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : d) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
  }
  return ~c;
}

TEST(RudpCrc32c, KnownValueAndBothImplementationsAgree) {
  EXPECT_EQ(crc32c(0, "123456789", 9), 0xE3069283u);  // the standard check value
  EXPECT_EQ(crc32c_portable(0, "123456789", 9), 0xE3069283u);
  std::mt19937_64 rng(5);
  for (size_t n = 0; n < 300; ++n) {
    std::string d(n, '\0');
    for (char& c : d) c = static_cast<char>(rng());
    const uint32_t want = crc32c_reference(d);
    EXPECT_EQ(crc32c(0, d.data(), d.size()), want) << n;
    EXPECT_EQ(crc32c_portable(0, d.data(), d.size()), want) << n;
    // Continuation: any split gives the same.
    const size_t cut = n ? rng() % n : 0;
    EXPECT_EQ(crc32c(crc32c(0, d.data(), cut), d.data() + cut, n - cut), want) << n;
  }
}

TEST(RudpHeader, LayoutAndChecksumAreCrc32c) {
  const std::string d = data_datagram(0xdeadbeef, "hello, frames");
  ASSERT_EQ(d.size(), kHeaderSize + 13);
  EXPECT_EQ(static_cast<uint8_t>(d[0]), kVersion);
  EXPECT_EQ(static_cast<uint8_t>(d[1]), static_cast<uint8_t>(PacketType::kData));
  EXPECT_EQ(d.substr(2, 2), bytes({0, 0}));
  EXPECT_EQ(d.substr(8, 4), bytes({0xde, 0xad, 0xbe, 0xef}));
  // CRC-32C of the datagram with the checksum field zeroed, big-endian.
  std::string z = d;
  z.replace(4, 4, std::string(4, '\0'));
  const uint32_t crc = crc32c_reference(z);
  EXPECT_EQ(d.substr(4, 4), bytes({static_cast<uint8_t>(crc >> 24), static_cast<uint8_t>(crc >> 16),
                                   static_cast<uint8_t>(crc >> 8), static_cast<uint8_t>(crc)}));
  Header h;
  ASSERT_EQ(parse_header(d, &h), WireError::kNone);
  EXPECT_EQ(h.version, kVersion);
  EXPECT_EQ(h.type, PacketType::kData);
  EXPECT_EQ(h.dst_id, 0xdeadbeefu);
}

TEST(RudpHeader, EveryPacketTypeParses) {
  for (PacketType t : {PacketType::kInitial, PacketType::kRetry, PacketType::kAccept,
                       PacketType::kData}) {
    std::string d;
    begin_datagram(d, t, 42);
    seal_datagram(d);
    Header h;
    ASSERT_EQ(parse_header(d, &h), WireError::kNone);
    EXPECT_EQ(h.type, t);
    EXPECT_EQ(h.dst_id, 42u);
  }
}

TEST(RudpHeader, BeginDatagramClearsTheBuffer) {
  std::string d = "left over from the last packet";
  begin_datagram(d, PacketType::kData, 7);
  EXPECT_EQ(d.size(), kHeaderSize);
}

// CRC-32 detects every single-bit error: no flipped bit anywhere (header,
// checksum field, payload) gets a datagram through.
TEST(RudpHeader, EverySingleBitFlipIsRejected) {
  std::vector<std::string> grams;
  grams.push_back(data_datagram(1, ""));
  std::string frames;
  write_stream(frames, 1000, "some stream bytes", false);
  write_ack(frames, {{90, 100}, {10, 20}, {0, 3}}, 250);
  grams.push_back(data_datagram(0x01020304, frames));
  std::string init;
  begin_datagram(init, PacketType::kInitial, 0);
  write_initial(init, {.src_id = 99, .cookie = std::string(kCookieSize, 'c'), .params = {}});
  seal_datagram(init);
  grams.push_back(init);
  for (const std::string& g : grams) {
    Header h;
    ASSERT_EQ(parse_header(g, &h), WireError::kNone);
    size_t rejected = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string bad = g;
        bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
        const WireError e = parse_header(bad, &h);
        ASSERT_NE(e, WireError::kNone) << "byte " << i << " bit " << bit;
        // Only the version byte is checked before the checksum.
        EXPECT_EQ(e, i == 0 ? WireError::kBadVersion : WireError::kBadChecksum);
        ++rejected;
      }
    }
    EXPECT_EQ(rejected, g.size() * 8);
  }
}

TEST(RudpHeader, RandomCorruptionAndTruncationAreRejected) {
  std::string frames;
  write_unreliable(frames, 5, std::string(300, 'u'));
  const std::string g = data_datagram(77, frames);
  Header h;
  // Every truncation (the checksum covers the length too).
  for (size_t n = 0; n < g.size(); ++n) {
    const WireError e = parse_header(std::string_view(g).substr(0, n), &h);
    EXPECT_EQ(e, n < kHeaderSize ? WireError::kTooShort : WireError::kBadChecksum) << n;
  }
  // An extra byte on the end.
  EXPECT_EQ(parse_header(g + '\0', &h), WireError::kBadChecksum);
}

TEST(RudpHeader, WrongVersionTypeAndShortDatagrams) {
  const std::string good = data_datagram(5, "x");
  Header h;
  for (int v : {0, 2, 0x7f, 0xff}) {
    EXPECT_EQ(parse_header(resealed(good, 0, static_cast<uint8_t>(v)), &h),
              WireError::kBadVersion)
        << v;
  }
  for (int t : {0, 5, 6, 0x80, 0xff}) {
    EXPECT_EQ(parse_header(resealed(good, 1, static_cast<uint8_t>(t)), &h), WireError::kBadType)
        << t;
  }
  for (size_t n = 0; n < kHeaderSize; ++n) {
    EXPECT_EQ(parse_header(std::string(n, '\x01'), &h), WireError::kTooShort) << n;
  }
  // A bare 12-byte header is a complete datagram as far as the header goes.
  EXPECT_EQ(parse_header(good.substr(0, kHeaderSize - 1), &h), WireError::kTooShort);
}

// ---- INITIAL / RETRY / ACCEPT ----

Params odd_params() {
  Params p;
  p.max_message = kVarintMax;
  p.initial_window = 16384;
  p.idle_timeout_ms = 0;
  p.max_ack_delay_ms = 63;
  p.max_datagram = 65507;
  return p;
}

std::string initial_datagram(const Initial& in) {
  std::string d;
  begin_datagram(d, PacketType::kInitial, 0);
  write_initial(d, in);
  seal_datagram(d);
  return d;
}

TEST(RudpInitial, PaddedTo1200AndRoundTrips) {
  for (const std::string& cookie : {std::string(), std::string(kCookieSize, '\xab')}) {
    for (const Params& p : {Params{}, odd_params()}) {
      const Initial in{.src_id = 0x11223344, .cookie = cookie, .params = p};
      const std::string d = initial_datagram(in);
      EXPECT_EQ(d.size(), kInitialSize);
      Header h;
      ASSERT_EQ(parse_header(d, &h), WireError::kNone);
      EXPECT_EQ(h.type, PacketType::kInitial);
      EXPECT_EQ(h.dst_id, 0u);
      Initial out;
      ASSERT_EQ(parse_initial(std::string_view(d).substr(kHeaderSize), &out), WireError::kNone);
      EXPECT_EQ(out.src_id, in.src_id);
      EXPECT_EQ(out.cookie, in.cookie);
      EXPECT_EQ(out.params, in.params);
    }
  }
}

TEST(RudpInitial, ShorterThan1200IsRejected) {
  const std::string d = initial_datagram({.src_id = 1, .cookie = {}, .params = {}});
  const std::string_view body = std::string_view(d).substr(kHeaderSize);
  Initial out;
  // Every body shorter than the padded size fails (the fields all fit well
  // before the end, so from some point on it is the padding rule).
  for (size_t n = 0; n < body.size(); ++n) {
    const WireError e = parse_initial(body.substr(0, n), &out);
    EXPECT_NE(e, WireError::kNone) << n;
  }
  EXPECT_EQ(parse_initial(body.substr(0, body.size() - 1), &out), WireError::kTooShort);
  // Longer is fine (a datagram may be padded further).
  EXPECT_EQ(parse_initial(std::string(body) + std::string(100, '\0'), &out), WireError::kNone);
}

TEST(RudpInitial, BadCookieLengthsAndZeroIdRejected) {
  Initial out;
  for (size_t len : {size_t{0}, size_t{1}, kCookieSize - 1, kCookieSize, kCookieSize + 1,
                     size_t{255}}) {
    // A hand-built body: id, cookie length and bytes, valid parameters, padding.
    std::string body;
    Writer w(body);
    w.u32(7);
    w.u8(static_cast<uint8_t>(len));
    w.bytes(std::string(len, 'k'));
    const Params p;
    for (uint64_t v : {p.max_message, p.initial_window, p.idle_timeout_ms, p.max_ack_delay_ms,
                       p.max_datagram}) {
      w.varint(v);
    }
    body.resize(kInitialSize, '\0');
    const bool ok = len == 0 || len == kCookieSize;
    EXPECT_EQ(parse_initial(body, &out), ok ? WireError::kNone : WireError::kBadFrame) << len;
    if (ok) {
      EXPECT_EQ(out.cookie, std::string(len, 'k'));
    }
  }
  // src_id 0 is not a connection id.
  std::string d = initial_datagram({.src_id = 0, .cookie = {}, .params = {}});
  EXPECT_EQ(parse_initial(std::string_view(d).substr(kHeaderSize), &out), WireError::kBadFrame);
}

TEST(RudpInitial, MaxDatagramParamBounds) {
  Initial out;
  for (uint64_t md : {uint64_t{256}, uint64_t{1400}, uint64_t{65507}}) {
    Params p;
    p.max_datagram = md;
    const std::string d = initial_datagram({.src_id = 3, .cookie = {}, .params = p});
    EXPECT_EQ(parse_initial(std::string_view(d).substr(kHeaderSize), &out), WireError::kNone)
        << md;
  }
  for (uint64_t md : {uint64_t{0}, uint64_t{255}, uint64_t{65508}, kVarintMax}) {
    Params p;
    p.max_datagram = md;
    const std::string d = initial_datagram({.src_id = 3, .cookie = {}, .params = p});
    EXPECT_EQ(parse_initial(std::string_view(d).substr(kHeaderSize), &out), WireError::kBadFrame)
        << md;
  }
}

// RFC 9000 §18.2: max_ack_delay values of 2^14 or greater are invalid.
// Unbounded, a peer's 2^62 - 1 ms overflows every Duration built from it
// (the PTO, the ACK delay cap): signed overflow, undefined behaviour.
TEST(RudpParams, MaxAckDelayOf2To14OrMoreIsRejected) {
  for (uint64_t mad : {uint64_t{0}, uint64_t{5}, uint64_t{16383}, uint64_t{16384},
                       uint64_t{1} << 30, kVarintMax}) {
    const bool ok = mad < kMaxAckDelayLimitMs;
    Params p;
    p.max_ack_delay_ms = mad;
    const std::string d = initial_datagram({.src_id = 3, .cookie = {}, .params = p});
    Initial in;
    EXPECT_EQ(parse_initial(std::string_view(d).substr(kHeaderSize), &in),
              ok ? WireError::kNone : WireError::kBadFrame)
        << mad;
    std::string body;
    write_accept(body, {.src_id = 4, .params = p});
    Accept a;
    EXPECT_EQ(parse_accept(body, &a), ok ? WireError::kNone : WireError::kBadFrame) << mad;
    if (ok) {
      EXPECT_EQ(a.params.max_ack_delay_ms, mad);
    }
  }
}

TEST(RudpRetry, RoundTripAndBadCookieLengths) {
  std::string cookie;
  for (size_t i = 0; i < kCookieSize; ++i) cookie.push_back(static_cast<char>(i * 13));
  std::string body;
  write_retry(body, cookie);
  EXPECT_EQ(body.size(), 1 + kCookieSize);
  std::string got;
  ASSERT_EQ(parse_retry(body, &got), WireError::kNone);
  EXPECT_EQ(got, cookie);
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_EQ(parse_retry(std::string_view(body).substr(0, n), &got), WireError::kBadFrame) << n;
  }
  for (size_t len : {size_t{0}, size_t{1}, kCookieSize - 1, kCookieSize + 1, size_t{255}}) {
    std::string b;
    write_retry(b, std::string(len, 'r'));
    b.append(64, 'x');  // never short of bytes
    got = "unchanged";
    EXPECT_EQ(parse_retry(b, &got), WireError::kBadFrame) << len;
    EXPECT_EQ(got, "unchanged");
  }
}

TEST(RudpAccept, RoundTripTruncationAndZeroId) {
  for (const Params& p : {Params{}, odd_params()}) {
    std::string body;
    write_accept(body, {.src_id = 0xfeedface, .params = p});
    Accept a;
    ASSERT_EQ(parse_accept(body, &a), WireError::kNone);
    EXPECT_EQ(a.src_id, 0xfeedfaceu);
    EXPECT_EQ(a.params, p);
    for (size_t n = 0; n < body.size(); ++n) {
      EXPECT_EQ(parse_accept(std::string_view(body).substr(0, n), &a), WireError::kBadFrame) << n;
    }
  }
  std::string body;
  write_accept(body, {.src_id = 0, .params = {}});
  Accept a;
  EXPECT_EQ(parse_accept(body, &a), WireError::kBadFrame);
}

// ---- DATA frames ----

// A frame with its views copied out.
struct Got {
  FrameType type;
  std::vector<AckRange> ranges;
  uint64_t ack_delay_us = 0;
  uint64_t offset = 0;
  std::string data;
  EcnCounts ecn;
};

WireError parse(std::string_view payload, std::vector<Got>* out) {
  std::vector<AckRange> scratch;
  return for_each_frame(payload, scratch, [&](const Frame& f) {
    Got g{f.type, {}, 0, 0, std::string(f.data), {}};
    if (f.type == FrameType::kAck || f.type == FrameType::kAckEcn) {
      g.ranges = *f.ack_ranges;
      g.ack_delay_us = f.ack_delay_us;
      g.ecn = f.ecn;
    } else {
      g.offset = f.offset;
    }
    out->push_back(std::move(g));
  });
}

// Counts fn calls; a rejected packet must have none.
size_t calls_for(std::string_view payload, WireError* err) {
  std::vector<AckRange> scratch;
  size_t calls = 0;
  *err = for_each_frame(payload, scratch, [&](const Frame&) { ++calls; });
  return calls;
}

TEST(RudpAck, ExactBytesAndGapSemantics) {
  // Acked 10..12 and 5..7: largest 12, first range 2; unacked 8 and 9 (two
  // packets) make a gap field of 1; then a range length of 2.
  std::string f;
  write_ack(f, {{10, 12}, {5, 7}}, 3);
  EXPECT_EQ(f, bytes({0x02, 12, 3, 1, 2, 1, 2}));
  // Ranges one packet apart: gap 0; the last range reaches packet 0.
  f.clear();
  write_ack(f, {{5, 7}, {0, 3}}, 0);
  EXPECT_EQ(f, bytes({0x02, 7, 0, 1, 2, 0, 3}));
  std::vector<Got> got;
  ASSERT_EQ(parse(f, &got), WireError::kNone);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ranges, (std::vector<AckRange>{{5, 7}, {0, 3}}));
  // Single packet 0.
  f.clear();
  write_ack(f, {{0, 0}}, 0);
  EXPECT_EQ(f, bytes({0x02, 0, 0, 0, 0}));
}

// ACK_ECN: the ACK's fields, then ECT(0), ECT(1) and CE as varints.
TEST(RudpAckEcn, ExactBytesAndRoundTrip) {
  std::string f;
  const EcnCounts c{5, 0, 300};
  write_ack(f, {{10, 12}, {5, 7}}, 3, &c);
  EXPECT_EQ(f, bytes({0x09, 12, 3, 1, 2, 1, 2, 5, 0, 0x41, 0x2c}));
  EXPECT_EQ(ack_frame_size({{10, 12}, {5, 7}}, 3, &c), f.size());
  std::vector<Got> got;
  ASSERT_EQ(parse(f, &got), WireError::kNone);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, FrameType::kAckEcn);
  EXPECT_EQ(got[0].ranges, (std::vector<AckRange>{{10, 12}, {5, 7}}));
  EXPECT_EQ(got[0].ack_delay_us, 3u);
  EXPECT_EQ(got[0].ecn, c);
  // Large counts, every varint length.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    const EcnCounts r{rng() >> (2 + rng() % 62), rng() >> (2 + rng() % 62),
                      rng() >> (2 + rng() % 62)};
    std::string g;
    write_ack(g, {{100, 200}}, i, &r);
    EXPECT_EQ(ack_frame_size({{100, 200}}, i, &r), g.size());
    got.clear();
    ASSERT_EQ(parse(g, &got), WireError::kNone);
    EXPECT_EQ(got[0].ecn, r);
  }
  // A plain ACK carries no counts.
  std::string a;
  write_ack(a, {{10, 12}}, 3);
  got.clear();
  ASSERT_EQ(parse(a, &got), WireError::kNone);
  EXPECT_EQ(got[0].type, FrameType::kAck);
  EXPECT_FALSE(got[0].ecn.any());
}

TEST(RudpAckEcn, TruncatedCountsAreErrors) {
  std::string f;
  const EcnCounts c{1 << 20, 70, 1 << 10};
  write_ack(f, {{10, 12}}, 3, &c);
  for (size_t n = 1; n < f.size(); ++n) {
    WireError e;
    EXPECT_EQ(calls_for(std::string_view(f).substr(0, n), &e), 0u) << n;
    EXPECT_EQ(e, WireError::kBadFrame) << n;
  }
  // An ACK frame's bytes under the ACK_ECN type lack the counts.
  std::string a;
  write_ack(a, {{10, 12}}, 3);
  a[0] = static_cast<char>(FrameType::kAckEcn);
  WireError e;
  EXPECT_EQ(calls_for(a, &e), 0u);
  EXPECT_EQ(e, WireError::kBadFrame);
}

TEST(RudpAckEcn, CountsCannotGoBackwards) {
  const EcnCounts a{10, 0, 2};
  EXPECT_TRUE(ecn_counts_advance(a, a));
  EXPECT_TRUE(ecn_counts_advance(a, {11, 0, 2}));
  EXPECT_TRUE(ecn_counts_advance(a, {10, 1, 5}));
  EXPECT_TRUE(ecn_counts_advance({}, a));
  EXPECT_FALSE(ecn_counts_advance(a, {9, 0, 2}));
  EXPECT_FALSE(ecn_counts_advance(a, {10, 0, 1}));
  EXPECT_FALSE(ecn_counts_advance({0, 3, 0}, {20, 2, 20}));
}

// Random descending, disjoint, non-adjacent ranges (gaps >= 1 packet).
std::vector<AckRange> random_ranges(std::mt19937_64& rng, size_t n, bool to_zero,
                                    uint64_t top) {
  std::vector<AckRange> r;
  uint64_t high = top;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t len = rng() % 4 == 0 ? 0 : rng() % 50;
    uint64_t low = high >= len ? high - len : 0;
    r.push_back({low, high});
    if (i + 1 < n) {
      const uint64_t gap = rng() % 3 == 0 ? 0 : rng() % 1000;  // gap field
      if (low < gap + 2 + 50) break;                           // no room left
      high = low - gap - 2;
    }
  }
  if (to_zero) {
    // Shift everything down so the lowest range starts at packet 0.
    const uint64_t shift = r.back().low;
    for (AckRange& a : r) {
      a.low -= shift;
      a.high -= shift;
    }
  }
  return r;
}

TEST(RudpAck, RoundTripsOneTo32Ranges) {
  std::mt19937_64 rng(2024);
  int runs = 0;
  for (size_t n = 1; n <= 32; ++n) {
    for (int rep = 0; rep < 40; ++rep) {
      const uint64_t top = rep % 3 == 0 ? kVarintMax : 100000 + rng() % (uint64_t{1} << 40);
      const std::vector<AckRange> ranges = random_ranges(rng, n, rep % 2 == 0, top);
      const uint64_t delay = rng() >> (2 + rng() % 62);
      std::string f;
      write_ack(f, ranges, delay);
      ASSERT_EQ(f.size(), ack_frame_size(ranges, delay));
      std::vector<Got> got;
      ASSERT_EQ(parse(f, &got), WireError::kNone);
      ASSERT_EQ(got.size(), 1u);
      EXPECT_EQ(got[0].type, FrameType::kAck);
      EXPECT_EQ(got[0].ranges, ranges);
      EXPECT_EQ(got[0].ack_delay_us, delay);
      ++runs;
    }
  }
  EXPECT_EQ(runs, 32 * 40);
}

TEST(RudpAck, AllGapsZeroDownToPacketZero) {
  // 0, 2, 4, ..., 62 acked: 32 single-packet ranges, every gap field 0.
  std::vector<AckRange> ranges;
  for (uint64_t p = 62;; p -= 2) {
    ranges.push_back({p, p});
    if (p == 0) break;
  }
  ASSERT_EQ(ranges.size(), 32u);
  std::string f;
  write_ack(f, ranges, 1);
  EXPECT_EQ(f.size(), 1 + 1 + 1 + 1 + 1 + 31 * 2u);
  EXPECT_EQ(f.size(), ack_frame_size(ranges, 1));
  for (size_t i = 5; i < f.size(); ++i) EXPECT_EQ(f[i], 0) << i;
  std::vector<Got> got;
  ASSERT_EQ(parse(f, &got), WireError::kNone);
  EXPECT_EQ(got[0].ranges, ranges);
}

std::string raw_ack(std::initializer_list<uint64_t> fields) {
  std::string f;
  Writer w(f);
  w.u8(static_cast<uint8_t>(FrameType::kAck));
  for (uint64_t v : fields) w.varint(v);
  return f;
}

TEST(RudpAck, MalformedAreRejected) {
  WireError e;
  // largest, delay, count, first[, gap, len]...
  EXPECT_EQ(calls_for(raw_ack({5, 0, 0, 6}), &e), 0u);  // first range past packet 0
  EXPECT_EQ(e, WireError::kBadAckRanges);
  EXPECT_EQ(calls_for(raw_ack({5, 0, 0, 5}), &e), 1u);  // exactly down to 0
  EXPECT_EQ(e, WireError::kNone);
  // A further range after one that reached 0.
  EXPECT_EQ(calls_for(raw_ack({5, 0, 1, 5, 0, 0}), &e), 0u);
  EXPECT_EQ(e, WireError::kBadAckRanges);
  // prev low 2, gap 0 -> high 0: only length 0 fits.
  EXPECT_EQ(calls_for(raw_ack({5, 0, 1, 3, 0, 0}), &e), 1u);
  EXPECT_EQ(e, WireError::kNone);
  EXPECT_EQ(calls_for(raw_ack({5, 0, 1, 3, 0, 1}), &e), 0u);
  EXPECT_EQ(e, WireError::kBadAckRanges);
  // prev low 2, gap 1 -> high would be -1.
  EXPECT_EQ(calls_for(raw_ack({5, 0, 1, 3, 1, 0}), &e), 0u);
  EXPECT_EQ(e, WireError::kBadAckRanges);
  // Huge gap and length fields.
  EXPECT_EQ(calls_for(raw_ack({100, 0, 1, 0, kVarintMax, 0}), &e), 0u);
  EXPECT_EQ(e, WireError::kBadAckRanges);
  EXPECT_EQ(calls_for(raw_ack({100, 0, 1, 0, 0, kVarintMax}), &e), 0u);
  EXPECT_EQ(e, WireError::kBadAckRanges);
  EXPECT_EQ(calls_for(raw_ack({kVarintMax, 0, 0, kVarintMax}), &e), 1u);  // 0..2^62-1
  EXPECT_EQ(e, WireError::kNone);
  // Fewer ranges than announced.
  EXPECT_EQ(calls_for(raw_ack({100, 0, 2, 0, 1, 1}), &e), 0u);
  EXPECT_EQ(e, WireError::kBadFrame);
  EXPECT_EQ(calls_for(raw_ack({100, 0, 1, 0, 1}), &e), 0u);
  EXPECT_EQ(e, WireError::kBadFrame);
  // The bad ACK poisons the frames around it too.
  std::string p;
  write_simple(p, FrameType::kPing);
  p += raw_ack({5, 0, 0, 6});
  write_max_data(p, 10);
  EXPECT_EQ(calls_for(p, &e), 0u);
  EXPECT_EQ(e, WireError::kBadAckRanges);
}

TEST(RudpAck, AbsurdRangeCountsAllocateNothing) {
  for (uint64_t count : {uint64_t{3}, uint64_t{1000}, uint64_t{1} << 20, uint64_t{1} << 40,
                         kVarintMax}) {
    // A few real ranges' worth of bytes, then the end of the packet.
    std::string f = raw_ack({1000, 0, count, 0});
    Writer w(f);
    for (int i = 0; i < 4; ++i) w.varint(1);  // two (gap, length) pairs
    std::vector<AckRange> scratch;  // fresh: no capacity
    size_t calls = 0;
    const WireError e = for_each_frame(f, scratch, [&](const Frame&) { ++calls; });
    EXPECT_EQ(e, WireError::kBadFrame) << count;
    EXPECT_EQ(calls, 0u);
    // Never sized by the count: at most what the bytes could describe.
    EXPECT_LE(scratch.capacity(), 8u) << count;
  }
  // A count that the bytes could hold (2 bytes each) but that are not there
  // as valid ranges still allocates only for the bytes present.
  std::string f = raw_ack({kVarintMax, 0, 600, 0});
  f.append(1200, '\0');  // 600 x (gap 0, len 0): valid
  std::vector<Got> got;
  EXPECT_EQ(parse(f, &got), WireError::kNone);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ranges.size(), 601u);
  EXPECT_EQ(got[0].ranges.back().high, kVarintMax - 1200);
}

TEST(RudpFrames, EveryTypeRoundTrips) {
  std::string p;
  write_simple(p, FrameType::kPing);
  write_ack(p, {{40, 50}, {0, 0}}, 1234);
  write_stream(p, 0, "first bytes", false);
  write_stream(p, (uint64_t{1} << 40) + 3, "", false);
  write_stream(p, 77, "the end", true);
  write_max_data(p, kVarintMax);
  write_unreliable(p, 9, std::string(200, 'z'));
  write_unreliable(p, kVarintMax, "");
  write_ack(p, {{7, 7}}, 0);  // a second ACK reuses the scratch ranges
  write_reset(p, 0xbad);
  write_simple(p, FrameType::kClose);
  std::vector<Got> got;
  ASSERT_EQ(parse(p, &got), WireError::kNone);
  ASSERT_EQ(got.size(), 11u);
  EXPECT_EQ(got[0].type, FrameType::kPing);
  EXPECT_EQ(got[1].type, FrameType::kAck);
  EXPECT_EQ(got[1].ranges, (std::vector<AckRange>{{40, 50}, {0, 0}}));
  EXPECT_EQ(got[1].ack_delay_us, 1234u);
  EXPECT_EQ(got[2].type, FrameType::kStream);
  EXPECT_EQ(got[2].offset, 0u);
  EXPECT_EQ(got[2].data, "first bytes");
  EXPECT_EQ(got[3].type, FrameType::kStream);
  EXPECT_EQ(got[3].offset, (uint64_t{1} << 40) + 3);
  EXPECT_EQ(got[3].data, "");
  EXPECT_EQ(got[4].type, FrameType::kStreamFin);
  EXPECT_EQ(got[4].offset, 77u);
  EXPECT_EQ(got[4].data, "the end");
  EXPECT_EQ(got[5].type, FrameType::kMaxData);
  EXPECT_EQ(got[5].offset, kVarintMax);
  EXPECT_EQ(got[6].type, FrameType::kUnreliable);
  EXPECT_EQ(got[6].offset, 9u);
  EXPECT_EQ(got[6].data, std::string(200, 'z'));
  EXPECT_EQ(got[7].type, FrameType::kUnreliable);
  EXPECT_EQ(got[7].offset, kVarintMax);
  EXPECT_EQ(got[8].type, FrameType::kAck);
  EXPECT_EQ(got[8].ranges, (std::vector<AckRange>{{7, 7}}));
  EXPECT_EQ(got[9].type, FrameType::kReset);
  EXPECT_EQ(got[9].offset, 0xbadu);
  EXPECT_EQ(got[10].type, FrameType::kClose);
}

TEST(RudpFrames, HeaderSizesMatchWhatIsWritten) {
  for (uint64_t off : {uint64_t{0}, uint64_t{63}, uint64_t{64}, uint64_t{1} << 30, kVarintMax - 5}) {
    for (size_t len : {size_t{0}, size_t{5}, size_t{64}, size_t{1400}}) {
      std::string f;
      write_stream(f, off, std::string(len, 's'), false);
      EXPECT_EQ(f.size(), stream_header_size(off, len) + len);
    }
  }
}

TEST(RudpFrames, EmptyPayloadRejected) {
  WireError e;
  EXPECT_EQ(calls_for("", &e), 0u);
  EXPECT_EQ(e, WireError::kBadFrame);
}

TEST(RudpFrames, UnknownTypesRejectedWhole) {
  for (int t = 0; t < 256; ++t) {
    if (t >= 0x01 && t <= 0x09) continue;
    std::string p;
    write_simple(p, FrameType::kPing);
    write_stream(p, 0, "abc", false);
    p.push_back(static_cast<char>(t));
    write_simple(p, FrameType::kClose);
    WireError e;
    EXPECT_EQ(calls_for(p, &e), 0u) << t;
    EXPECT_EQ(e, WireError::kBadFrame) << t;
    EXPECT_EQ(calls_for(std::string(1, static_cast<char>(t)), &e), 0u) << t;
    EXPECT_EQ(e, WireError::kBadFrame);
  }
}

// A packet cut anywhere inside a frame is rejected whole: fn is called for
// no frame, not even the complete ones before the cut. Cut exactly between
// frames it is a valid, shorter packet.
TEST(RudpFrames, TruncatedAtEveryByteIsRejectedWhole) {
  std::string p;
  std::vector<size_t> ends;  // where each frame ends
  auto mark = [&] { ends.push_back(p.size()); };
  write_simple(p, FrameType::kPing), mark();
  write_ack(p, {{1 << 20, (1 << 20) + 5}, {300, 4000}, {0, 1}}, 70000), mark();
  write_stream(p, 1 << 16, std::string(70, 'a'), false), mark();
  write_max_data(p, 1ull << 35), mark();
  write_unreliable(p, 16384, "unrel"), mark();
  write_stream(p, (1 << 16) + 70, "fin", true), mark();
  write_reset(p, 3), mark();
  const EcnCounts ecn{70000, 1, 1ull << 31};
  write_ack(p, {{9, 12}, {0, 2}}, 5, &ecn), mark();
  write_simple(p, FrameType::kClose), mark();
  std::vector<Got> all;
  ASSERT_EQ(parse(p, &all), WireError::kNone);
  ASSERT_EQ(all.size(), ends.size());
  for (size_t n = 0; n < p.size(); ++n) {
    size_t whole = 0;
    while (whole < ends.size() && ends[whole] <= n) ++whole;
    const bool at_boundary = whole > 0 && ends[whole - 1] == n;
    WireError e;
    const size_t calls = calls_for(std::string_view(p).substr(0, n), &e);
    if (at_boundary) {
      EXPECT_EQ(e, WireError::kNone) << n;
      EXPECT_EQ(calls, whole) << n;
    } else {
      EXPECT_NE(e, WireError::kNone) << n;
      EXPECT_EQ(calls, 0u) << n;
    }
  }
  // And as whole datagrams: the checksum rejects any truncation.
  const std::string g = data_datagram(9, p);
  Header h;
  for (size_t n = 0; n < g.size(); ++n) {
    EXPECT_NE(parse_header(std::string_view(g).substr(0, n), &h), WireError::kNone) << n;
  }
}

TEST(RudpFrames, StreamLengthsAndOffsetLimits) {
  WireError e;
  std::string p;
  // offset + length may reach 2^62 - 1 exactly (RFC 9000 §4.5), no further.
  write_stream(p, kVarintMax, "", false);
  EXPECT_EQ(calls_for(p, &e), 1u);
  p.clear();
  write_stream(p, kVarintMax - 3, "abc", true);
  EXPECT_EQ(calls_for(p, &e), 1u);
  for (bool fin : {false, true}) {
    p.clear();
    write_stream(p, kVarintMax, "a", fin);
    EXPECT_EQ(calls_for(p, &e), 0u);
    EXPECT_EQ(e, WireError::kBadFrame);
    p.clear();
    write_stream(p, kVarintMax - 2, "abc", fin);
    EXPECT_EQ(calls_for(p, &e), 0u);
    EXPECT_EQ(e, WireError::kBadFrame);
  }
  // Unreliable sequence numbers are not stream offsets.
  p.clear();
  write_unreliable(p, kVarintMax, "abc");
  EXPECT_EQ(calls_for(p, &e), 1u);
  // A length past the end of the packet, up to the largest varint.
  for (FrameType t : {FrameType::kStream, FrameType::kStreamFin, FrameType::kUnreliable}) {
    for (uint64_t len : {uint64_t{4}, uint64_t{1000}, uint64_t{1} << 32, kVarintMax}) {
      p.clear();
      Writer w(p);
      w.u8(static_cast<uint8_t>(t));
      w.varint(0);
      w.varint(len);
      w.bytes("abc");
      EXPECT_EQ(calls_for(p, &e), 0u);
      EXPECT_EQ(e, WireError::kBadFrame);
    }
  }
}

TEST(RudpFrames, ErrorNames) {
  for (WireError e : {WireError::kNone, WireError::kTooShort, WireError::kBadVersion,
                      WireError::kBadChecksum, WireError::kBadType, WireError::kBadFrame,
                      WireError::kBadAckRanges}) {
    EXPECT_STRNE(to_string(e), "?");
  }
}

}  // namespace
}  // namespace sluice::rudp
