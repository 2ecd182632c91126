// Length-prefix framing, modelled on Netty's LengthFieldBasedFrameDecoder
// (decoding) and LengthFieldPrepender (encoding).
//
// A frame on the wire (offsets in bytes):
//
//   0        length_field_offset     header_end = offset + width
//   +------------------+-------------+---------------------------------+
//   | leading bytes    | length (N)  | N + length_adjustment bytes     |
//   +------------------+-------------+---------------------------------+
//   |<-------- initial_bytes_to_strip -------->|<--- returned frame --->|
//
//   total = header_end + N + length_adjustment   (must be <= max_frame)
//
// The encoder writes [length][payload] (offset 0) with
// length = payload.size() - length_adjustment; the decoder gives the
// payload back when length_field_offset == 0 and
// initial_bytes_to_strip == width (see length_prefix_options()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "codec/codec.h"

namespace sluice::codec {

enum class ByteOrder { kBig, kLittle };

struct LengthFieldOptions {
  // Width of the length field in bytes: 1, 2, 4 or 8.
  int length_field_length = 4;
  ByteOrder byte_order = ByteOrder::kBig;
  // Bytes before the length field (part of the frame; 0 for encoding).
  size_t length_field_offset = 0;
  // Added to the field's value to get the bytes that follow the field
  // (e.g. -header_end when the length counts the whole frame).
  int64_t length_adjustment = 0;
  // Bytes dropped from the front of each decoded frame.
  size_t initial_bytes_to_strip = 0;
  // Largest whole frame (header included) the decoder accepts.
  size_t max_frame = size_t{1} << 20;
  // true: error as soon as the length field announces an oversize frame.
  // false: discard the frame's bytes as they arrive, report the error once
  // it is gone, then decode the following frames normally.
  bool fail_fast = true;
};

// The server's default: `width`-byte big-endian length of the payload,
// offset 0, no adjustment, header stripped (frames are payload only).
LengthFieldOptions length_prefix_options(int width = 4,
                                         size_t max_frame = size_t{1} << 20);

class LengthFieldCodec final : public Codec {
 public:
  // Throws CodecConfigError when the options are inconsistent.
  explicit LengthFieldCodec(const LengthFieldOptions& opts);

  std::string_view name() const override { return "length"; }
  size_t max_frame() const override { return opts_.max_frame; }
  std::unique_ptr<Decoder> new_decoder() const override;
  bool encode(std::string_view payload, Buffer& out) const override;

  const LengthFieldOptions& options() const { return opts_; }

 private:
  LengthFieldOptions opts_;
};

}  // namespace sluice::codec
