#include "codec/fixed_length.h"

#include <string>

namespace sluice::codec {
namespace {

// Stateless: the frame boundary is always at the start of the input.
class FixedLengthDecoder final : public Decoder {
 public:
  explicit FixedLengthDecoder(size_t n) : n_(n) {}

  DecodeResult decode(std::string_view in) override {
    if (in.size() < n_) return DecodeResult::need_more();
    return DecodeResult::ok(n_, in.substr(0, n_));
  }

 private:
  const size_t n_;
};

}  // namespace

FixedLengthCodec::FixedLengthCodec(size_t frame_size, size_t max_frame)
    : frame_size_(frame_size) {
  if (frame_size == 0 || frame_size > max_frame) {
    throw CodecConfigError("fixed codec: frame size must be in 1.." +
                           std::to_string(max_frame) + " (got " +
                           std::to_string(frame_size) + ")");
  }
}

std::unique_ptr<Decoder> FixedLengthCodec::new_decoder() const {
  return std::make_unique<FixedLengthDecoder>(frame_size_);
}

bool FixedLengthCodec::encode(std::string_view payload, Buffer& out) const {
  if (payload.size() != frame_size_) return false;
  out.append(payload);
  return true;
}

}  // namespace sluice::codec
