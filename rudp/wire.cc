#include "rudp/wire.h"

#include "rudp/crc32c.h"

#include <arpa/inet.h>

#include <cstring>

namespace sluice::rudp {

const char* to_string(WireError e) {
  switch (e) {
    case WireError::kNone: return "ok";
    case WireError::kTooShort: return "datagram too short";
    case WireError::kBadVersion: return "unknown version";
    case WireError::kBadChecksum: return "bad checksum";
    case WireError::kBadType: return "unknown packet type";
    case WireError::kBadFrame: return "malformed frame";
    case WireError::kBadAckRanges: return "ACK ranges below packet 0";
  }
  return "?";
}

size_t varint_size(uint64_t v) {
  if (v < (1u << 6)) return 1;
  if (v < (1u << 14)) return 2;
  if (v < (uint64_t{1} << 30)) return 4;
  return 8;
}

void Writer::u16(uint16_t v) {
  const uint16_t be = htons(v);
  out_.append(reinterpret_cast<const char*>(&be), 2);
}

void Writer::u32(uint32_t v) {
  const uint32_t be = htonl(v);
  out_.append(reinterpret_cast<const char*>(&be), 4);
}

void Writer::u64(uint64_t v) {
  u32(static_cast<uint32_t>(v >> 32));
  u32(static_cast<uint32_t>(v));
}

void Writer::varint(uint64_t v) {
  // RFC 9000 §16: the two high bits of the first byte are log2(length).
  switch (varint_size(v)) {
    case 1: u8(static_cast<uint8_t>(v)); break;
    case 2: u16(static_cast<uint16_t>(v | 0x4000)); break;
    case 4: u32(static_cast<uint32_t>(v | 0x80000000u)); break;
    default: u64(v | 0xc000000000000000ull); break;
  }
}

bool Reader::u8(uint8_t* v) {
  if (left() < 1) return false;
  *v = static_cast<uint8_t>(in_[pos_++]);
  return true;
}

bool Reader::u16(uint16_t* v) {
  if (left() < 2) return false;
  uint16_t be;
  std::memcpy(&be, in_.data() + pos_, 2);
  pos_ += 2;
  *v = ntohs(be);
  return true;
}

bool Reader::u32(uint32_t* v) {
  if (left() < 4) return false;
  uint32_t be;
  std::memcpy(&be, in_.data() + pos_, 4);
  pos_ += 4;
  *v = ntohl(be);
  return true;
}

bool Reader::u64(uint64_t* v) {
  uint32_t hi, lo;
  if (left() < 8 || !u32(&hi) || !u32(&lo)) return false;
  *v = (uint64_t{hi} << 32) | lo;
  return true;
}

bool Reader::varint(uint64_t* v) {
  if (left() < 1) return false;
  const size_t len = size_t{1} << (static_cast<uint8_t>(in_[pos_]) >> 6);
  if (left() < len) return false;
  uint64_t x = static_cast<uint8_t>(in_[pos_]) & 0x3f;
  for (size_t i = 1; i < len; ++i) x = (x << 8) | static_cast<uint8_t>(in_[pos_ + i]);
  pos_ += len;
  *v = x;
  return true;
}

bool Reader::bytes(size_t n, std::string_view* v) {
  if (left() < n) return false;
  *v = in_.substr(pos_, n);
  pos_ += n;
  return true;
}

namespace {

uint32_t checksum(std::string_view d) {
  // The checksum field counts as zero: sum the bytes around it.
  static const unsigned char zeros[4] = {};
  uint32_t c = crc32c(0, d.data(), 4);
  c = crc32c(c, zeros, 4);
  return crc32c(c, d.data() + 8, d.size() - 8);
}

void write_params(Writer& w, const Params& p) {
  w.varint(p.max_message);
  w.varint(p.initial_window);
  w.varint(p.idle_timeout_ms);
  w.varint(p.max_ack_delay_ms);
  w.varint(p.max_datagram);
}

bool read_params(Reader& r, Params* p) {
  return r.varint(&p->max_message) && r.varint(&p->initial_window) &&
         r.varint(&p->idle_timeout_ms) && r.varint(&p->max_ack_delay_ms) &&
         r.varint(&p->max_datagram) && p->max_ack_delay_ms < kMaxAckDelayLimitMs &&
         p->max_datagram >= 256 && p->max_datagram <= 65507;
}

}  // namespace

WireError parse_header(std::string_view d, Header* h) {
  if (d.size() < kHeaderSize) return WireError::kTooShort;
  Reader r(d);
  uint8_t type = 0;
  uint16_t reserved = 0;
  uint32_t sum = 0;
  r.u8(&h->version);
  r.u8(&type);
  r.u16(&reserved);
  r.u32(&sum);
  r.u32(&h->dst_id);
  if (h->version != kVersion) return WireError::kBadVersion;
  if (sum != checksum(d)) return WireError::kBadChecksum;
  if (type < 1 || type > 4) return WireError::kBadType;
  h->type = static_cast<PacketType>(type);
  return WireError::kNone;
}

void begin_datagram(std::string& out, PacketType type, uint32_t dst_id) {
  out.clear();
  Writer w(out);
  w.u8(kVersion);
  w.u8(static_cast<uint8_t>(type));
  w.u16(0);
  w.u32(0);
  w.u32(dst_id);
}

void seal_datagram(std::string& out) {
  const uint32_t be = htonl(checksum(out));
  std::memcpy(out.data() + 4, &be, 4);
}

void write_initial(std::string& out, const Initial& in) {
  Writer w(out);
  w.u32(in.src_id);
  w.u8(static_cast<uint8_t>(in.cookie.size()));
  w.bytes(in.cookie);
  write_params(w, in.params);
  if (out.size() < kInitialSize) out.resize(kInitialSize, '\0');
}

WireError parse_initial(std::string_view body, Initial* in) {
  Reader r(body);
  uint8_t cookie_len = 0;
  std::string_view cookie;
  if (!r.u32(&in->src_id) || in->src_id == 0 || !r.u8(&cookie_len) ||
      (cookie_len != 0 && cookie_len != kCookieSize) || !r.bytes(cookie_len, &cookie) ||
      !read_params(r, &in->params)) {
    return WireError::kBadFrame;
  }
  // The padding is what makes a RETRY no larger than the INITIAL.
  if (body.size() + kHeaderSize < kInitialSize) return WireError::kTooShort;
  in->cookie.assign(cookie);
  return WireError::kNone;
}

void write_retry(std::string& out, std::string_view cookie) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(cookie.size()));
  w.bytes(cookie);
}

