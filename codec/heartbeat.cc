#include "codec/heartbeat.h"

#include <endian.h>

#include <cstdio>
#include <cstring>

namespace sluice::codec::heartbeat {
namespace {

uint64_t load_be64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return be64toh(v);
}

void store_be64(char* p, uint64_t host) {
  const uint64_t v = htobe64(host);
  std::memcpy(p, &v, sizeof v);
}

std::array<char, kProbeSize> encode_probe(Type type, uint64_t seq, uint64_t ts) {
  std::array<char, kProbeSize> out;
  out[0] = static_cast<char>(type);
  store_be64(out.data() + 1, seq);
  store_be64(out.data() + 9, ts);
  return out;
}

const char* type_name(uint8_t t) {
  switch (t) {
    case 0x01: return "PING";
    case 0x02: return "PONG";
    case 0x03: return "DATA";
  }
  return "?";
}

}  // namespace

std::string_view to_string(ParseError e) {
  switch (e) {
    case ParseError::kNone: return "ok";
    case ParseError::kEmpty: return "empty payload";
    case ParseError::kUnknownType: return "unknown type";
    case ParseError::kBadLength: return "bad length";
  }
  return "?";
}

ParseError parse(std::string_view payload, Message* out) {
  if (payload.empty()) return ParseError::kEmpty;
  const uint8_t type = static_cast<uint8_t>(payload[0]);
  switch (type) {
    case 0x01:
    case 0x02:
      if (payload.size() != kProbeSize) return ParseError::kBadLength;
      out->type = static_cast<Type>(type);
      out->seq = load_be64(payload.data() + 1);
      out->timestamp_ns = load_be64(payload.data() + 9);
      out->data = {};
      return ParseError::kNone;
    case 0x03:
      out->type = Type::kData;
      out->seq = out->timestamp_ns = 0;
      out->data = payload.substr(1);
      return ParseError::kNone;
    default:
      return ParseError::kUnknownType;
  }
}

std::string describe(ParseError e, std::string_view payload) {
  char buf[96];
  switch (e) {
    case ParseError::kNone:
      return "ok";
    case ParseError::kEmpty:
      return "empty payload (no type byte)";
    case ParseError::kUnknownType:
      std::snprintf(buf, sizeof buf, "unknown type 0x%02x",
                    static_cast<unsigned>(static_cast<uint8_t>(payload[0])));
      return buf;
    case ParseError::kBadLength:
      std::snprintf(buf, sizeof buf, "%s of %zu bytes (want %zu)",
                    type_name(static_cast<uint8_t>(payload[0])), payload.size(), kProbeSize);
      return buf;
  }
  return "?";
}

std::array<char, kProbeSize> encode_ping(uint64_t seq, uint64_t ts) {
  return encode_probe(Type::kPing, seq, ts);
}

std::array<char, kProbeSize> encode_pong(uint64_t seq, uint64_t ts) {
  return encode_probe(Type::kPong, seq, ts);
}

std::array<char, kProbeSize> pong_for(const Message& ping) {
  return encode_probe(Type::kPong, ping.seq, ping.timestamp_ns);
}

std::string encode_data(std::string_view bytes) {
  std::string out;
  out.reserve(1 + bytes.size());
  out.push_back(static_cast<char>(Type::kData));
  out.append(bytes);
  return out;
}

std::string frame(std::string_view payload) {
  std::string out(kLengthBytes, '\0');
  const uint32_t len = htobe32(static_cast<uint32_t>(payload.size()));
  std::memcpy(out.data(), &len, sizeof len);
  out.append(payload);
  return out;
}

std::unique_ptr<Codec> make_tcp_codec() {
  return std::make_unique<LengthFieldCodec>(length_prefix_options(4, kMaxFrame));
}

StreamParser::StreamParser() : codec_(make_tcp_codec()), decoder_(codec_->new_decoder()) {}

StreamParser::~StreamParser() = default;

StreamParser::Status StreamParser::feed(std::string_view bytes,
                                        const std::function<void(const Message&)>& on_message) {
  if (status_ != Status::kOk) return status_;
  in_.append(bytes);
  CodecErrc err = drain_frames(*decoder_, in_, [&](std::string_view payload) {
    Message m;
    ParseError pe = parse(payload, &m);
    if (pe != ParseError::kNone) {
      status_ = Status::kParseError;
      error_ = describe(pe, payload);
      return false;
    }
    on_message(m);
    return true;
  });
  if (err != CodecErrc::kNone) {
    status_ = Status::kFrameError;
    error_ = std::string(to_string(err));
  }
  return status_;
}

}  // namespace sluice::codec::heartbeat
