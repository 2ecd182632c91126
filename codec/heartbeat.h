// The heartbeat protocol's messages (docs/PROTOCOL.md): payload encoding
// and parsing, plus the TCP framing helpers used by clients and tests.
//
// A payload's first byte is its type:
//   0x01 PING  + 8-byte BE sequence + 8-byte BE sender timestamp (ns)  = 17 bytes
//   0x02 PONG  + the same 16 bytes as the PING it answers            = 17 bytes
//   0x03 DATA  + any bytes (echoed back unchanged by the server)
// Anything else (empty, unknown type, PING/PONG of another length) is a
// protocol error. Over TCP each payload is one length-prefix frame (4-byte
// big-endian length, then the payload); over UDP one datagram, no prefix.
//
// Integers are copied with memcpy and converted with be64toh/htobe64: no
// pointer casts, no alignment assumptions. Parsing never throws and never
// reads past the view it is given.
//
// Thread rules: free functions are thread-safe; a StreamParser belongs to
// one thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "codec/codec.h"
#include "codec/length_field.h"
#include "base/buffer.h"

namespace sluice::codec::heartbeat {

enum class Type : uint8_t { kPing = 0x01, kPong = 0x02, kData = 0x03 };

constexpr size_t kProbeSize = 17;   // PING/PONG payload: type + seq + timestamp
constexpr size_t kLengthBytes = 4;  // TCP frame header
// Largest payload: a DATA message still fits one UDP datagram.
constexpr size_t kMaxPayload = 65507;  // the IPv4 UDP payload limit
// The length codec's max_frame counts the header too.
constexpr size_t kMaxFrame = kLengthBytes + kMaxPayload;

struct Message {
  Type type = Type::kData;
  uint64_t seq = 0;           // PING/PONG
  uint64_t timestamp_ns = 0;  // PING/PONG: the pinger's clock, opaque to others
  std::string_view data;      // DATA: the bytes after the type byte
};

enum class ParseError { kNone, kEmpty, kUnknownType, kBadLength };

std::string_view to_string(ParseError e);

// Parses one payload. On kNone *out is filled (views into payload).
ParseError parse(std::string_view payload, Message* out);
// A log-friendly description of why payload failed to parse, e.g.
// "unknown type 0x07" or "PING of 5 bytes (want 17)".
std::string describe(ParseError e, std::string_view payload);

// Payload encoders.
std::array<char, kProbeSize> encode_ping(uint64_t seq, uint64_t timestamp_ns);
std::array<char, kProbeSize> encode_pong(uint64_t seq, uint64_t timestamp_ns);
// The PONG answering a parsed PING: same sequence and timestamp.
std::array<char, kProbeSize> pong_for(const Message& ping);
std::string encode_data(std::string_view bytes);
inline std::string_view view(const std::array<char, kProbeSize>& a) {
  return {a.data(), a.size()};
}

// TCP: the length-prefix frame for a payload (4-byte BE length + payload).
std::string frame(std::string_view payload);
// The codec servers and clients use for TCP: 4-byte big-endian length,
// frames up to kMaxFrame bytes (header included).
std::unique_ptr<Codec> make_tcp_codec();

// Incremental TCP stream parser (for raw-socket clients and tests): bytes
// go in as they arrive, split anywhere; each complete valid payload comes
// out. The first error (frame or payload) is sticky.
class StreamParser {
 public:
  enum class Status { kOk, kFrameError, kParseError };

  StreamParser();
  ~StreamParser();

  Status feed(std::string_view bytes, const std::function<void(const Message&)>& on_message);
  Status status() const { return status_; }
  const std::string& error() const { return error_; }
  size_t buffered() const { return in_.readable(); }

 private:
  std::unique_ptr<Codec> codec_;
  std::unique_ptr<Decoder> decoder_;
  Buffer in_;
  Status status_ = Status::kOk;
  std::string error_;
};

}  // namespace sluice::codec::heartbeat
