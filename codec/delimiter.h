// Delimiter framing (Netty's DelimiterBasedFrameDecoder) and line framing
// (LineBasedFrameDecoder).
//
//   +--------------------------+-------+--------------------------+-------+
//   | frame 1 (no delimiter)   | delim | frame 2                  | delim |
//   +--------------------------+-------+--------------------------+-------+
//
// Several delimiters: the frame ends at the earliest position where any
// delimiter matches; if several match at that position the longest wins.
// The decision never depends on how the stream was split: while a longer
// delimiter could still match at the winning position (its prefix is all
// that has arrived) the decoder waits for more bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "codec/codec.h"

namespace sluice::codec {

struct DelimiterOptions {
  // Non-empty strings of at most kMaxDelimiterLength bytes. The first is
  // what the encoder writes, so it must not be a proper prefix of another
  // (a following frame could extend it into the longer one).
  std::vector<std::string> delimiters = {"\n"};
  // true: frames exclude the delimiter; false: frames end with it.
  bool strip_delimiter = true;
  // Largest frame content (bytes before the delimiter), >= 1.
  size_t max_frame = size_t{1} << 20;
};

inline constexpr size_t kMaxDelimiterLength = 64;

struct DelimiterSpec;  // immutable delimiter set shared by codec + decoders

class DelimiterCodec final : public Codec {
 public:
  // Throws CodecConfigError on invalid options.
  explicit DelimiterCodec(DelimiterOptions opts);
  ~DelimiterCodec() override;

  std::string_view name() const override { return "delimiter"; }
  size_t max_frame() const override;
  std::unique_ptr<Decoder> new_decoder() const override;
  // Appends payload + first delimiter. Refuses payloads over max_frame,
  // containing a delimiter, or whose tail would join the appended
  // delimiter into an earlier match (the frame would not round-trip).
  bool encode(std::string_view payload, Buffer& out) const override;

 private:
  std::shared_ptr<const DelimiterSpec> spec_;
};

// Exposed for its scan-cost counter; obtain one via new_decoder().
//
// Invariant between calls (input only grows at the back): no delimiter
// starts at a position < scanned_, so each byte is examined O(1) times per
// frame however the frame is split (times the delimiter length at most,
// while a partial delimiter waits for its end).
class DelimiterDecoder final : public Decoder {
 public:
  explicit DelimiterDecoder(std::shared_ptr<const DelimiterSpec> spec);
  DecodeResult decode(std::string_view in) override;
  // Test hook: positions scanned so far (O(n) for n bytes however split).
  uint64_t positions_examined() const { return examined_; }

 private:
  DecodeResult decode_single(std::string_view in, size_t start, size_t limit);

  std::shared_ptr<const DelimiterSpec> spec_;
  // Copied from the spec so the common single-byte case needs no pointer
  // chase per frame. single_: that byte, or -1 for the general scan.
  int single_;
  bool strip_;
  size_t max_frame_;
  size_t scanned_ = 0;
  uint64_t examined_ = 0;
};

struct LineOptions {
  // Largest line content (without "\n" / "\r\n"), >= 1.
  size_t max_frame = size_t{1} << 20;
  // Encoder line ending: "\r\n" when true, "\n" otherwise.
  bool crlf = false;
};

// Lines end at "\n" or "\r\n"; both are stripped. A lone "\r" is data.
class LineCodec final : public Codec {
 public:
  explicit LineCodec(LineOptions opts = {});

  std::string_view name() const override { return "line"; }
  size_t max_frame() const override { return opts_.max_frame; }
  std::unique_ptr<Decoder> new_decoder() const override;
  // Refuses payloads over max_frame, containing '\n', or (with "\n"
  // endings) ending in '\r', which would read back as part of "\r\n".
  bool encode(std::string_view payload, Buffer& out) const override;

 private:
  LineOptions opts_;
};

// Same scan-state invariant as DelimiterDecoder, with memchr for '\n'.
class LineDecoder final : public Decoder {
 public:
  explicit LineDecoder(size_t max_frame) : max_frame_(max_frame) {}
  DecodeResult decode(std::string_view in) override;
  uint64_t positions_examined() const { return examined_; }

 private:
  const size_t max_frame_;
  size_t scanned_ = 0;
  uint64_t examined_ = 0;
};

}  // namespace sluice::codec
