// Framing codecs: turn a TCP byte stream into frames and back.
//
// Contract (the model is Netty's ByteToMessageDecoder):
//  * decode() looks at the bytes buffered so far. An incomplete frame
//    consumes nothing (consumed == 0, status kNeedMore); the caller keeps
//    the bytes and calls again when more arrive.
//  * The driver loops while frames come out, so many frames in one read all
//    come out (see drain_frames()).
//  * A frame over the maximum length or a corrupt length field yields
//    kError with a typed CodecErrc; nothing is buffered without bound,
//    because the error is raised before more than max_frame bytes of a
//    frame need to be kept.
//  * Options are validated when the codec is built: invalid options throw
//    CodecConfigError (a configuration error, never a peer's doing).
//    Peer input never throws.
//
// Thread rules: a Codec is immutable after construction and may be shared
// by all loops. A Decoder is per connection (it may keep scan state) and is
// used by that connection's loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "base/buffer.h"

namespace sluice::codec {

enum class CodecErrc {
  kNone = 0,
  kFrameTooLong,   // a frame (or its announced length) exceeds max_frame
  kCorruptLength,  // length field gives an impossible size (e.g. negative
                   // after adjustment, or shorter than the header)
};

std::string_view to_string(CodecErrc e);

class CodecConfigError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class DecodeStatus { kFrame, kNeedMore, kError };

struct DecodeResult {
  DecodeStatus status = DecodeStatus::kNeedMore;
  // Bytes to drop from the front of the input (0 when kNeedMore, except
  // while a non-fail-fast decoder discards an oversize frame).
  size_t consumed = 0;
  // On kFrame: the frame payload, a view into the input passed to decode();
  // valid until the caller drops or changes those bytes.
  std::string_view frame;
  CodecErrc error = CodecErrc::kNone;
  // On kError: bytes of the offending frame, as far as known (for logs).
  uint64_t error_length = 0;

  static DecodeResult need_more(size_t consumed = 0) {
    return {DecodeStatus::kNeedMore, consumed, {}, CodecErrc::kNone, 0};
  }
  static DecodeResult ok(size_t consumed, std::string_view frame) {
    return {DecodeStatus::kFrame, consumed, frame, CodecErrc::kNone, 0};
  }
  static DecodeResult fail(CodecErrc e, size_t consumed, uint64_t len) {
    return {DecodeStatus::kError, consumed, {}, e, len};
  }
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Examines `in` (all bytes buffered so far, starting at a frame boundary
  // as left by earlier calls) and returns at most one frame.
  virtual DecodeResult decode(std::string_view in) = 0;
};

class Codec {
 public:
  virtual ~Codec() = default;
  virtual std::string_view name() const = 0;
  virtual size_t max_frame() const = 0;
  // A fresh decoder for one connection.
  virtual std::unique_ptr<Decoder> new_decoder() const = 0;
  // Appends the encoded frame for `payload` to `out`. Returns false (and
  // appends nothing) if the payload cannot be framed, e.g. longer than the
  // length field or max_frame allows, or containing the delimiter.
  virtual bool encode(std::string_view payload, Buffer& out) const = 0;
};

// Runs `decoder` over the bytes in `in` (starting at a frame boundary)
// until it needs more or fails, calling on_frame(std::string_view) for each
// frame, in place: frames are views into `in`. Sets *consumed to the bytes
// done with (frames and anything the decoder skipped); the caller keeps the
// rest, an incomplete frame, for the next call. on_frame may return bool:
// false stops after that frame. Returns kNone, or the error that stopped
// decoding (then *consumed covers what came before the bad frame).
template <typename OnFrame>
CodecErrc drain_frames(Decoder& decoder, std::string_view in, size_t* consumed,
                       OnFrame&& on_frame) {
  size_t used = 0;
  for (;;) {
    DecodeResult r = decoder.decode(in.substr(used));
    if (r.status == DecodeStatus::kFrame) {
      if constexpr (std::is_same_v<decltype(on_frame(r.frame)), bool>) {
        const bool more = on_frame(r.frame);
        used += r.consumed;
        if (!more) break;
      } else {
        on_frame(r.frame);
        used += r.consumed;
      }
      continue;
    }
    used += r.consumed;
    if (r.status == DecodeStatus::kError) {
      *consumed = used;
      return r.error;
    }
    if (r.consumed == 0 || used == in.size()) break;
  }
  *consumed = used;
  return CodecErrc::kNone;
}

// The same over a Buffer: runs `decoder` over `in` until it needs more bytes or fails, calling
// on_frame(std::string_view) for each frame. Drops consumed bytes from `in`.
// on_frame may return bool: false stops after that frame (e.g. the
// connection was closed). Returns kNone, or the error that stopped decoding.
template <typename OnFrame>
CodecErrc drain_frames(Decoder& decoder, Buffer& in, OnFrame&& on_frame) {
  for (;;) {
    DecodeResult r = decoder.decode(in.view());
    if (r.status == DecodeStatus::kFrame) {
      if constexpr (std::is_same_v<decltype(on_frame(r.frame)), bool>) {
        const bool more = on_frame(r.frame);
        in.retrieve(r.consumed);
        if (!more) return CodecErrc::kNone;
      } else {
        on_frame(r.frame);
        in.retrieve(r.consumed);
      }
      continue;
    }
    if (r.consumed) in.retrieve(r.consumed);
    if (r.status == DecodeStatus::kError) return r.error;
    if (r.consumed == 0 || in.empty()) return CodecErrc::kNone;
  }
}

}  // namespace sluice::codec