WireError parse_retry(std::string_view body, std::string* cookie) {
  Reader r(body);
  uint8_t len = 0;
  std::string_view c;
  if (!r.u8(&len) || len != kCookieSize || !r.bytes(len, &c)) return WireError::kBadFrame;
  cookie->assign(c);
  return WireError::kNone;
}

void write_accept(std::string& out, const Accept& a) {
  Writer w(out);
  w.u32(a.src_id);
  write_params(w, a.params);
}

WireError parse_accept(std::string_view body, Accept* a) {
  Reader r(body);
  if (!r.u32(&a->src_id) || a->src_id == 0 || !read_params(r, &a->params)) {
    return WireError::kBadFrame;
  }
  return WireError::kNone;
}

// ACK frame (RFC 9000 §19.3's layout): largest acknowledged, ACK delay,
// range count (after the first), first range (packets below the largest
// in the first range), then per further range: gap (unacknowledged
// packets minus one) and range length (acknowledged packets minus one).
// ACK_ECN (§19.3.2): the same, then the ECT(0), ECT(1) and CE counts.
size_t ack_frame_size(const std::vector<AckRange>& ranges, uint64_t delay_us,
                      const EcnCounts* ecn) {
  if (ranges.empty()) return 0;
  size_t n = 1 + varint_size(ranges[0].high) + varint_size(delay_us) +
             varint_size(ranges.size() - 1) + varint_size(ranges[0].high - ranges[0].low);
  for (size_t i = 1; i < ranges.size(); ++i) {
    n += varint_size(ranges[i - 1].low - ranges[i].high - 2);
    n += varint_size(ranges[i].high - ranges[i].low);
  }
  if (ecn) n += varint_size(ecn->ect0) + varint_size(ecn->ect1) + varint_size(ecn->ce);
  return n;
}

