#include "codec/codec.h"

namespace sluice::codec {

std::string_view to_string(CodecErrc e) {
  switch (e) {
    case CodecErrc::kNone:
      return "none";
    case CodecErrc::kFrameTooLong:
      return "frame too long";
    case CodecErrc::kCorruptLength:
      return "corrupt length field";
  }
  return "unknown codec error";
}

}  // namespace sluice::codec
