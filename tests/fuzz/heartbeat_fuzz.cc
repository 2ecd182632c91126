// Fuzz target: the heartbeat protocol (codec/heartbeat.h): payload parsing
// and encoders, the TCP length-prefix codec it uses, and StreamParser.
//
// Input layout (missing bytes read as 0):
//   [0] bit 0 normalise payloads (type byte 1..4), bit 1 PING/PONG
//       payloads padded or cut to 17 bytes
//   [1..2] split point, [3..4] chunking seed
//   rest: used three ways: as one payload for parse(); as a raw TCP stream
//         for make_tcp_codec() and StreamParser; and cut into
//         ([len][bytes]...) payloads that are encoded, framed and parsed
//         back.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "codec/heartbeat.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace hb = sluice::codec::heartbeat;
using sluice::codec::CodecErrc;
using sluice::fuzz::Input;
using sluice::fuzz::Rules;
using sluice::fuzz::Run;

// A Message with its data copied out (the original views the input).
struct Msg {
  hb::Type type = hb::Type::kData;
  uint64_t seq = 0;
  uint64_t ts = 0;
  std::string data;
  bool operator==(const Msg&) const = default;
};

Msg copy(const hb::Message& m) {
  Msg out;
  out.type = m.type;
  out.seq = m.seq;
  out.ts = m.timestamp_ns;
  out.data = std::string(m.data);
  return out;
}

uint64_t be64_at(std::string_view s, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) {
    v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  }
  return v;
}

// parse() agrees with the documented message layout, and its views stay
// inside the payload; describe() works for every error.
hb::ParseError check_parse(std::string_view p, Msg* out) {
  hb::Message m;
  const hb::ParseError e = hb::parse(p, &m);
  hb::ParseError want = hb::ParseError::kUnknownType;
  if (p.empty()) {
    want = hb::ParseError::kEmpty;
  } else if (p[0] == 0x01 || p[0] == 0x02) {
    want = p.size() == hb::kProbeSize ? hb::ParseError::kNone
                                      : hb::ParseError::kBadLength;
  } else if (p[0] == 0x03) {
    want = hb::ParseError::kNone;
  }
  FUZZ_CHECK(e == want);
  if (e != hb::ParseError::kNone) {
    FUZZ_CHECK(!hb::describe(e, p).empty());
    FUZZ_CHECK(!hb::to_string(e).empty());
    return e;
  }
  FUZZ_CHECK(static_cast<uint8_t>(m.type) == static_cast<uint8_t>(p[0]));
  if (m.type == hb::Type::kData) {
    FUZZ_CHECK(m.data == p.substr(1));
    FUZZ_CHECK(m.data.empty() || (m.data.data() == p.data() + 1));
  } else {
    FUZZ_CHECK(m.seq == be64_at(p, 1));
    FUZZ_CHECK(m.timestamp_ns == be64_at(p, 9));
  }
  if (out) *out = copy(m);
  return e;
}

// What StreamParser should report for a whole stream.
struct ParserRun {
  std::vector<Msg> msgs;
  hb::StreamParser::Status status = hb::StreamParser::Status::kOk;
  std::string error;
  bool operator==(const ParserRun&) const = default;
};

ParserRun model_parser(std::string_view s) {
  ParserRun run;
  size_t pos = 0;
  while (s.size() - pos >= hb::kLengthBytes) {
    uint64_t len = 0;
    for (size_t i = 0; i < 4; ++i) {
      len = (len << 8) | static_cast<unsigned char>(s[pos + i]);
    }
    const uint64_t total = hb::kLengthBytes + len;
    if (total > hb::kMaxFrame) {
      run.status = hb::StreamParser::Status::kFrameError;
      run.error = std::string(sluice::codec::to_string(CodecErrc::kFrameTooLong));
      return run;
    }
    if (s.size() - pos < total) break;
    const std::string_view payload = s.substr(pos + hb::kLengthBytes, len);
    Msg m;
    const hb::ParseError e = check_parse(payload, &m);
    if (e != hb::ParseError::kNone) {
      run.status = hb::StreamParser::Status::kParseError;
      run.error = hb::describe(e, payload);
      return run;
    }
    run.msgs.push_back(std::move(m));
    pos += total;
  }
  return run;
}

