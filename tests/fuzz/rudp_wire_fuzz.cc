// Fuzz target: rudp's packet parser (rudp/wire.h) on arbitrary bytes:
// parse_header, for_each_frame, parse_initial / parse_retry / parse_accept
// and the varint reader. Not only "no crash, no UB": it checks
//   * parse_header accepts only a datagram whose checksum is its own CRC-32
//     (resealing it changes nothing), and any datagram this side seals
//     parses (type 1..4) or is kBadType, and fails with one bit flipped;
//   * for_each_frame is all or nothing: an error calls fn for no frame,
//     success for at least one; views stay inside the payload; ACK ranges
//     are descending, disjoint, non-adjacent, at or above packet 0, and
//     no more of them than the bytes could describe (no allocation sized
//     by a count field); a STREAM never ends past 2^62 - 1;
//   * whatever parses re-encodes with the writers (minimal varints, so no
//     longer than the input) and parses back to the same thing, and
//     ack_frame_size() is exactly what write_ack() writes;
//   * a valid packet cut inside a frame is rejected whole.
//
// Input layout: [0] a packet type for the sealed-datagram check; the rest,
// `body`, is tried as everything: a raw datagram (the whole input), an
// INITIAL/RETRY/ACCEPT body, a frame payload and a DATA body (packet
// number, then frames).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rudp/wire.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace sluice::rudp;  // NOLINT: a test of this one header

struct Got {
  FrameType type;
  std::vector<AckRange> ranges;
  uint64_t ack_delay_us = 0;
  uint64_t offset = 0;
  std::string data;
  EcnCounts ecn;  // kAckEcn
};

bool same(const Got& a, const Got& b) {
  if (a.type != b.type || a.data != b.data) return false;
  if (a.type == FrameType::kAck || a.type == FrameType::kAckEcn) {
    if (a.ack_delay_us != b.ack_delay_us || a.ranges.size() != b.ranges.size()) return false;
    if (!(a.ecn == b.ecn)) return false;
    for (size_t i = 0; i < a.ranges.size(); ++i) {
      if (a.ranges[i].low != b.ranges[i].low || a.ranges[i].high != b.ranges[i].high) return false;
    }
    return true;
  }
  if (a.type == FrameType::kPing || a.type == FrameType::kClose) return true;
  return a.offset == b.offset;
}

// Runs for_each_frame and checks what every call sees; the frames, copied.
WireError frames(std::string_view payload, std::vector<Got>* out) {
  std::vector<AckRange> scratch;
  out->clear();
  const WireError e = for_each_frame(payload, scratch, [&](const Frame& f) {
    Got g{f.type, {}, 0, 0, std::string(f.data), {}};
    if (!f.data.empty()) {
      FUZZ_CHECK(f.data.data() >= payload.data() &&
                 f.data.data() + f.data.size() <= payload.data() + payload.size());
    }
    switch (f.type) {
      case FrameType::kPing:
      case FrameType::kClose:
      case FrameType::kMaxData:
      case FrameType::kReset:
        FUZZ_CHECK(f.data.empty());
        break;
      case FrameType::kStream:
      case FrameType::kStreamFin:
        FUZZ_CHECK(f.offset <= kVarintMax && f.data.size() <= kVarintMax - f.offset);
        break;
      case FrameType::kUnreliable:
        break;
      case FrameType::kAck:
      case FrameType::kAckEcn: {
        FUZZ_CHECK(f.ack_ranges == &scratch);
        const std::vector<AckRange>& r = *f.ack_ranges;
        FUZZ_CHECK(!r.empty());
        // The first range costs >= 4 bytes with the type, each further >= 2.
        FUZZ_CHECK(r.size() <= 1 + payload.size() / 2);
        FUZZ_CHECK(r[0].high <= kVarintMax);
        for (size_t i = 0; i < r.size(); ++i) {
          FUZZ_CHECK(r[i].low <= r[i].high);
          if (i > 0) FUZZ_CHECK(r[i].high + 2 <= r[i - 1].low);
        }
        g.ranges = r;
        g.ack_delay_us = f.ack_delay_us;
        if (f.type == FrameType::kAckEcn) g.ecn = f.ecn;
        break;
      }
      default:
        sluice::fuzz::property_failed("for_each_frame passed an unknown frame type", __FILE__,
                                      __LINE__);
    }
    g.offset = f.offset;
    out->push_back(std::move(g));
  });
  if (e == WireError::kNone) {
    FUZZ_CHECK(!out->empty());
  } else {
    FUZZ_CHECK(out->empty());  // rejected whole: nothing was applied
    FUZZ_CHECK(e == WireError::kBadFrame || e == WireError::kBadAckRanges);
  }
  return e;
}

