#include "codec/length_field.h"

#include <endian.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

namespace sluice::codec {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kI64Max = std::numeric_limits<int64_t>::max();

// Largest value a field may carry. An 8-byte field is read as signed (as
// Netty does), so values above INT64_MAX are corrupt.
uint64_t field_max(int width) {
  return width == 8 ? kI64Max : (uint64_t{1} << (8 * width)) - 1;
}

// |adj| for a negative adjustment, without overflowing on INT64_MIN.
uint64_t magnitude_of_negative(int64_t adj) {
  return static_cast<uint64_t>(-(adj + 1)) + 1;
}

// Integers are copied out with memcpy (no alignment or aliasing
// assumptions) and then converted from wire byte order.
uint64_t read_field(const char* p, int width, ByteOrder order) {
  const bool big = order == ByteOrder::kBig;
  switch (width) {
    case 1: {
      uint8_t v;
      std::memcpy(&v, p, 1);
      return v;
    }
    case 2: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return big ? be16toh(v) : le16toh(v);
    }
    case 4: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return big ? be32toh(v) : le32toh(v);
    }
    default: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      return big ? be64toh(v) : le64toh(v);
    }
  }
}

// Precondition: value <= field_max(width).
void write_field(char* p, uint64_t value, int width, ByteOrder order) {
  const bool big = order == ByteOrder::kBig;
  switch (width) {
    case 1: {
      const uint8_t v = static_cast<uint8_t>(value);
      std::memcpy(p, &v, 1);
      break;
    }
    case 2: {
      const uint16_t h = static_cast<uint16_t>(value);
      const uint16_t v = big ? htobe16(h) : htole16(h);
      std::memcpy(p, &v, 2);
      break;
    }
    case 4: {
      const uint32_t h = static_cast<uint32_t>(value);
      const uint32_t v = big ? htobe32(h) : htole32(h);
      std::memcpy(p, &v, 4);
      break;
    }
    default: {
      const uint64_t v = big ? htobe64(value) : htole64(value);
      std::memcpy(p, &v, 8);
      break;
    }
  }
}

void validate(const LengthFieldOptions& o) {
  const int w = o.length_field_length;
  if (w != 1 && w != 2 && w != 4 && w != 8) {
    throw CodecConfigError(
        "length codec: length_field_length must be 1, 2, "
        "4 or 8 (got " +
        std::to_string(w) + ")");
  }
  const size_t width = static_cast<size_t>(w);
  // max_frame > offset + width, written so the sum cannot overflow.
  if (o.length_field_offset >= o.max_frame ||
      o.max_frame - o.length_field_offset <= width) {
    throw CodecConfigError(
        "length codec: max_frame (" + std::to_string(o.max_frame) +
        ") must exceed length_field_offset + length_field_length (" +
        std::to_string(o.length_field_offset) + " + " + std::to_string(w) +
        ")");
  }
  const size_t header_end = o.length_field_offset + width;
  const int64_t adj = o.length_adjustment;
  if (adj > 0 && static_cast<uint64_t>(adj) > o.max_frame - header_end) {
    throw CodecConfigError("length codec: length_adjustment " +
                           std::to_string(adj) +
                           " makes every frame exceed max_frame");
  }
  if (adj < 0 && magnitude_of_negative(adj) > field_max(w)) {
    throw CodecConfigError("length codec: length_adjustment " +
                           std::to_string(adj) +
                           " makes every length value corrupt for a " +
                           std::to_string(w) + "-byte field");
  }
  // Stripping past header + fixed extra bytes would eat into a part whose
  // size depends on the field; with this rule a decoded frame (length >=
  // header_end + max(adj, 0)) is never shorter than the strip.
  const size_t strip_max =
      header_end + (adj > 0 ? static_cast<size_t>(adj) : 0);
  if (o.initial_bytes_to_strip > strip_max) {
    throw CodecConfigError(
        "length codec: initial_bytes_to_strip (" +
        std::to_string(o.initial_bytes_to_strip) + ") must be <= " +
        "length_field_offset + length_field_length + max(length_adjustment, "
        "0) = " +
        std::to_string(strip_max));
  }
}

// Per-connection state exists only for discarding mode (fail_fast false).
class LengthFieldDecoder final : public Decoder {
 public:
  explicit LengthFieldDecoder(const LengthFieldOptions& o)
      : o_(o),
        header_end_(o.length_field_offset +
                    static_cast<size_t>(o.length_field_length)) {}

