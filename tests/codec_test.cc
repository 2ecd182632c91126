// Framing codec tests: every codec's frames must come out identical however
// the byte stream is split, incomplete input must consume nothing, and
// oversize / corrupt input must give the typed error. No sockets.
#include "codec/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec/delimiter.h"
#include "codec/factory.h"
#include "codec/fixed_length.h"
#include "codec/length_field.h"
#include "base/buffer.h"

namespace sluice::codec {
namespace {

using namespace std::string_literals;

// One decoder output: a frame {kNone, bytes} or an error {errc, ""}.
using Event = std::pair<CodecErrc, std::string>;
using Events = std::vector<Event>;

Event F(std::string s) { return {CodecErrc::kNone, std::move(s)}; }
Event E(CodecErrc e) { return {e, ""}; }

Events frames_of(const std::vector<std::string>& payloads) {
  Events ev;
  for (const auto& p : payloads) ev.push_back(F(p));
  return ev;
}

struct FeedResult {
  Events events;
  size_t pending = 0;      // bytes still buffered at the end
  size_t max_pending = 0;  // most bytes held between reads
};

// Plays the connection's role: appends each chunk, then decodes until the
// decoder needs more. Checks the decoder contract on every call. With
// `recover`, decoding continues after an error (discarding mode);
// otherwise the first error ends the stream, as the server closes then.
FeedResult feed(const Codec& codec, const std::vector<std::string_view>& chunks,
                bool recover = false) {
  FeedResult out;
  auto dec = codec.new_decoder();
  std::string pending;
  for (std::string_view chunk : chunks) {
    pending.append(chunk);
    for (;;) {
      const DecodeResult r = dec->decode(pending);
      EXPECT_LE(r.consumed, pending.size());
      if (r.status == DecodeStatus::kFrame) {
        EXPECT_GT(r.consumed, 0u);
        // The frame is a view into the input.
        EXPECT_GE(r.frame.data(), pending.data());
        EXPECT_LE(r.frame.data() + r.frame.size(),
                  pending.data() + pending.size());
        out.events.push_back(F(std::string(r.frame)));
        pending.erase(0, r.consumed);
        continue;
      }
      if (r.status == DecodeStatus::kError) {
        out.events.push_back(E(r.error));
        pending.erase(0, r.consumed);
        if (!recover) {
          out.pending = pending.size();
          return out;
        }
        continue;
      }
      // kNeedMore: only a discarding decoder may consume here.
      if (!recover) {
        EXPECT_EQ(r.consumed, 0u) << "incomplete input must consume nothing";
      }
      pending.erase(0, r.consumed);
      if (r.consumed == 0 || pending.empty()) break;
    }
    out.max_pending = std::max(out.max_pending, pending.size());
  }
  out.pending = pending.size();
  return out;
}

std::vector<std::string_view> chunk_every(std::string_view s, size_t n) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size(); i += n) out.push_back(s.substr(i, n));
  return out;
}

