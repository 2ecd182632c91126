// Fuzz target: LengthFieldCodec (codec/length_field.h).
//
// Input layout (all fields from the front; missing bytes read as 0):
//   [0] bits 0-1 width 1/2/4/8, bit 2 little-endian, bit 3 fail_fast,
//       bits 4-5 adjustment mode, bits 6-7 strip mode
//   [1] length_field_offset: bit 6 set -> low 6 bits, else 0;
//       bit 7: start from length_prefix_options(width, max_frame) instead
//       (the server default), with width = (int8)[2] in adjustment mode 3
//       (mostly invalid widths)
//   [2] adjustment byte (int8) for mode 2
//   [3] strip byte for modes 2/3
//   [4] max_frame mode (low 2 bits), [5..6] max_frame value
//   [7..14] 64-bit adjustment for mode 3
//   [15..16] split point, [17..18] chunking seed
//   rest: the byte stream to decode, and (parsed as [len][bytes]...)
//         payloads for the encode -> decode round trip.
// Option sets cover all widths and byte orders, offset/adjustment/strip
// combinations, fail_fast true and false, and invalid options (the codec
// must throw CodecConfigError exactly when docs/CODECS.md says so).
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "codec/length_field.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using sluice::codec::ByteOrder;
using sluice::codec::CodecErrc;
using sluice::codec::LengthFieldCodec;
using sluice::codec::LengthFieldOptions;
using sluice::fuzz::construct_checked;
using sluice::fuzz::Event;
using sluice::fuzz::Input;
using sluice::fuzz::Rules;
using sluice::fuzz::Run;

using i128 = __int128;

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

uint64_t field_max(int width) {
  return width == 8 ? uint64_t{std::numeric_limits<int64_t>::max()}
                    : (uint64_t{1} << (8 * width)) - 1;
}

// The documented option rules, evaluated without any overflow.
bool options_valid(const LengthFieldOptions& o) {
  const int w = o.length_field_length;
  if (w != 1 && w != 2 && w != 4 && w != 8) return false;
  const i128 width = w;
  const i128 header_end = i128{o.length_field_offset} + width;
  const i128 max_frame = o.max_frame;
  const i128 adj = o.length_adjustment;
  if (header_end >= max_frame) return false;
  if (adj > 0 && adj > max_frame - header_end) return false;
  if (adj < 0 && -adj > i128{field_max(o.length_field_length)}) return false;
  return i128{o.initial_bytes_to_strip} <= header_end + (adj > 0 ? adj : 0);
}

uint64_t read_field(std::string_view p, int width, ByteOrder order) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) {
    const int at = order == ByteOrder::kBig ? i : width - 1 - i;
    v = (v << 8) | static_cast<unsigned char>(p[static_cast<size_t>(at)]);
  }
  return v;
}

// Reference model: the whole stream, decoded straight from the spec.
Run model(const LengthFieldOptions& o, std::string_view s) {
  Run run;
  const size_t header_end =
      o.length_field_offset + static_cast<size_t>(o.length_field_length);
  size_t pos = 0;
  for (;;) {
    const size_t rem = s.size() - pos;
    if (rem < header_end) break;
    const uint64_t v = read_field(s.substr(pos + o.length_field_offset),
                                  o.length_field_length, o.byte_order);
    const i128 after = i128{v} + o.length_adjustment;
    if (v > field_max(o.length_field_length) || after < 0) {
      run.events.push_back({CodecErrc::kCorruptLength, "", v});
      run.stopped = true;
      return run;
    }
    const i128 total = i128{header_end} + after;
    if (total > i128{o.max_frame}) {
      const uint64_t len =
          total > i128{kU64Max} ? kU64Max : static_cast<uint64_t>(total);
      if (o.fail_fast) {
        run.events.push_back({CodecErrc::kFrameTooLong, "", len});
        run.stopped = true;
        return run;
      }
      if (i128{rem} < total) {  // still discarding at the end
        pos = s.size();
        break;
      }
      run.events.push_back({CodecErrc::kFrameTooLong, "", len});
      pos += static_cast<size_t>(total);
      continue;
    }
    if (i128{rem} < total) break;
    const size_t t = static_cast<size_t>(total);
    run.events.push_back(
        {CodecErrc::kNone,
         std::string(s.substr(pos + o.initial_bytes_to_strip,
                              t - o.initial_bytes_to_strip)),
         0});
    pos += t;
  }
  run.leftover = std::string(s.substr(pos));
  return run;
}

