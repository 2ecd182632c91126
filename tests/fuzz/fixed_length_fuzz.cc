// Fuzz target: FixedLengthCodec (codec/fixed_length.h).
//
// Input layout (missing bytes read as 0):
//   [0] bits 0-1 frame size mode, bits 2-3 max_frame mode
//   [1..2] frame size value, [3..4] max_frame value
//   [5..6] split point, [7..8] chunking seed
//   rest: the stream, and ([len][bytes]...) payloads for the round trip.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "codec/fixed_length.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using sluice::codec::CodecErrc;
using sluice::codec::FixedLengthCodec;
using sluice::fuzz::construct_checked;
using sluice::fuzz::Input;
using sluice::fuzz::Rules;
using sluice::fuzz::Run;

Run model(size_t n, std::string_view s) {
  Run run;
  size_t pos = 0;
  while (s.size() - pos >= n) {
    run.events.push_back({CodecErrc::kNone, std::string(s.substr(pos, n)), 0});
    pos += n;
  }
  run.leftover = std::string(s.substr(pos));
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t mode = in.u8();
  const uint16_t size_value = in.u16();
  const uint16_t max_value = in.u16();
  const uint16_t cut = in.u16();
  const uint16_t seed = in.u16();
  const std::string_view stream = in.rest();

  size_t frame_size = 0;
  switch (mode & 3) {
    case 0:
      frame_size = 1 + size_value % 8;
      break;
    case 1:
      frame_size = size_value % 300;  // 0 is invalid
      break;
    case 2:
      frame_size = size_value;
      break;
    default:
      frame_size = std::numeric_limits<size_t>::max() - size_value;
      break;
  }
  size_t max_frame = 0;
  switch ((mode >> 2) & 3) {
    case 0:
      max_frame = size_t{1} << 20;
      break;
    case 1:
      max_frame = frame_size;
      break;
    case 2:
      max_frame = max_value;
      break;
    default:
      max_frame = std::numeric_limits<size_t>::max();
      break;
  }

  const bool valid = frame_size >= 1 && frame_size <= max_frame;
  const auto codec = construct_checked<FixedLengthCodec>(valid, frame_size, max_frame);
  if (!codec) return 0;
  FUZZ_CHECK(codec->max_frame() == frame_size);

  Rules rules;
  rules.max_held = frame_size - 1;
  rules.max_frame_out = frame_size;

  const Run whole =
      sluice::fuzz::check_split_invariance(*codec, stream, cut, seed, rules);
  FUZZ_CHECK(sluice::fuzz::same_run(whole, model(frame_size, stream), true));

  Input pin(reinterpret_cast<const uint8_t*>(stream.data()), stream.size());
  const auto payloads = sluice::fuzz::take_payloads(pin, 64);
  sluice::fuzz::check_round_trip(
      *codec, payloads, cut, seed, rules,
      [&](const std::string& p) { return p.size() == frame_size ? 1 : 0; },
      [](const std::string& p, const std::string&) { return p; });
  return 0;
}