std::string encode(const std::vector<Got>& fs) {
  std::string p;
  for (const Got& g : fs) {
    const size_t before = p.size();
    switch (g.type) {
      case FrameType::kPing:
      case FrameType::kClose: write_simple(p, g.type); break;
      case FrameType::kAck:
        write_ack(p, g.ranges, g.ack_delay_us);
        FUZZ_CHECK(p.size() - before == ack_frame_size(g.ranges, g.ack_delay_us));
        break;
      case FrameType::kAckEcn:
        write_ack(p, g.ranges, g.ack_delay_us, &g.ecn);
        FUZZ_CHECK(p.size() - before == ack_frame_size(g.ranges, g.ack_delay_us, &g.ecn));
        break;
      case FrameType::kStream:
      case FrameType::kStreamFin:
        write_stream(p, g.offset, g.data, g.type == FrameType::kStreamFin);
        FUZZ_CHECK(p.size() - before == stream_header_size(g.offset, g.data.size()) + g.data.size());
        break;
      case FrameType::kMaxData: write_max_data(p, g.offset); break;
      case FrameType::kUnreliable: write_unreliable(p, g.offset, g.data); break;
      case FrameType::kReset: write_reset(p, g.offset); break;
    }
  }
  return p;
}

void check_frames(std::string_view payload, uint8_t pick) {
  std::vector<Got> got;
  if (frames(payload, &got) != WireError::kNone) return;
  // Re-encoded with minimal varints: no longer, and the same frames.
  const std::string again = encode(got);
  FUZZ_CHECK(again.size() <= payload.size());
  std::vector<Got> back;
  FUZZ_CHECK(frames(again, &back) == WireError::kNone);
  FUZZ_CHECK(back.size() == got.size());
  for (size_t i = 0; i < got.size(); ++i) FUZZ_CHECK(same(got[i], back[i]));
  // Cut the re-encoded packet (where frame ends are known) inside a frame:
  // rejected whole. Cut at a frame end: exactly the frames before it.
  std::vector<size_t> ends;
  {
    std::vector<Got> one(1);
    size_t at = 0;
    for (const Got& g : got) {
      one[0] = g;
      at += encode(one).size();
      ends.push_back(at);
    }
    FUZZ_CHECK(at == again.size());
  }
  auto check_cut = [&](size_t n) {
    size_t whole = 0;
    while (whole < ends.size() && ends[whole] <= n) ++whole;
    std::vector<Got> part;
    const WireError e = frames(std::string_view(again).substr(0, n), &part);
    if (whole > 0 && ends[whole - 1] == n) {
      FUZZ_CHECK(e == WireError::kNone && part.size() == whole);
    } else {
      FUZZ_CHECK(e != WireError::kNone);
    }
  };
  if (again.size() <= 128) {
    for (size_t n = 0; n < again.size(); ++n) check_cut(n);
  } else {
    check_cut(again.size() - 1);
    check_cut(again.size() * pick / 256);
  }
}

