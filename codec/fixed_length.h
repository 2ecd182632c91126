// Fixed-size framing: every frame is exactly frame_size bytes, no header.
//
//   +---------------------------+---------------------------+----
//   |   frame 1 (frame_size)    |   frame 2 (frame_size)    | ...
//   +---------------------------+---------------------------+----
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "codec/codec.h"

namespace sluice::codec {

class FixedLengthCodec final : public Codec {
 public:
  // Throws CodecConfigError unless 1 <= frame_size <= max_frame.
  explicit FixedLengthCodec(size_t frame_size,
                            size_t max_frame = size_t{1} << 20);

  std::string_view name() const override { return "fixed"; }
  // Every frame has this exact size, so it is also the maximum.
  size_t max_frame() const override { return frame_size_; }
  std::unique_ptr<Decoder> new_decoder() const override;
  // Refuses payloads whose size is not frame_size.
  bool encode(std::string_view payload, Buffer& out) const override;

  size_t frame_size() const { return frame_size_; }

 private:
  size_t frame_size_;
};

}  // namespace sluice::codec