void write_ack(std::string& out, const std::vector<AckRange>& ranges, uint64_t delay_us,
               const EcnCounts* ecn) {
  if (ranges.empty()) return;  // callers never ask; nothing to acknowledge
  Writer w(out);
  w.u8(static_cast<uint8_t>(ecn ? FrameType::kAckEcn : FrameType::kAck));
  w.varint(ranges[0].high);
  w.varint(delay_us);
  w.varint(ranges.size() - 1);
  w.varint(ranges[0].high - ranges[0].low);
  for (size_t i = 1; i < ranges.size(); ++i) {
    w.varint(ranges[i - 1].low - ranges[i].high - 2);
    w.varint(ranges[i].high - ranges[i].low);
  }
  if (ecn) {
    w.varint(ecn->ect0);
    w.varint(ecn->ect1);
    w.varint(ecn->ce);
  }
}

size_t stream_header_size(uint64_t offset, uint64_t len) {
  return 1 + varint_size(offset) + varint_size(len);
}

void write_stream(std::string& out, uint64_t offset, std::string_view data, bool fin) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(fin ? FrameType::kStreamFin : FrameType::kStream));
  w.varint(offset);
  w.varint(data.size());
  w.bytes(data);
}

void write_max_data(std::string& out, uint64_t limit) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(FrameType::kMaxData));
  w.varint(limit);
}

void write_unreliable(std::string& out, uint64_t seq, std::string_view data) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(FrameType::kUnreliable));
  w.varint(seq);
  w.varint(data.size());
  w.bytes(data);
}

void write_simple(std::string& out, FrameType type) { out.push_back(static_cast<char>(type)); }

void write_reset(std::string& out, uint64_t code) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(FrameType::kReset));
  w.varint(code);
}

WireError read_frame(Reader& r, std::vector<AckRange>& ranges, Frame* f) {
  uint8_t type = 0;
  if (!r.u8(&type)) return WireError::kBadFrame;
  f->type = static_cast<FrameType>(type);
  f->data = {};
  switch (f->type) {
    case FrameType::kPing:
    case FrameType::kClose:
      return WireError::kNone;
    case FrameType::kReset:
    case FrameType::kMaxData:
      return r.varint(&f->offset) ? WireError::kNone : WireError::kBadFrame;
    case FrameType::kStream:
    case FrameType::kStreamFin:
    case FrameType::kUnreliable: {
      uint64_t len = 0;
      if (!r.varint(&f->offset) || !r.varint(&len) || len > r.left() ||
          !r.bytes(static_cast<size_t>(len), &f->data)) {
        return WireError::kBadFrame;
      }
      // A stream offset past 2^62 cannot be reached (RFC 9000 §4.5 too).
      if (f->type != FrameType::kUnreliable && f->offset + len > kVarintMax) {
        return WireError::kBadFrame;
      }
      return WireError::kNone;
    }
    case FrameType::kAck:
    case FrameType::kAckEcn: {
      uint64_t largest = 0, count = 0, first = 0;
      if (!r.varint(&largest) || !r.varint(&f->ack_delay_us) || !r.varint(&count) ||
          !r.varint(&first)) {
        return WireError::kBadFrame;
      }
      if (first > largest) return WireError::kBadAckRanges;
      // Each further range takes at least two bytes: a count past what is
      // left is malformed, and never sizes an allocation.
      if (count > r.left() / 2) return WireError::kBadFrame;
      ranges.clear();
      ranges.push_back({largest - first, largest});
      for (uint64_t i = 0; i < count; ++i) {
        uint64_t gap = 0, len = 0;
        if (!r.varint(&gap) || !r.varint(&len)) return WireError::kBadFrame;
        const uint64_t prev_low = ranges.back().low;
        if (prev_low < gap + 2 || prev_low - gap - 2 < len) return WireError::kBadAckRanges;
        const uint64_t high = prev_low - gap - 2;
        ranges.push_back({high - len, high});
      }
      f->ack_ranges = &ranges;
      f->ecn = {};
      if (f->type == FrameType::kAckEcn &&
          (!r.varint(&f->ecn.ect0) || !r.varint(&f->ecn.ect1) || !r.varint(&f->ecn.ce))) {
        return WireError::kBadFrame;
      }
      return WireError::kNone;
    }
  }
  return WireError::kBadFrame;
}

}  // namespace sluice::rudp