  DecodeResult decode(std::string_view in) override {
    if (discard_left_ > 0) return discard(in);
    if (in.size() < header_end_) return DecodeResult::need_more();

    const uint64_t v = read_field(in.data() + o_.length_field_offset,
                                  o_.length_field_length, o_.byte_order);
    if (v > field_max(o_.length_field_length)) {
      return DecodeResult::fail(CodecErrc::kCorruptLength, 0, v);
    }
    // after = v + adjustment: the bytes that follow the field. v and |adj|
    // are both <= INT64_MAX, so neither branch can wrap.
    uint64_t after;
    if (o_.length_adjustment < 0) {
      const uint64_t neg = magnitude_of_negative(o_.length_adjustment);
      if (v < neg) return DecodeResult::fail(CodecErrc::kCorruptLength, 0, v);
      after = v - neg;
    } else {
      after = v + static_cast<uint64_t>(o_.length_adjustment);
    }
    if (after > o_.max_frame - header_end_) return too_long(in, after);

    const size_t total = header_end_ + after;
    if (in.size() < total) return DecodeResult::need_more();
    // Validation guarantees total >= initial_bytes_to_strip.
    const size_t strip = o_.initial_bytes_to_strip;
    return DecodeResult::ok(total, in.substr(strip, total - strip));
  }

 private:
  DecodeResult too_long(std::string_view in, uint64_t after) {
    const uint64_t total =
        after > kU64Max - header_end_ ? kU64Max : after + header_end_;
    if (o_.fail_fast) {
      return DecodeResult::fail(CodecErrc::kFrameTooLong, 0, total);
    }
    if (in.size() >= total) {
      return DecodeResult::fail(CodecErrc::kFrameTooLong, total, total);
    }
    // Discarding mode: drop what is here now and the rest as it arrives,
    // so nothing of the oversize frame is ever buffered.
    discard_total_ = total;
    discard_left_ = total - in.size();
    return DecodeResult::need_more(in.size());
  }

  DecodeResult discard(std::string_view in) {
    const uint64_t n = std::min<uint64_t>(in.size(), discard_left_);
    discard_left_ -= n;
    if (discard_left_ == 0) {
      return DecodeResult::fail(CodecErrc::kFrameTooLong, n, discard_total_);
    }
    return DecodeResult::need_more(n);
  }

  const LengthFieldOptions o_;
  const size_t header_end_;
  uint64_t discard_left_ = 0;   // > 0 while discarding an oversize frame
  uint64_t discard_total_ = 0;  // its announced length, for the report
};

}  // namespace

LengthFieldOptions length_prefix_options(int width, size_t max_frame) {
  LengthFieldOptions o;
  o.length_field_length = width;
  o.byte_order = ByteOrder::kBig;
  o.length_field_offset = 0;
  o.length_adjustment = 0;
  o.initial_bytes_to_strip = width > 0 ? static_cast<size_t>(width) : 0;
  o.max_frame = max_frame;
  return o;
}

LengthFieldCodec::LengthFieldCodec(const LengthFieldOptions& opts)
    : opts_(opts) {
  validate(opts_);
}

std::unique_ptr<Decoder> LengthFieldCodec::new_decoder() const {
  return std::make_unique<LengthFieldDecoder>(opts_);
}

bool LengthFieldCodec::encode(std::string_view payload, Buffer& out) const {
  const int w = opts_.length_field_length;
  const size_t width = static_cast<size_t>(w);
  const uint64_t size = payload.size();
  // Encoded frames have offset 0: width + payload must fit max_frame
  // (validation guarantees max_frame > width).
  if (size > opts_.max_frame - width) return false;
  uint64_t value;
  const int64_t adj = opts_.length_adjustment;
  if (adj >= 0) {
    if (size < static_cast<uint64_t>(adj)) return false;
    value = size - static_cast<uint64_t>(adj);
  } else {
    const uint64_t neg = magnitude_of_negative(adj);
    if (size > kU64Max - neg) return false;
    value = size + neg;
  }
  if (value > field_max(w)) return false;

  char header[8];
  write_field(header, value, w, opts_.byte_order);
  out.ensure_writable(width + payload.size());
  out.append(header, width);
  out.append(payload);
  return true;
}

}  // namespace sluice::codec