LengthFieldOptions options_from(Input& in) {
  LengthFieldOptions o;
  const uint8_t b0 = in.u8();
  const uint8_t b1 = in.u8();
  const uint8_t adj_byte = in.u8();
  const uint8_t strip_byte = in.u8();
  const uint8_t mf_mode = in.u8();
  const uint16_t mf_value = in.u16();
  const uint64_t adj_raw = in.u64();

  static constexpr int kWidths[] = {1, 2, 4, 8};
  o.length_field_length = kWidths[b0 & 3];
  o.byte_order = (b0 & 4) ? ByteOrder::kLittle : ByteOrder::kBig;
  o.fail_fast = (b0 & 8) != 0;
  o.length_field_offset = (b1 & 0x40) ? (b1 & 0x3F) : 0;
  const size_t header_end =
      o.length_field_offset + static_cast<size_t>(o.length_field_length);

  switch (mf_mode & 3) {
    case 0:
      o.max_frame = mf_value % 600;  // small: limits are easy to reach
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

  switch ((b0 >> 4) & 3) {
    case 0:
      o.length_adjustment = 0;
      break;
    case 1:  // the length counts the whole frame
      o.length_adjustment = -static_cast<int64_t>(header_end);
      break;
    case 2:
      o.length_adjustment = static_cast<int8_t>(adj_byte);
      break;
    default:
      o.length_adjustment = static_cast<int64_t>(adj_raw);
      break;
  }

  if (b1 & 0x80) {
    // The helper: offset 0, no adjustment, header stripped, big-endian.
    const int width = ((b0 >> 4) & 3) == 3 ? static_cast<int8_t>(adj_byte)
                                           : o.length_field_length;
    const LengthFieldOptions h = sluice::codec::length_prefix_options(
        width, o.max_frame);
    FUZZ_CHECK(h.length_field_length == width && h.length_field_offset == 0 &&
               h.length_adjustment == 0 && h.byte_order == ByteOrder::kBig &&
               h.max_frame == o.max_frame);
    FUZZ_CHECK(h.initial_bytes_to_strip ==
               (width > 0 ? static_cast<size_t>(width) : 0));
    return h;
  }
  const int64_t adj = o.length_adjustment;
  const uint64_t pos_adj = adj > 0 ? static_cast<uint64_t>(adj) : 0;
  switch ((b0 >> 6) & 3) {
    case 0:
      o.initial_bytes_to_strip = 0;
      break;
    case 1:  // strip the header: frames are the payload
      o.initial_bytes_to_strip = header_end;
      break;
    case 2:
      o.initial_bytes_to_strip =
          strip_byte % (header_end + (pos_adj < 256 ? pos_adj : 255) + 1);
      break;
    default:
      o.initial_bytes_to_strip = strip_byte;  // may be invalid
      break;
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const LengthFieldOptions o = options_from(in);
  const uint16_t cut = in.u16();
  const uint16_t seed = in.u16();
  const std::string_view stream = in.rest();

  const auto codec = construct_checked<LengthFieldCodec>(options_valid(o), o);
  if (!codec) return 0;
  FUZZ_CHECK(codec->max_frame() == o.max_frame);

  Rules rules;
  // kNeedMore means the held bytes are a strict prefix of a frame of at
  // most max_frame bytes (or a discarded frame, of which nothing is held).
  rules.max_held = o.max_frame - 1;
  rules.max_frame_out = o.max_frame - o.initial_bytes_to_strip;
  rules.may_discard = !o.fail_fast;
  rules.recover = !o.fail_fast;
  rules.exact_error_length = true;

  // (1) split invariance, (3) and (4) via the per-call checks.
  const Run whole =
      sluice::fuzz::check_split_invariance(*codec, stream, cut, seed, rules);
  // The whole stream matches the reference model.
  FUZZ_CHECK(sluice::fuzz::same_run(whole, model(o, stream), true));

  // (2) encode -> decode. The encoder writes offset-0 frames, so this
  // applies when the decoder expects the field at offset 0.
  if (o.length_field_offset == 0) {
    Input pin(reinterpret_cast<const uint8_t*>(stream.data()), stream.size());
    const auto payloads = sluice::fuzz::take_payloads(pin, 64);
    const size_t width = static_cast<size_t>(o.length_field_length);
    sluice::fuzz::check_round_trip(
        *codec, payloads, cut, seed, rules,
        [&](const std::string& p) {
          // Accepted iff width + size <= max_frame and the length value
          // size - adjustment fits the field.
          if (i128{p.size()} + i128{width} > i128{o.max_frame}) return 0;
          const i128 value = i128{p.size()} - o.length_adjustment;
          return value >= 0 && value <= i128{field_max(o.length_field_length)}
                     ? 1
                     : 0;
        },
        [&](const std::string&, const std::string& encoded) {
          return encoded.substr(o.initial_bytes_to_strip);
        });
  }
  return 0;
}
