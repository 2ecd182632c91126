// Builds a codec from command-line style options (the servers' --codec,
// --length-bytes, --fixed-size, --delimiter, --max-frame flags).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "codec/codec.h"

namespace sluice::codec {

struct CodecOptions {
  std::string name;  // "raw", "length", "fixed", "delimiter", "line"
  int length_bytes = 4;
  size_t fixed_size = 0;
  std::string delimiter = "\n";  // C escapes allowed, see unescape()
  size_t max_frame = 1 << 20;
};

// nullptr for "raw" (no framing: bytes pass through as they arrive).
// "length": length_bytes-wide big-endian payload length, header stripped.
// "fixed": fixed_size-byte frames. "delimiter": one delimiter, stripped.
// "line": "\n" or "\r\n", stripped; encodes "\n".
// Throws CodecConfigError for an unknown name or invalid options.
std::unique_ptr<Codec> make_codec(const CodecOptions& opts);

// Decodes the C escapes \n \r \t \0 \\ and \xHH (exactly two hex digits);
// other bytes are taken literally. Throws CodecConfigError on a dangling
// or unknown escape.
std::string unescape(std::string_view s);

}  // namespace sluice::codec
