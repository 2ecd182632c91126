#include "codec/factory.h"

#include "codec/delimiter.h"
#include "codec/fixed_length.h"
#include "codec/length_field.h"

namespace sluice::codec {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) {
      throw CodecConfigError("delimiter: dangling '\\' at the end");
    }
    switch (s[i]) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case '0':
        out += '\0';
        break;
      case '\\':
        out += '\\';
        break;
      case 'x': {
        const int hi = i + 1 < s.size() ? hex_value(s[i + 1]) : -1;
        const int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
          throw CodecConfigError("delimiter: \\x needs two hex digits");
        }
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        break;
      }
      default:
        throw CodecConfigError(std::string("delimiter: unknown escape '\\") +
                               s[i] + "'");
    }
  }
  return out;
}

std::unique_ptr<Codec> make_codec(const CodecOptions& o) {
  if (o.name == "raw") return nullptr;
  if (o.name == "length") {
    return std::make_unique<LengthFieldCodec>(
        length_prefix_options(o.length_bytes, o.max_frame));
  }
  if (o.name == "fixed") {
    return std::make_unique<FixedLengthCodec>(o.fixed_size, o.max_frame);
  }
  if (o.name == "delimiter") {
    DelimiterOptions d;
    d.delimiters = {unescape(o.delimiter)};
    d.max_frame = o.max_frame;
    return std::make_unique<DelimiterCodec>(std::move(d));
  }
  if (o.name == "line") {
    LineOptions l;
    l.max_frame = o.max_frame;
    return std::make_unique<LineCodec>(l);
  }
  throw CodecConfigError("unknown codec '" + o.name +
                         "' (expected raw, length, fixed, delimiter or line)");
}

}  // namespace sluice::codec