std::vector<std::string_view> chunk_random(std::string_view s,
                                           std::mt19937& rng, size_t max) {
  std::vector<std::string_view> out;
  std::uniform_int_distribution<size_t> len(1, max);
  for (size_t i = 0; i < s.size();) {
    const size_t n = std::min(len(rng), s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// The stream must decode to `want` whole, split in two at every point, fed
// one byte at a time, and in random chunkings; nothing may be left over.
void expect_any_split(const Codec& codec, std::string_view stream,
                      const Events& want, bool recover = false) {
  auto check = [&](const std::vector<std::string_view>& chunks,
                   const std::string& how) {
    const FeedResult r = feed(codec, chunks, recover);
    // After a terminal error the rest of the stream is never decoded.
    const bool stopped =
        !recover && !want.empty() && want.back().first != CodecErrc::kNone;
    if (r.events != want || (!stopped && r.pending != 0)) {
      ADD_FAILURE() << "split " << how << ": got " << r.events.size()
                    << " events (want " << want.size() << "), " << r.pending
                    << " bytes left";
      return false;
    }
    return true;
  };
  if (!check({stream}, "whole")) return;
  for (size_t s = 0; s <= stream.size(); ++s) {
    if (!check({stream.substr(0, s), stream.substr(s)},
               "at " + std::to_string(s))) {
      return;
    }
  }
  if (!check(chunk_every(stream, 1), "1-byte")) return;
  std::mt19937 rng(12345);
  for (int i = 0; i < 20; ++i) {
    const size_t max = size_t{1} << (i % 10);
    if (!check(chunk_random(stream, rng, max),
               "random #" + std::to_string(i))) {
      return;
    }
  }
}

std::string encode_all(const Codec& codec,
                       const std::vector<std::string>& payloads) {
  Buffer buf;
  for (const auto& p : payloads) {
    EXPECT_TRUE(codec.encode(p, buf)) << "payload of " << p.size();
  }
  return std::string(buf.view());
}

// Expects encode() to refuse `payload` and to leave `out` untouched.
void expect_refused(const Codec& codec, std::string_view payload) {
  Buffer buf;
  buf.append("keep");
  EXPECT_FALSE(codec.encode(payload, buf)) << "payload of " << payload.size();
  EXPECT_EQ(buf.view(), "keep");
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

// Reference length-field writer, independent of the code under test.
std::string field(uint64_t v, int width, ByteOrder order) {
  std::string s(static_cast<size_t>(width), '\0');
  for (int i = 0; i < width; ++i) {
    const char b = static_cast<char>((v >> (8 * i)) & 0xff);
    s[static_cast<size_t>(order == ByteOrder::kBig ? width - 1 - i : i)] = b;
  }
  return s;
}

std::string be32(uint32_t v) { return field(v, 4, ByteOrder::kBig); }

LengthFieldOptions netty(size_t offset, int width, int64_t adj, size_t strip) {
  LengthFieldOptions o;
  o.length_field_offset = offset;
  o.length_field_length = width;
  o.length_adjustment = adj;
  o.initial_bytes_to_strip = strip;
  return o;
}

// ------------------------------------------------------------ length field

TEST(LengthFieldCodec, RoundTripEveryWidthAndByteOrder) {
  for (int width : {1, 2, 4, 8}) {
    for (ByteOrder order : {ByteOrder::kBig, ByteOrder::kLittle}) {
      SCOPED_TRACE("width " + std::to_string(width) +
                   (order == ByteOrder::kBig ? " big" : " little"));
      LengthFieldOptions o = length_prefix_options(width);
      o.byte_order = order;
      const LengthFieldCodec codec(o);
      const std::vector<std::string> payloads = {
          "", "x", "hello", pattern(width == 1 ? 255 : 3000), "", "yz"};
      const std::string wire = encode_all(codec, payloads);
      // The encoder writes exactly [field][payload] per frame.
      std::string want_wire;
      for (const auto& p : payloads) {
        want_wire += field(p.size(), width, order) + p;
      }
      ASSERT_EQ(wire, want_wire);
      expect_any_split(codec, wire, frames_of(payloads));
    }
  }
}

TEST(LengthFieldCodec, DefaultHelperIsFourByteBigEndianStripped) {
  const LengthFieldOptions o = length_prefix_options();
  EXPECT_EQ(o.length_field_length, 4);
  EXPECT_EQ(o.byte_order, ByteOrder::kBig);
  EXPECT_EQ(o.length_field_offset, 0u);
  EXPECT_EQ(o.length_adjustment, 0);
  EXPECT_EQ(o.initial_bytes_to_strip, 4u);
  EXPECT_EQ(o.max_frame, size_t{1} << 20);
  EXPECT_TRUE(o.fail_fast);
  const LengthFieldCodec codec(o);
  Buffer buf;
  ASSERT_TRUE(codec.encode("HELLO", buf));
  EXPECT_EQ(buf.view(), "\0\0\0\x05HELLO"s);
  EXPECT_EQ(codec.name(), "length");
}

TEST(LengthFieldCodec, IncompleteInputConsumesNothing) {
  const LengthFieldCodec codec(length_prefix_options());
  auto dec = codec.new_decoder();
  const std::string frame = be32(3) + "abc";
  for (size_t n = 0; n < frame.size(); ++n) {
    const DecodeResult r = dec->decode(std::string_view(frame).substr(0, n));
    EXPECT_EQ(r.status, DecodeStatus::kNeedMore) << n;
    EXPECT_EQ(r.consumed, 0u) << n;
  }
  const std::string more = frame + be32(1);  // r.frame points into it
  const DecodeResult r = dec->decode(more);
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  EXPECT_EQ(r.consumed, 7u);
  EXPECT_EQ(r.frame, "abc");
}

TEST(LengthFieldCodec, CoalescedFramesAllComeOut) {
  const LengthFieldCodec codec(length_prefix_options(2));
  std::vector<std::string> payloads;
  for (int i = 0; i < 1000; ++i) payloads.push_back(pattern(i % 70));
  const FeedResult r = feed(codec, {encode_all(codec, payloads)});
  EXPECT_EQ(r.events, frames_of(payloads));
  EXPECT_EQ(r.pending, 0u);
}

TEST(LengthFieldCodec, DrainFramesLoopsOverABuffer) {
  const LengthFieldCodec codec(length_prefix_options());
  Buffer in;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(codec.encode(pattern(i), in));
  in.append(be32(9) + "part");  // an incomplete frame stays buffered
  auto dec = codec.new_decoder();
  std::vector<std::string> got;
  EXPECT_EQ(
      drain_frames(*dec, in, [&](std::string_view f) { got.emplace_back(f); }),
      CodecErrc::kNone);
  ASSERT_EQ(got.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], pattern(i));
  EXPECT_EQ(in.view(), be32(9) + "part");
  in.append(be32(0x7fffffff));
  EXPECT_EQ(drain_frames(*dec, in, [](std::string_view) {}),
            CodecErrc::kNone);  // still inside the 9-byte frame
  in.retrieve_all();
  in.append(be32(0x7fffffff));
  EXPECT_EQ(drain_frames(*dec, in, [](std::string_view) {}),
            CodecErrc::kFrameTooLong);
}

// Netty's LengthFieldBasedFrameDecoder javadoc examples. Its 3-byte-field
// examples are shown with a 2-byte field (widths here are 1/2/4/8).
TEST(LengthFieldCodec, NettyExamples) {
  struct Case {
    const char* what;
    LengthFieldOptions o;
    std::string wire;
    std::string frame;
  };
  const std::string hw = "HELLO, WORLD";  // 12 bytes
  const std::vector<Case> cases = {
      {"offset 0, strip 0", netty(0, 2, 0, 0), "\x00\x0c"s + hw,
       "\x00\x0c"s + hw},
      {"offset 0, strip header", netty(0, 2, 0, 2), "\x00\x0c"s + hw, hw},
      {"length counts the header", netty(0, 2, -2, 0), "\x00\x0e"s + hw,
       "\x00\x0e"s + hw},
      {"header before the length", netty(2, 2, 0, 0), "\xca\xfe\x00\x0c"s + hw,
       "\xca\xfe\x00\x0c"s + hw},
      {"header after the length", netty(0, 2, 2, 0), "\x00\x0c\xca\xfe"s + hw,
       "\x00\x0c\xca\xfe"s + hw},
      {"HDR1 LEN HDR2, strip HDR1+LEN", netty(1, 2, 1, 3),
       "\xca\x00\x0c\xfe"s + hw, "\xfe"s + hw},
      {"HDR1 LEN HDR2, length counts all", netty(1, 2, -3, 3),
       "\xca\x00\x10\xfe"s + hw, "\xfe"s + hw},
      {"HDR1 LEN HDR2, strip all headers", netty(1, 2, 1, 4),
       "\xca\x00\x0c\xfe"s + hw, hw},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const LengthFieldCodec codec(c.o);
    // Twice in a row, so the second frame starts where the first ended.
    expect_any_split(codec, c.wire + c.wire, {F(c.frame), F(c.frame)});
  }
}

// Every width x byte order x offset x adjustment x strip, against wire
// bytes built by the reference writer.
TEST(LengthFieldCodec, OptionMatrix) {
  for (int width : {1, 2, 4, 8}) {
    for (ByteOrder order : {ByteOrder::kBig, ByteOrder::kLittle}) {
      for (size_t offset : {size_t{0}, size_t{3}}) {
        const size_t header_end = offset + static_cast<size_t>(width);
        const int64_t hdr = static_cast<int64_t>(header_end);
        for (int64_t adj : {int64_t{0}, -hdr, int64_t{2}}) {
          const size_t fixed = header_end + (adj > 0 ? adj : 0);
          for (size_t strip : {size_t{0}, header_end, fixed}) {
            SCOPED_TRACE("width " + std::to_string(width) + " order " +
                         std::to_string(static_cast<int>(order)) + " offset " +
                         std::to_string(offset) + " adj " +
                         std::to_string(adj) + " strip " +
                         std::to_string(strip));
            LengthFieldOptions o = netty(offset, width, adj, strip);
            o.byte_order = order;
            const LengthFieldCodec codec(o);
            std::string wire;
            Events want;
            for (size_t body : {0, 1, 2, 7, 200}) {
              // body = bytes after the field = value + adj.
              const int64_t value = static_cast<int64_t>(body) - adj;
              if (value < 0) continue;
              std::string frame =
                  std::string(offset, 'P') +
                  field(static_cast<uint64_t>(value), width, order) +
                  pattern(body);
              want.push_back(F(frame.substr(strip)));
              wire += frame;
              if (offset == 0) {
                // The encoder writes the same bytes for offset 0.
                Buffer buf;
                ASSERT_TRUE(codec.encode(pattern(body), buf));
                EXPECT_EQ(buf.view(), frame);
              }
            }
            expect_any_split(codec, wire, want);
          }
        }
      }
    }
  }
}

TEST(LengthFieldCodec, MaxFrameCountsTheHeader) {
  LengthFieldOptions o = length_prefix_options(4, 64);
  const LengthFieldCodec codec(o);
  Buffer buf;
  EXPECT_TRUE(codec.encode(pattern(60), buf));  // 4 + 60 == 64
  expect_refused(codec, pattern(61));
  expect_any_split(codec, std::string(buf.view()), {F(pattern(60))});
  const FeedResult r = feed(codec, {be32(61) + pattern(61)});
  EXPECT_EQ(r.events, Events{E(CodecErrc::kFrameTooLong)});
}

TEST(LengthFieldCodec, OversizeFailFastErrorsOnTheHeader) {
  const LengthFieldCodec codec(length_prefix_options(4, 64));
  auto dec = codec.new_decoder();
  const std::string head = be32(100);
  for (size_t n = 0; n < 4; ++n) {
    EXPECT_EQ(dec->decode(head.substr(0, n)).status, DecodeStatus::kNeedMore);
  }
  const DecodeResult r = dec->decode(head);
  EXPECT_EQ(r.status, DecodeStatus::kError);
  EXPECT_EQ(r.error, CodecErrc::kFrameTooLong);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(r.error_length, 104u);
  // A good frame before it still comes out, then the error.
  expect_any_split(codec, be32(1) + "a" + head + pattern(100),
                   {F("a"), E(CodecErrc::kFrameTooLong)});
}

TEST(LengthFieldCodec, OversizeDiscardingModeRecovers) {
  LengthFieldOptions o = length_prefix_options(4, 64);
  o.fail_fast = false;
  const LengthFieldCodec codec(o);
  const std::string stream = be32(1) + "a" + be32(100) + pattern(100) +
                             be32(2) + "ok" + be32(0) + be32(200) +
                             pattern(200) + be32(3) + "end";
  const Events want = {F("a"), E(CodecErrc::kFrameTooLong), F("ok"),
                       F(""),  E(CodecErrc::kFrameTooLong), F("end")};
  expect_any_split(codec, stream, want, /*recover=*/true);
  // Discarded bytes are dropped as they arrive: only part of a good frame
  // is ever held.
  for (size_t step : {1, 7, 50}) {
    const FeedResult r = feed(codec, chunk_every(stream, step), true);
    EXPECT_EQ(r.events, want);
    EXPECT_LT(r.max_pending, 64u) << step;
  }
}

TEST(LengthFieldCodec, DiscardingReportsOnceWithTheFrameLength) {
  LengthFieldOptions o = length_prefix_options(4, 64);
  o.fail_fast = false;
  const LengthFieldCodec codec(o);
  auto dec = codec.new_decoder();
  // The header and 10 bytes: all 14 dropped, no error yet.
  DecodeResult r = dec->decode(be32(100) + pattern(10));
  EXPECT_EQ(r.status, DecodeStatus::kNeedMore);
  EXPECT_EQ(r.consumed, 14u);
  r = dec->decode(pattern(89));
  EXPECT_EQ(r.status, DecodeStatus::kNeedMore);
  EXPECT_EQ(r.consumed, 89u);
  // The last byte of the frame, then the next frame.
  const std::string rest = "z" + be32(1) + "n";
  r = dec->decode(rest);
  EXPECT_EQ(r.status, DecodeStatus::kError);
  EXPECT_EQ(r.error, CodecErrc::kFrameTooLong);
  EXPECT_EQ(r.consumed, 1u);
  EXPECT_EQ(r.error_length, 104u);
  r = dec->decode(std::string_view(rest).substr(1));
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  EXPECT_EQ(r.frame, "n");
  // A whole oversize frame in one buffer is dropped and reported at once.
  auto dec2 = codec.new_decoder();
  r = dec2->decode(be32(100) + pattern(100) + be32(0));
  EXPECT_EQ(r.status, DecodeStatus::kError);
  EXPECT_EQ(r.consumed, 104u);
}

TEST(LengthFieldCodec, AllOnesFourByteLengthFailsWithoutBuffering) {
  const LengthFieldCodec codec(length_prefix_options());
  auto dec = codec.new_decoder();
  const DecodeResult r = dec->decode("\xff\xff\xff\xff"s);
  EXPECT_EQ(r.status, DecodeStatus::kError);
  EXPECT_EQ(r.error, CodecErrc::kFrameTooLong);
  EXPECT_EQ(r.error_length, 0xffffffffull + 4);
  // Byte by byte: the error comes with the 4th byte, nothing after it.
  const std::string stream = "\xff\xff\xff\xff"s + std::string(1000, 'x');
  const FeedResult fr = feed(codec, chunk_every(stream, 1));
  EXPECT_EQ(fr.events, Events{E(CodecErrc::kFrameTooLong)});
  EXPECT_EQ(fr.max_pending, 3u);
  // Discarding mode drops everything that follows instead of holding it.
  LengthFieldOptions o = length_prefix_options();
  o.fail_fast = false;
  const LengthFieldCodec discarding(o);
  auto d2 = discarding.new_decoder();
  EXPECT_EQ(d2->decode("\xff\xff\xff\xff"s).consumed, 4u);
  const std::string junk(64 * 1024, 'j');
  for (int i = 0; i < 16; ++i) {
    const DecodeResult jr = d2->decode(junk);
    EXPECT_EQ(jr.status, DecodeStatus::kNeedMore);
    EXPECT_EQ(jr.consumed, junk.size());
  }
}

TEST(LengthFieldCodec, CorruptLengths) {
  struct Case {
    const char* what;
    LengthFieldOptions o;
    std::string wire;
    uint64_t error_length;
  };
  LengthFieldOptions le8 = netty(0, 8, 0, 8);
  le8.byte_order = ByteOrder::kLittle;
  const std::vector<Case> cases = {
      {"negative after adjustment", netty(0, 2, -4, 0), "\x00\x03xxx"s, 3},
      {"shorter than the header", netty(2, 2, -4, 0), "hh\x00\x01xx"s, 1},
      {"8-byte all ones", netty(0, 8, 0, 8), std::string(8, '\xff'),
       ~uint64_t{0}},
      {"8-byte all ones LE", le8, std::string(8, '\xff'), ~uint64_t{0}},
      {"8-byte sign bit", netty(0, 8, 0, 8), "\x80"s + std::string(7, '\0'),
       uint64_t{1} << 63},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    for (bool fail_fast : {true, false}) {
      LengthFieldOptions o = c.o;
      o.fail_fast = fail_fast;
      const LengthFieldCodec codec(o);
      auto dec = codec.new_decoder();
      const DecodeResult r = dec->decode(c.wire);
      EXPECT_EQ(r.status, DecodeStatus::kError);
      EXPECT_EQ(r.error, CodecErrc::kCorruptLength);
      EXPECT_EQ(r.consumed, 0u);
      EXPECT_EQ(r.error_length, c.error_length);
    }
  }
  // The largest non-negative 8-byte value is merely too long.
  const LengthFieldCodec codec(netty(0, 8, 0, 8));
  const DecodeResult r =
      codec.new_decoder()->decode("\x7f"s + std::string(7, '\xff'));
  EXPECT_EQ(r.error, CodecErrc::kFrameTooLong);
  // A length exactly covering the header is an empty frame, not corrupt.
  const LengthFieldCodec incl(netty(0, 2, -2, 2));
  expect_any_split(incl, "\x00\x02\x00\x03z"s, {F(""), F("z")});
}

TEST(LengthFieldCodec, EncoderRefusals) {
  const LengthFieldCodec one(length_prefix_options(1));
  Buffer ok;
  EXPECT_TRUE(one.encode(pattern(255), ok));
  expect_refused(one, pattern(256));  // does not fit the field

  const LengthFieldCodec small(length_prefix_options(4, 100));
  expect_refused(small, pattern(97));  // 4 + 97 > max_frame

  const LengthFieldCodec trailer(netty(0, 2, 2, 2));  // 2 bytes not counted
  expect_refused(trailer, "x");  // shorter than the adjustment
  Buffer buf;
  ASSERT_TRUE(trailer.encode("xy", buf));
  EXPECT_EQ(buf.view(), "\x00\x00xy"s);

  LengthFieldOptions incl = netty(0, 2, -2, 2);  // length counts the field
  incl.max_frame = 1 << 20;
  const LengthFieldCodec counted(incl);
  expect_refused(counted, pattern(65534));  // value 65536 overflows
  buf.retrieve_all();
  ASSERT_TRUE(counted.encode(pattern(65533), buf));
  EXPECT_EQ(buf.view().substr(0, 2), "\xff\xff");
}

TEST(LengthFieldCodec, OptionValidation) {
  auto throws = [](const LengthFieldOptions& o) {
    try {
      LengthFieldCodec c(o);
    } catch (const CodecConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("length codec"), std::string::npos);
      return true;
    }
    return false;
  };
  for (int w : {0, 3, 5, 16, -4}) {
    EXPECT_TRUE(throws(length_prefix_options(w))) << w;
  }
  EXPECT_TRUE(throws(length_prefix_options(4, 4)));  // max_frame <= header
  EXPECT_FALSE(throws(length_prefix_options(4, 5)));
  LengthFieldOptions o = netty(8, 4, 0, 0);
  o.max_frame = 12;  // offset + width == max_frame
  EXPECT_TRUE(throws(o));
  o.max_frame = 13;
  EXPECT_FALSE(throws(o));
  o.length_field_offset = ~size_t{0};  // must not wrap around
  EXPECT_TRUE(throws(o));
  // Strip at most header + positive adjustment.
  EXPECT_TRUE(throws(netty(1, 2, 0, 4)));
  EXPECT_FALSE(throws(netty(1, 2, 0, 3)));
  EXPECT_FALSE(throws(netty(1, 2, 1, 4)));
  EXPECT_TRUE(throws(netty(1, 2, -1, 4)));
  // An adjustment that makes every frame too long or corrupt.
  o = netty(0, 4, 0, 4);
  o.max_frame = 100;
  o.length_adjustment = 96;
  EXPECT_FALSE(throws(o));
  o.length_adjustment = 97;
  EXPECT_TRUE(throws(o));
  EXPECT_FALSE(throws(netty(0, 1, -255, 0)));
  EXPECT_TRUE(throws(netty(0, 1, -256, 0)));
  EXPECT_TRUE(throws(netty(0, 8, INT64_MIN, 0)));
}

// ------------------------------------------------------------ fixed length

TEST(FixedLengthCodec, RoundTripAndSplits) {
  for (size_t n : {size_t{1}, size_t{5}, size_t{3000}}) {
    SCOPED_TRACE(n);
    const FixedLengthCodec codec(n);
    EXPECT_EQ(codec.name(), "fixed");
    EXPECT_EQ(codec.max_frame(), n);
    std::vector<std::string> payloads;
    for (char c : {'a', 'b', 'c'}) payloads.push_back(std::string(n, c));
    payloads.push_back(pattern(n));
    const std::string wire = encode_all(codec, payloads);
    EXPECT_EQ(wire.size(), 4 * n);
    expect_any_split(codec, wire, frames_of(payloads));
  }
}

TEST(FixedLengthCodec, CoalescedAndIncomplete) {
  const FixedLengthCodec codec(3);
  const FeedResult r = feed(codec, {std::string(3000, 'q') + "qq"});
  EXPECT_EQ(r.events.size(), 1000u);
  EXPECT_EQ(r.events.back(), F("qqq"));
  EXPECT_EQ(r.pending, 2u);
  const DecodeResult nm = codec.new_decoder()->decode("ab");
  EXPECT_EQ(nm.status, DecodeStatus::kNeedMore);
  EXPECT_EQ(nm.consumed, 0u);
}

TEST(FixedLengthCodec, EncoderRefusesOtherSizes) {
  const FixedLengthCodec codec(4);
  expect_refused(codec, "");
  expect_refused(codec, "abc");
  expect_refused(codec, "abcde");
}

TEST(FixedLengthCodec, OptionValidation) {
  EXPECT_THROW(FixedLengthCodec{0}, CodecConfigError);
  EXPECT_THROW(FixedLengthCodec(101, 100), CodecConfigError);
  EXPECT_NO_THROW(FixedLengthCodec(100, 100));
  EXPECT_THROW(FixedLengthCodec{(size_t{1} << 20) + 1}, CodecConfigError);
}

// --------------------------------------------------------------- delimiter

DelimiterOptions delims(std::vector<std::string> d, bool strip = true,
                        size_t max_frame = size_t{1} << 20) {
  DelimiterOptions o;
  o.delimiters = std::move(d);
  o.strip_delimiter = strip;
  o.max_frame = max_frame;
  return o;
}

TEST(DelimiterCodec, SingleByteRoundTrip) {
  const DelimiterCodec codec(delims({"\n"}));
  EXPECT_EQ(codec.name(), "delimiter");
  const std::vector<std::string> payloads = {"", "a", "hello world", "",
                                             pattern(3000)};
  const std::string wire = encode_all(codec, payloads);
  EXPECT_EQ(wire, "\na\nhello world\n\n" + pattern(3000) + "\n");
  expect_any_split(codec, wire, frames_of(payloads));
}

TEST(DelimiterCodec, MultiByteRoundTripWithPartialMatchesInPayload) {
  const DelimiterCodec codec(delims({"END"}));
  const std::vector<std::string> payloads = {"",   "E",    "EN",         "ENx",
                                             "xE", "NDEN", pattern(3000)};
  const std::string wire = encode_all(codec, payloads);
  expect_any_split(codec, wire, frames_of(payloads));
  // Self-overlapping delimiter.
  const DelimiterCodec aab(delims({"aab"}));
  const std::vector<std::string> p2 = {"a", "", "ba", "b"};
  expect_any_split(aab, encode_all(aab, p2), frames_of(p2));
}

TEST(DelimiterCodec, SeveralDelimitersStripOrKeep) {
  const std::string wire = "a\r\nb\nc;;d\r\n\r\n";
  const DelimiterCodec strip(delims({"\r\n", "\n", ";"}));
  expect_any_split(strip, wire, {F("a"), F("b"), F("c"), F(""), F("d"), F("")});
  const DelimiterCodec keep(delims({"\r\n", "\n", ";"}, false));
  expect_any_split(
      keep, wire,
      {F("a\r\n"), F("b\n"), F("c;"), F(";"), F("d\r\n"), F("\r\n")});
  Buffer buf;
  ASSERT_TRUE(keep.encode("x", buf));
  EXPECT_EQ(buf.view(), "x\r\n");  // the encoder writes the first delimiter
}

// Earliest match wins; at the same position the longest wins, and the
// decoder waits while a longer delimiter may still complete.
TEST(DelimiterCodec, EarliestThenLongestIndependentOfSplits) {
  const DelimiterCodec codec(delims({"ab", "a"}, false));
  expect_any_split(codec, "xabyazab", {F("xab"), F("ya"), F("zab")});
  auto dec = codec.new_decoder();
  DecodeResult r = dec->decode("xa");
  EXPECT_EQ(r.status, DecodeStatus::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
  r = dec->decode("xab");
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  EXPECT_EQ(r.frame, "xab");
  EXPECT_EQ(r.consumed, 3u);

  const DelimiterCodec abc(delims({"abc", "b"}));
  expect_any_split(abc, "xabcxabdb", {F("x"), F("xa"), F("d")});
  auto d2 = abc.new_decoder();
  EXPECT_EQ(d2->decode("xab").status, DecodeStatus::kNeedMore);
  r = d2->decode("xabd");
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  EXPECT_EQ(r.frame, "xa");
  EXPECT_EQ(r.consumed, 3u);
}

TEST(DelimiterCodec, MaxFrameWithoutDelimiterFailsBoundedly) {
  const size_t max = 10;
  const DelimiterCodec codec(delims({"\r\n"}, true, max));
  // Exactly max content bytes is fine, even with the '\r' split off.
  expect_any_split(codec, std::string(max, 'a') + "\r\n",
                   {F(std::string(max, 'a'))});
  // One more byte fails, even with the delimiter in the same read.
  EXPECT_EQ(feed(codec, {std::string(max + 1, 'a') + "\r\n"}).events,
            Events{E(CodecErrc::kFrameTooLong)});
  // Fed byte by byte with no delimiter: the error comes before more than
  // max + delimiter length bytes are held.
  for (const std::string& body :
       {std::string(100, 'a'), std::string(100, '\r'), "aaaaaaaaaa\r\r\r"s}) {
    const FeedResult r = feed(codec, chunk_every(body, 1));
    EXPECT_EQ(r.events, Events{E(CodecErrc::kFrameTooLong)});
    EXPECT_LE(r.max_pending, max + 2);
  }
  auto dec = codec.new_decoder();
  EXPECT_EQ(dec->decode(std::string(max, 'a') + "\r").status,
            DecodeStatus::kNeedMore);
  const DecodeResult r = dec->decode(std::string(max, 'a') + "\rx");
  EXPECT_EQ(r.status, DecodeStatus::kError);
  EXPECT_EQ(r.error, CodecErrc::kFrameTooLong);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(DelimiterCodec, EncoderRefusals) {
  const DelimiterCodec codec(delims({"\r\n", ";"}, true, 100));
  expect_refused(codec, "a;b");
  expect_refused(codec, "a\r\nb");
  expect_refused(codec, pattern(101));
  Buffer buf;
  EXPECT_TRUE(codec.encode("ab\r", buf));  // "ab\r\r\n" reads back as "ab\r"
  // The tail joins the appended delimiter into an earlier match:
  // "ab\r" + "\n" would read back as "ab" ending in "\r\n".
  const DelimiterCodec lf_first(delims({"\n", "\r\n"}));
  expect_refused(lf_first, "ab\r");
  EXPECT_TRUE(lf_first.encode("a\rb", buf));
  EXPECT_TRUE(codec.encode("a\rb\n", buf));  // lone '\r' and '\n' are data
  EXPECT_TRUE(codec.encode(pattern(100), buf));
  // Self-overlap: "ab" + "abab" starts a match at 0.
  const DelimiterCodec abab(delims({"abab"}));
  expect_refused(abab, "ab");
  expect_refused(abab, "xab");
  EXPECT_TRUE(abab.encode("xaba", buf));  // "xaba"+"abab": match at 4
  EXPECT_TRUE(abab.encode("b", buf));
}

TEST(DelimiterCodec, OptionValidation) {
  EXPECT_THROW(DelimiterCodec{delims({})}, CodecConfigError);
  EXPECT_THROW(DelimiterCodec{delims({"\n", ""})}, CodecConfigError);
  EXPECT_THROW(DelimiterCodec{delims({std::string(65, 'x')})},
               CodecConfigError);
  EXPECT_NO_THROW(DelimiterCodec{delims({std::string(64, 'x')})});
  EXPECT_THROW(DelimiterCodec{delims({"\n", "\n\n"})}, CodecConfigError);
  EXPECT_NO_THROW(DelimiterCodec{delims({"\n\n", "\n"})});
  EXPECT_THROW(DelimiterCodec{delims({"\n"}, true, 0)}, CodecConfigError);
}

// Feeds `body` one byte at a time, then `tail`; expects one frame and a
// scan cost linear in the input.
template <typename DecoderT>
void expect_linear_scan(const Codec& codec, const std::string& body,
                        const std::string& tail, const std::string& frame) {
  auto base = codec.new_decoder();
  auto* dec = dynamic_cast<DecoderT*>(base.get());
  ASSERT_NE(dec, nullptr);
  std::string in;
  in.reserve(body.size() + tail.size());
  for (char c : body) {
    in += c;
    const DecodeResult r = dec->decode(in);
    ASSERT_EQ(r.status, DecodeStatus::kNeedMore);
    ASSERT_EQ(r.consumed, 0u);
  }
  in += tail;
  const DecodeResult r = dec->decode(in);
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  EXPECT_EQ(r.frame, frame);
  EXPECT_EQ(r.consumed, in.size());
  // O(n): about one position per byte; O(n^2) would be ~5e11.
  EXPECT_LE(dec->positions_examined(), 3 * in.size());
}

constexpr size_t kMiB = size_t{1} << 20;

TEST(DelimiterCodec, ScanStateMakesByteAtATimeLinear) {
  const std::string body(kMiB, 'x');
  expect_linear_scan<DelimiterDecoder>(DelimiterCodec(delims({"\n"})), body,
                                       "\n", body);
  // Multi-byte delimiter, with partial matches all along the way.
  std::string rs(kMiB, 'x');
  for (size_t i = 0; i < rs.size(); i += 3) rs[i] = '\r';
  rs.back() = 'x';
  expect_linear_scan<DelimiterDecoder>(DelimiterCodec(delims({"\r\n"})), rs,
                                       "\r\n", rs);
  // Several delimiters (first-byte table path).
  expect_linear_scan<DelimiterDecoder>(DelimiterCodec(delims({"\r\n", ";"})),
                                       rs, ";", rs);
}

// -------------------------------------------------------------------- line

TEST(LineCodec, MixedLineEndingsAnySplit) {
  const LineCodec codec;
  EXPECT_EQ(codec.name(), "line");
  expect_any_split(codec, "a\nb\r\n\r\nc\rd\n\n\r\r\n",
                   {F("a"), F("b"), F(""), F("c\rd"), F(""), F("\r")});
}

TEST(LineCodec, CarriageReturnSplitFromNewline) {
  const LineCodec codec;
  auto dec = codec.new_decoder();
  DecodeResult r = dec->decode("ab\r");
  EXPECT_EQ(r.status, DecodeStatus::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
  r = dec->decode("ab\r\nc");
  ASSERT_EQ(r.status, DecodeStatus::kFrame);
  EXPECT_EQ(r.frame, "ab");
  EXPECT_EQ(r.consumed, 4u);
}

TEST(LineCodec, RoundTripLfAndCrlf) {
  const std::vector<std::string> payloads = {"", "x", "a\rb", pattern(3000)};
  const LineCodec lf;
  EXPECT_EQ(encode_all(lf, {"a", ""}), "a\n\n");
  expect_any_split(lf, encode_all(lf, payloads), frames_of(payloads));
  LineOptions o;
  o.crlf = true;
  const LineCodec crlf(o);
  EXPECT_EQ(encode_all(crlf, {"a", ""}), "a\r\n\r\n");
  std::vector<std::string> p2 = payloads;
  p2.push_back("ends with cr\r");  // fine when "\r\n" follows
  expect_any_split(crlf, encode_all(crlf, p2), frames_of(p2));
}

TEST(LineCodec, EncoderRefusals) {
  LineOptions o;
  o.max_frame = 8;
  const LineCodec lf(o);
  expect_refused(lf, "a\nb");
  expect_refused(lf, "ab\r");
  expect_refused(lf, pattern(9));
  o.crlf = true;
  const LineCodec crlf(o);
  expect_refused(crlf, "a\nb");
  Buffer buf;
  EXPECT_TRUE(crlf.encode("ab\r", buf));
  EXPECT_TRUE(crlf.encode(pattern(8), buf));
}

TEST(LineCodec, MaxFrame) {
  LineOptions o;
  o.max_frame = 5;
  const LineCodec codec(o);
  expect_any_split(codec, "12345\r\n12345\n", {F("12345"), F("12345")});
  EXPECT_EQ(feed(codec, {"123456\n"}).events,
            Events{E(CodecErrc::kFrameTooLong)});
  EXPECT_EQ(feed(codec, {"123456\r\n"}).events,
            Events{E(CodecErrc::kFrameTooLong)});
  for (const std::string& body :
       {std::string(50, 'a'), std::string(50, '\r'), "12345\rx"s}) {
    const FeedResult r = feed(codec, chunk_every(body, 1));
    EXPECT_EQ(r.events, Events{E(CodecErrc::kFrameTooLong)});
    EXPECT_LE(r.max_pending, 5u + 2);
  }
  EXPECT_THROW(LineCodec(LineOptions{0, false}), CodecConfigError);
}

TEST(LineCodec, ScanStateMakesByteAtATimeLinear) {
  std::string body(kMiB, 'x');
  for (size_t i = 0; i < body.size(); i += 5) body[i] = '\r';
  expect_linear_scan<LineDecoder>(LineCodec(), body, "\r\n", body);
}

// ----------------------------------------------------------------- factory

TEST(Factory, Names) {
  CodecOptions o;
  o.name = "raw";
  EXPECT_EQ(make_codec(o), nullptr);

  o.name = "length";
  o.length_bytes = 2;
  o.max_frame = 100;
  auto c = make_codec(o);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->name(), "length");
  EXPECT_EQ(c->max_frame(), 100u);
  Buffer buf;
  ASSERT_TRUE(c->encode("hi", buf));
  EXPECT_EQ(buf.view(), "\x00\x02hi"s);
  expect_any_split(*c, std::string(buf.view()), {F("hi")});
  o.length_bytes = 3;
  EXPECT_THROW(make_codec(o), CodecConfigError);

  o.name = "fixed";
  EXPECT_THROW(make_codec(o), CodecConfigError);  // fixed_size 0
  o.fixed_size = 4;
  c = make_codec(o);
  EXPECT_EQ(c->name(), "fixed");
  EXPECT_EQ(c->max_frame(), 4u);

  o.name = "delimiter";
  o.delimiter = "\\r\\n";
  c = make_codec(o);
  EXPECT_EQ(c->name(), "delimiter");
  buf.retrieve_all();
  ASSERT_TRUE(c->encode("x", buf));
  EXPECT_EQ(buf.view(), "x\r\n");
  o.delimiter = "";
  EXPECT_THROW(make_codec(o), CodecConfigError);
  o.delimiter = "\\0";
  c = make_codec(o);
  expect_any_split(*c, "ab\0\0c\0"s, {F("ab"), F(""), F("c")});

  o.name = "line";
  c = make_codec(o);
  EXPECT_EQ(c->name(), "line");
  EXPECT_EQ(c->max_frame(), 100u);

  for (const char* bad : {"", "LINE", "lengths", "netty"}) {
    o.name = bad;
    EXPECT_THROW(make_codec(o), CodecConfigError) << bad;
  }
}

TEST(Factory, DefaultsAreTheServerDefaults) {
  CodecOptions o;
  o.name = "length";
  auto c = make_codec(o);
  EXPECT_EQ(c->max_frame(), kMiB);
  Buffer buf;
  ASSERT_TRUE(c->encode("ab", buf));
  EXPECT_EQ(buf.view(),
            "\0\0\0\x02"
            "ab"s);
  o.name = "delimiter";
  c = make_codec(o);
  expect_any_split(*c, "a\nb\n", {F("a"), F("b")});
}

TEST(Factory, Unescape) {
  EXPECT_EQ(unescape("abc"), "abc");
  EXPECT_EQ(unescape(R"(\n\r\t\0\\)"), "\n\r\t\0\\"s);
  EXPECT_EQ(unescape(R"(\x41\x7f\xFF\x00z)"), "A\x7f\xff\0z"s);
  EXPECT_EQ(unescape(R"(a\\n)"), "a\\n");
  for (const char* bad : {"\\", "a\\", "\\q", "\\x4", "\\xZZ", "\\x"}) {
    EXPECT_THROW(unescape(bad), CodecConfigError) << bad;
  }
}

TEST(Codec, ErrorNames) {
  EXPECT_EQ(to_string(CodecErrc::kNone), "none");
  EXPECT_EQ(to_string(CodecErrc::kFrameTooLong), "frame too long");
  EXPECT_EQ(to_string(CodecErrc::kCorruptLength), "corrupt length field");
}

}  // namespace
}  // namespace sluice::codec
