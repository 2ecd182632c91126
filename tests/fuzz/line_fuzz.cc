// Fuzz target: LineCodec (codec/delimiter.h): lines end at "\n" or
// "\r\n", both stripped; a lone "\r" is data.
//
// Input layout (missing bytes read as 0):
//   [0] bit 0 crlf encoder, bits 1-2 max_frame mode, bit 3 map the stream
//       onto the alphabet {'\r', '\n', 'a', 'b'}
//   [1..2] max_frame value, [3..4] split point, [5..6] chunking seed
//   rest: the stream, and ([len][bytes]...) payloads for the round trip.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "codec/delimiter.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using sluice::codec::CodecErrc;
using sluice::codec::LineCodec;
using sluice::codec::LineOptions;
using sluice::fuzz::construct_checked;
using sluice::fuzz::Input;
using sluice::fuzz::Rules;
using sluice::fuzz::Run;

// Reference model of the whole stream.
Run model(size_t max_frame, std::string_view s) {
  Run run;
  size_t pos = 0;
  for (;;) {
    const size_t q = s.find('\n', pos);
    if (q == std::string_view::npos) {
      const size_t rem = s.size() - pos;
      // A trailing '\r' may still pair with a '\n'.
      const size_t known = (rem > 0 && s.back() == '\r') ? rem - 1 : rem;
      if (known > max_frame) {
        run.events.push_back({CodecErrc::kFrameTooLong, "", 0});
        run.stopped = true;
        return run;
      }
      run.leftover = std::string(s.substr(pos));
      return run;
    }
    size_t len = q - pos;
    if (len > 0 && s[q - 1] == '\r') --len;
    if (len > max_frame) {
      run.events.push_back({CodecErrc::kFrameTooLong, "", 0});
      run.stopped = true;
      return run;
    }
    run.events.push_back({CodecErrc::kNone, std::string(s.substr(pos, len)), 0});
    pos = q + 1;
  }
}

size_t add_sat(size_t a, size_t b) {
  return a > std::numeric_limits<size_t>::max() - b
             ? std::numeric_limits<size_t>::max()
             : a + b;
}

std::string mapped(std::string_view s, bool map) {
  std::string out(s);
  if (map) {
    static constexpr char kAlphabet[] = {'\r', '\n', 'a', 'b'};
    for (char& c : out) c = kAlphabet[static_cast<unsigned char>(c) % 4];
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t mode = in.u8();
  const uint16_t mf_value = in.u16();
  const uint16_t cut = in.u16();
  const uint16_t seed = in.u16();
  const std::string_view raw = in.rest();

  LineOptions o;
  o.crlf = (mode & 1) != 0;
  switch ((mode >> 1) & 3) {
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
  const bool map = (mode & 8) != 0;

  const auto codec = construct_checked<LineCodec>(o.max_frame >= 1, o);
  if (!codec) return 0;
  FUZZ_CHECK(codec->max_frame() == o.max_frame);

  Rules rules;
  // Content up to max_frame plus a '\r' waiting for its '\n'.
  rules.max_held = add_sat(o.max_frame, 1);
  rules.max_frame_out = o.max_frame;
  // The reported length is "as far as known": it depends on the reads.
  rules.exact_error_length = false;

  const std::string stream = mapped(raw, map);
  const Run whole =
      sluice::fuzz::check_split_invariance(*codec, stream, cut, seed, rules);
  FUZZ_CHECK(sluice::fuzz::same_run(whole, model(o.max_frame, stream), false));
  for (const auto& e : whole.events) {
    if (e.errc != CodecErrc::kNone) FUZZ_CHECK(e.error_length > o.max_frame);
  }

  Input pin(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  auto payloads = sluice::fuzz::take_payloads(pin, 64);
  for (auto& p : payloads) p = mapped(p, map);
  sluice::fuzz::check_round_trip(
      *codec, payloads, cut, seed, rules,
      [&](const std::string& p) {
        const bool ok = p.size() <= o.max_frame &&
                        p.find('\n') == std::string::npos &&
                        (o.crlf || !p.ends_with('\r'));
        return ok ? 1 : 0;
      },
      [](const std::string& p, const std::string&) { return p; });
  return 0;
}