void check_handshake(std::string_view body) {
  Initial in;
  if (parse_initial(body, &in) == WireError::kNone) {
    FUZZ_CHECK(in.src_id != 0);
    FUZZ_CHECK(in.cookie.empty() || in.cookie.size() == kCookieSize);
    FUZZ_CHECK(in.params.max_datagram >= 256 && in.params.max_datagram <= 65507);
    FUZZ_CHECK(in.params.max_ack_delay_ms < kMaxAckDelayLimitMs);
    FUZZ_CHECK(body.size() + kHeaderSize >= kInitialSize);
    std::string d;
    begin_datagram(d, PacketType::kInitial, 0);
    write_initial(d, in);
    FUZZ_CHECK(d.size() == kInitialSize);
    seal_datagram(d);
    Header h;
    FUZZ_CHECK(parse_header(d, &h) == WireError::kNone && h.type == PacketType::kInitial);
    Initial back;
    FUZZ_CHECK(parse_initial(std::string_view(d).substr(kHeaderSize), &back) == WireError::kNone);
    FUZZ_CHECK(back.src_id == in.src_id && back.cookie == in.cookie && back.params == in.params);
  }
  std::string cookie;
  if (parse_retry(body, &cookie) == WireError::kNone) {
    FUZZ_CHECK(cookie.size() == kCookieSize && cookie == body.substr(1, kCookieSize));
    std::string b;
    write_retry(b, cookie);
    std::string back;
    FUZZ_CHECK(parse_retry(b, &back) == WireError::kNone && back == cookie);
  }
  Accept a;
  if (parse_accept(body, &a) == WireError::kNone) {
    FUZZ_CHECK(a.src_id != 0);
    FUZZ_CHECK(a.params.max_ack_delay_ms < kMaxAckDelayLimitMs);
    std::string b;
    write_accept(b, a);
    FUZZ_CHECK(b.size() <= body.size());
    Accept back;
    FUZZ_CHECK(parse_accept(b, &back) == WireError::kNone);
    FUZZ_CHECK(back.src_id == a.src_id && back.params == a.params);
  }
}

void check_varints(std::string_view s) {
  Reader r(s);
  uint64_t v = 0;
  while (r.varint(&v)) {
    FUZZ_CHECK(v <= kVarintMax);
    std::string e;
    Writer(e).varint(v);
    FUZZ_CHECK(e.size() == varint_size(v));
    Reader back(e);
    uint64_t w = 0;
    FUZZ_CHECK(back.varint(&w) && w == v && back.done());
  }
  FUZZ_CHECK(r.left() < 8);  // stops only where no varint fits
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  const uint8_t type = size > 0 ? data[0] : 0;
  const std::string_view body = size > 0 ? raw.substr(1) : raw;

  // The whole input as a received datagram.
  Header h;
  const WireError he = parse_header(raw, &h);
  if (he == WireError::kNone) {
    FUZZ_CHECK(raw.size() >= kHeaderSize && h.version == kVersion);
    std::string copy(raw);
    seal_datagram(copy);
    FUZZ_CHECK(copy == raw);
    const std::string_view b = raw.substr(kHeaderSize);
    check_handshake(b);
    if (h.type == PacketType::kData && b.size() >= 8) check_frames(b.substr(8), type);
  } else if (raw.size() < kHeaderSize) {
    FUZZ_CHECK(he == WireError::kTooShort);
  }

  // The body sealed into a datagram of the chosen type.
  {
    std::string d;
    begin_datagram(d, static_cast<PacketType>(type), 0x5eed);
    d.append(body);
    seal_datagram(d);
    Header sh;
    const WireError e = parse_header(d, &sh);
    if (type >= 1 && type <= 4) {
      FUZZ_CHECK(e == WireError::kNone && static_cast<uint8_t>(sh.type) == type &&
                 sh.dst_id == 0x5eed);
    } else {
      FUZZ_CHECK(e == WireError::kBadType);
    }
    const size_t bit = (size * 131 + type) % (d.size() * 8);
    d[bit / 8] = static_cast<char>(d[bit / 8] ^ (1 << (bit % 8)));
    FUZZ_CHECK(parse_header(d, &sh) != WireError::kNone);
  }

  // The body as every kind of packet body.
  check_handshake(body);
  check_frames(body, type);
  if (body.size() >= 8) check_frames(body.substr(8), type);
  check_varints(body);
  return 0;
}