ParserRun feed_parser(std::string_view s, const std::vector<size_t>& cuts) {
  hb::StreamParser parser;
  ParserRun run;
  size_t from = 0;
  for (size_t i = 0; i <= cuts.size(); ++i) {
    const size_t to = i < cuts.size() ? cuts[i] : s.size();
    const auto st = parser.feed(s.substr(from, to - from),
                                [&](const hb::Message& m) {
                                  run.msgs.push_back(copy(m));
                                });
    FUZZ_CHECK(st == parser.status());
    // While healthy, no more than one incomplete frame stays buffered.
    if (st == hb::StreamParser::Status::kOk) {
      FUZZ_CHECK(parser.buffered() < hb::kMaxFrame);
    }
    from = to;
  }
  run.status = parser.status();
  run.error = parser.error();
  FUZZ_CHECK((run.status == hb::StreamParser::Status::kOk) ==
             run.error.empty());
  return run;
}

void check_parser(std::string_view s, uint16_t cut, uint64_t seed) {
  const ParserRun whole = feed_parser(s, {});
  FUZZ_CHECK(whole == model_parser(s));
  const size_t n = s.size();
  FUZZ_CHECK(feed_parser(s, {n ? cut % (n + 1) : 0}) == whole);
  if (n <= 256) {
    std::vector<size_t> every;
    for (size_t i = 1; i < n; ++i) every.push_back(i);
    FUZZ_CHECK(feed_parser(s, every) == whole);
  }
  sluice::fuzz::Rng rng(seed);
  std::vector<size_t> cuts;
  for (size_t at = 0;;) {
    at += 1 + rng.below(24);
    if (at >= n) break;
    cuts.push_back(at);
  }
  FUZZ_CHECK(feed_parser(s, cuts) == whole);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t mode = in.u8();
  const uint16_t cut = in.u16();
  const uint16_t seed = in.u16();
  const std::string_view raw = in.rest();

  // The input as one payload.
  check_parse(raw, nullptr);

  // The input as a raw TCP stream: the codec (split invariance, bounds)
  // and the stream parser (split invariance, model).
  const std::unique_ptr<sluice::codec::Codec> codec = hb::make_tcp_codec();
  FUZZ_CHECK(codec->max_frame() == hb::kMaxFrame);
  Rules rules;
  rules.max_held = hb::kMaxFrame - 1;
  rules.max_frame_out = hb::kMaxPayload;
  sluice::fuzz::check_split_invariance(*codec, raw, cut, seed, rules);
  check_parser(raw, cut, seed);

  // The input cut into payloads.
  Input pin(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  std::vector<std::string> payloads = sluice::fuzz::take_payloads(pin, 64);
  std::string stream;
  std::vector<Msg> want;
  bool failed = false;
  for (std::string& p : payloads) {
    if ((mode & 1) && !p.empty()) {
      p[0] = static_cast<char>(1 + static_cast<uint8_t>(p[0]) % 4);
      if ((mode & 2) && (p[0] == 1 || p[0] == 2)) p.resize(hb::kProbeSize);
    }
    // Encoders round-trip through parse().
    if (p.size() >= 16) {
      const uint64_t seq = be64_at(p, 0);
      const uint64_t ts = be64_at(p, 8);
      hb::Message m;
      FUZZ_CHECK(hb::parse(hb::view(hb::encode_ping(seq, ts)), &m) ==
                 hb::ParseError::kNone);
      FUZZ_CHECK(m.type == hb::Type::kPing && m.seq == seq &&
                 m.timestamp_ns == ts);
      const auto pong = hb::pong_for(m);
      FUZZ_CHECK(pong == hb::encode_pong(seq, ts));
      FUZZ_CHECK(hb::parse(hb::view(pong), &m) == hb::ParseError::kNone);
      FUZZ_CHECK(m.type == hb::Type::kPong && m.seq == seq &&
                 m.timestamp_ns == ts);
    }
    {
      const std::string d = hb::encode_data(p);
      hb::Message m;
      FUZZ_CHECK(hb::parse(d, &m) == hb::ParseError::kNone);
      FUZZ_CHECK(m.type == hb::Type::kData && m.data == p);
    }
    // frame() is exactly what the TCP codec encodes.
    const std::string f = hb::frame(p);
    sluice::Buffer enc;
    const bool ok = codec->encode(p, enc);
    FUZZ_CHECK(ok == (p.size() <= hb::kMaxPayload));
    if (ok) FUZZ_CHECK(enc.view() == f);
    stream += f;
    if (!failed && p.size() > hb::kMaxPayload) {
      failed = true;  // the frame is too long for the codec
    } else if (!failed) {
      Msg m;
      if (check_parse(p, &m) == hb::ParseError::kNone) {
        want.push_back(std::move(m));
      } else {
        failed = true;
      }
    }
  }
  // A stream of framed payloads parses back to the same messages, up to the
  // first invalid one.
  const ParserRun whole = feed_parser(stream, {});
  FUZZ_CHECK(whole.msgs == want);
  FUZZ_CHECK(failed == (whole.status != hb::StreamParser::Status::kOk));
  check_parser(stream, cut, seed);
  return 0;
}
