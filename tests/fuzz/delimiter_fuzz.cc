// Fuzz target: DelimiterCodec (codec/delimiter.h), one or several
// delimiters, stripped or kept.
//
// Input layout (missing bytes read as 0):
//   [0] bits 0-1 delimiter count - 1 (0xFF: no delimiters at all), bit 2 keep the delimiter, bit 3 map
//       the stream onto the delimiters' bytes plus one other byte,
//       bits 4-5 max_frame mode, bits 6-7 delimiter length mode
//   [1..2] max_frame value
//   then per delimiter: [len byte][len bytes]
//   then [split point: 2][chunking seed: 2]
//   rest: the stream, and ([len][bytes]...) payloads for the round trip.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "codec/delimiter.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using sluice::codec::CodecErrc;
using sluice::codec::DelimiterCodec;
using sluice::codec::DelimiterOptions;
using sluice::codec::kMaxDelimiterLength;
using sluice::fuzz::construct_checked;
using sluice::fuzz::Input;
using sluice::fuzz::Rules;
using sluice::fuzz::Run;

bool options_valid(const DelimiterOptions& o) {
  if (o.delimiters.empty() || o.max_frame == 0) return false;
  for (const auto& d : o.delimiters) {
    if (d.empty() || d.size() > kMaxDelimiterLength) return false;
  }
  const std::string& first = o.delimiters.front();
  for (const auto& d : o.delimiters) {
    if (d.size() > first.size() && d.starts_with(first)) return false;
  }
  return true;
}

// Reference model of the spec, over the whole stream, without scan state:
// a frame ends at the earliest position where a delimiter matches, the
// longest one there; wait while a longer delimiter is still possible
// there; too long once no delimiter starts in the first max_frame + 1
// positions.
Run model(const DelimiterOptions& o, std::string_view s) {
  Run run;
  size_t pos = 0;
  for (;;) {
    const size_t rem = s.size() - pos;
    const size_t limit = rem <= o.max_frame ? rem : o.max_frame + 1;
    bool found = false;
    for (size_t p = 0; p < limit && !found; ++p) {
      const std::string_view tail = s.substr(pos + p);
      size_t best = 0;
      bool undecided = false;
      for (const auto& d : o.delimiters) {
        if (d.size() <= tail.size()) {
          if (tail.starts_with(d)) best = std::max(best, d.size());
        } else if (std::string_view(d).starts_with(tail)) {
          undecided = true;
        }
      }
      if (undecided) {
        run.leftover = std::string(s.substr(pos));
        return run;
      }
      if (best > 0) {
        const size_t len = o.strip_delimiter ? p : p + best;
        run.events.push_back(
            {CodecErrc::kNone, std::string(s.substr(pos, len)), 0});
        pos += p + best;
        found = true;
      }
    }
    if (found) continue;
    if (rem > o.max_frame) {
      run.events.push_back({CodecErrc::kFrameTooLong, "", 0});
      run.stopped = true;
      return run;
    }
    run.leftover = std::string(s.substr(pos));
    return run;
  }
}

size_t add_sat(size_t a, size_t b) {
  return a > std::numeric_limits<size_t>::max() - b
             ? std::numeric_limits<size_t>::max()
             : a + b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t mode = in.u8();
  const uint16_t mf_value = in.u16();

  DelimiterOptions o;
  o.strip_delimiter = (mode & 4) == 0;
  const bool map = (mode & 8) != 0;
  switch ((mode >> 4) & 3) {
    case 0:
      o.max_frame = mf_value % 40;  // 0 is invalid
      break;
    case 1:
      o.max_frame = mf_value;
      break;
    case 2:
      o.max_frame = size_t{1} << 20;
      break;
    default:
      o.max_frame = std::numeric_limits<size_t>::max() - mf_value;
      break;
  }
  const size_t count = mode == 0xFF ? 0 : 1 + (mode & 3);
  o.delimiters.clear();
  for (size_t i = 0; i < count; ++i) {
    const uint8_t b = in.u8();
    size_t len = 0;
    switch (mode >> 6) {
      case 0:
        len = 1 + b % 3;
        break;
      case 1:
        len = b % 5;  // 0 is invalid
        break;
      case 2:
        len = 1 + b % kMaxDelimiterLength;
        break;
      default:
        len = b % (kMaxDelimiterLength + 4);  // 0 and > 64 are invalid
        break;
    }
    o.delimiters.emplace_back(in.bytes(len));
  }
  const uint16_t cut = in.u16();
  const uint16_t seed = in.u16();
  const std::string_view raw = in.rest();

  const auto codec = construct_checked<DelimiterCodec>(options_valid(o), o);
  if (!codec) return 0;
  FUZZ_CHECK(codec->max_frame() == o.max_frame);

  // With `map`, stream bytes are drawn from the delimiters' bytes plus one
  // other, so partial and overlapping delimiters are everywhere.
  std::string alphabet;
  for (const auto& d : o.delimiters) {
    for (char c : d) {
      if (alphabet.find(c) == std::string::npos) alphabet.push_back(c);
    }
  }
  for (int i = 0; i < 256; ++i) {  // plus one byte no delimiter uses
    const char c = static_cast<char>('x' + i);
    if (alphabet.find(c) == std::string::npos) {
      alphabet.push_back(c);
      break;
    }
  }
  auto mapped = [&](std::string_view s) {
    std::string out(s);
    if (map) {
      for (char& c : out) {
        c = alphabet[static_cast<unsigned char>(c) % alphabet.size()];
      }
    }
    return out;
  };

  size_t longest = 0;
  for (const auto& d : o.delimiters) longest = std::max(longest, d.size());

  Rules rules;
  // docs/CODECS.md: the bytes held for one frame stay at or below
  // max_frame + longest delimiter.
  rules.max_held = add_sat(o.max_frame, longest);
  rules.max_frame_out = add_sat(o.max_frame, o.strip_delimiter ? 0 : longest);
  rules.exact_error_length = false;  // "as far as known"

  const std::string stream = mapped(raw);
  const Run whole =
      sluice::fuzz::check_split_invariance(*codec, stream, cut, seed, rules);
  FUZZ_CHECK(sluice::fuzz::same_run(whole, model(o, stream), false));
  for (const auto& e : whole.events) {
    if (e.errc != CodecErrc::kNone) {
      FUZZ_CHECK(e.errc == CodecErrc::kFrameTooLong);
      FUZZ_CHECK(e.error_length > o.max_frame);
    }
  }

  Input pin(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  auto payloads = sluice::fuzz::take_payloads(pin, 64);
  for (auto& p : payloads) p = mapped(p);
  const std::string& first = o.delimiters.front();
  sluice::fuzz::check_round_trip(
      *codec, payloads, cut, seed, rules,
      [&](const std::string& p) {
        if (p.size() > o.max_frame) return 0;
        for (const auto& d : o.delimiters) {
          if (p.find(d) != std::string::npos) return 0;
        }
        // With one 1-byte delimiter nothing else can go wrong; otherwise
        // the encoder may refuse a tail that could join the delimiter.
        return o.delimiters.size() == 1 && first.size() == 1 ? 1 : -1;
      },
      [&](const std::string& p, const std::string&) {
        return o.strip_delimiter ? p : p + first;
      });
  return 0;
}
