// rudp's wire format (docs/RUDP.md, "Wire format", is the byte-by-byte
// reference; keep the two in step).
//
// Every datagram starts with a 12-byte header:
//   0  u8   version (kVersion)
//   1  u8   packet type (PacketType)
//   2  u16  reserved, zero
//   4  u32  checksum: CRC-32C (Castagnoli; rudp/crc32c.h) of the whole
//           datagram with these four bytes taken as zero. UDP's own checksum may be off
//           (zero over IPv4), and a corrupted datagram must never reach a
//           handler.
//   8  u32  destination connection id (0 in an INITIAL)
// Multi-byte fixed-width integers are big-endian; frame fields are QUIC
// variable-length integers (RFC 9000 §16), read and written here only.
//
// Decoding never trusts lengths: every read is bounds-checked and a
// malformed datagram is rejected whole (a typed WireError), never partly
// applied.
//
// Thread rules: pure functions and plain structs; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::rudp {

constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderSize = 12;
// INITIALs are padded to this size, so a server's answer to an unverified
// address (a RETRY) is never larger than what provoked it: no amplification.
constexpr size_t kInitialSize = 1200;
constexpr size_t kCookieSize = 20;  // 4-byte time stamp + 16-byte MAC

enum class PacketType : uint8_t {
  kInitial = 1,  // client -> server: its connection id, maybe a cookie
  kRetry = 2,    // server -> client: a cookie to echo (no state kept)
  kAccept = 3,   // server -> client: the server's connection id
  kData = 4,     // either way: packet number, then frames
};

enum class FrameType : uint8_t {
  kPing = 0x01,        // ack-eliciting, no body
  kAck = 0x02,         // largest, ack delay (us), range count, first range, ranges
  kStream = 0x03,      // offset, length, bytes of the reliable stream
  kStreamFin = 0x04,   // the same, and the stream ends after these bytes
  kMaxData = 0x05,     // flow control: the peer may send stream bytes below this offset
  kUnreliable = 0x06,  // sequence number, length, one whole unreliable message
  kClose = 0x07,       // both directions are finished: drain, then forget
  kReset = 0x08,       // error code: the connection is aborted
  kAckEcn = 0x09,      // ACK, then the ECT(0), ECT(1) and CE counts (QUIC's 0x03)
};

// RESET's error code.
enum class ResetCode : uint64_t {
  kAborted = 0,       // the endpoint went away (server stop past its deadline, client torn down)
  kProtocol = 1,      // the peer broke the protocol (flow control, a moved stream end ...)
  kCloseTimeout = 2,  // the peer never finished its side after ours was acknowledged
  kRefused = 3,       // the server would not take the connection (limit, stopping)
};

enum class WireError : uint8_t {
  kNone,
  kTooShort,
  kBadVersion,
  kBadChecksum,
  kBadType,
  kBadFrame,      // unknown frame type or a field past the end
  kBadAckRanges,  // ranges that go below packet number 0
};
const char* to_string(WireError e);

// RFC 9000 §18.2: a max_ack_delay of 2^14 ms or more is invalid. A
// received one is rejected: it sizes Durations (the PTO) in nanoseconds.
constexpr uint64_t kMaxAckDelayLimitMs = uint64_t{1} << 14;

// Transport parameters, carried by INITIAL and ACCEPT.
struct Params {
  uint64_t max_message = 1 << 20;     // largest reliable message it accepts
  uint64_t initial_window = 4 << 20;  // first MAX_DATA (stream bytes)
  uint64_t idle_timeout_ms = 30000;
  uint64_t max_ack_delay_ms = 25;     // below kMaxAckDelayLimitMs
  uint64_t max_datagram = 1400;       // largest datagram it will send or take
  bool operator==(const Params&) const = default;
};

struct Header {
  uint8_t version = kVersion;
  PacketType type = PacketType::kData;
  uint32_t dst_id = 0;
};

// QUIC variable-length integers (RFC 9000 §16): 1, 2, 4 or 8 bytes, the
// top two bits of the first byte giving the length. Up to 2^62 - 1.
constexpr uint64_t kVarintMax = (uint64_t{1} << 62) - 1;
size_t varint_size(uint64_t v);

// Appends to a byte string. Checked by the caller against the space left.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void varint(uint64_t v);
  void bytes(std::string_view b) { out_.append(b); }
  size_t size() const { return out_.size(); }

 private:
  std::string& out_;
};

// Reads from a byte view; every call fails (false) past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u8(uint8_t* v);
  bool u16(uint16_t* v);
  bool u32(uint32_t* v);
  bool u64(uint64_t* v);
  bool varint(uint64_t* v);
  bool bytes(size_t n, std::string_view* v);
  size_t left() const { return in_.size() - pos_; }
  bool done() const { return pos_ == in_.size(); }
  std::string_view rest() const { return in_.substr(pos_); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

// The header of a datagram; checks length, version and checksum.
WireError parse_header(std::string_view dgram, Header* h);
// Starts a datagram in `out` (cleared): the header with a zero checksum.
void begin_datagram(std::string& out, PacketType type, uint32_t dst_id);
// Fills in the checksum once the datagram is complete.
void seal_datagram(std::string& out);

// INITIAL / RETRY / ACCEPT bodies (after the header).
struct Initial {
  uint32_t src_id = 0;
  std::string cookie;  // empty, or kCookieSize bytes
  Params params;
};
void write_initial(std::string& out, const Initial& in);  // pads to kInitialSize
WireError parse_initial(std::string_view body, Initial* in);
void write_retry(std::string& out, std::string_view cookie);
WireError parse_retry(std::string_view body, std::string* cookie);
struct Accept {
  uint32_t src_id = 0;
  Params params;
};
void write_accept(std::string& out, const Accept& a);
WireError parse_accept(std::string_view body, Accept* a);

// ECN counts an ACK_ECN carries (RFC 9000 §19.3.2): packets received with
// each codepoint, in total, over the connection.
struct EcnCounts {
  uint64_t ect0 = 0;
  uint64_t ect1 = 0;
  uint64_t ce = 0;
  bool operator==(const EcnCounts&) const = default;
  bool any() const { return ect0 || ect1 || ce; }
};
// Whether `now` may follow `before`: no count goes backwards (a peer's
// counts only grow; a report that shrinks is invalid, RFC 9000 §13.4.2.1).
inline bool ecn_counts_advance(const EcnCounts& before, const EcnCounts& now) {
  return now.ect0 >= before.ect0 && now.ect1 >= before.ect1 && now.ce >= before.ce;
}

// One received frame, as views into the datagram.
struct AckRange {
  uint64_t low = 0;   // inclusive
  uint64_t high = 0;  // inclusive
};
struct Frame {
  FrameType type = FrameType::kPing;
  // kAck, kAckEcn: ranges from the highest down, disjoint, descending.
  std::vector<AckRange>* ack_ranges = nullptr;
  uint64_t ack_delay_us = 0;
  EcnCounts ecn;  // kAckEcn
  uint64_t offset = 0;  // kStream, kStreamFin; kMaxData: the limit;
                        // kUnreliable: the sequence; kReset: the code
  std::string_view data;
};

// Walks the frames of a DATA packet's payload (after the packet number).
// `ranges` is reused storage for ACK frames. Returns kNone and calls
// fn(frame) for each, or an error before calling fn for any: a packet is
// checked whole before anything in it is applied.
template <class Fn>
WireError for_each_frame(std::string_view payload, std::vector<AckRange>& ranges, Fn&& fn);

// Frame writers (append to a datagram being built).
// With ecn: an ACK_ECN frame carrying those counts.
size_t ack_frame_size(const std::vector<AckRange>& ranges, uint64_t delay_us,
                      const EcnCounts* ecn = nullptr);
void write_ack(std::string& out, const std::vector<AckRange>& ranges, uint64_t delay_us,
               const EcnCounts* ecn = nullptr);
// STREAM header size for a payload of `len` bytes at `offset`.
size_t stream_header_size(uint64_t offset, uint64_t len);
void write_stream(std::string& out, uint64_t offset, std::string_view data, bool fin);
void write_max_data(std::string& out, uint64_t limit);
void write_unreliable(std::string& out, uint64_t seq, std::string_view data);
void write_simple(std::string& out, FrameType type);  // PING, CLOSE
void write_reset(std::string& out, uint64_t code);

// Parses one frame at r; kNone or the error. (for_each_frame's step.)
WireError read_frame(Reader& r, std::vector<AckRange>& ranges, Frame* f);

template <class Fn>
WireError for_each_frame(std::string_view payload, std::vector<AckRange>& ranges, Fn&& fn) {
  // Pass 1 validates everything; pass 2 applies. Frames are small and few
  // per packet, so parsing twice is cheaper than buffering them.
  {
    Reader r(payload);
    Frame f;
    if (r.done()) return WireError::kBadFrame;  // a packet carries at least one frame
    while (!r.done()) {
      if (WireError e = read_frame(r, ranges, &f); e != WireError::kNone) return e;
    }
  }
  Reader r(payload);
  Frame f;
  while (!r.done()) {
    read_frame(r, ranges, &f);
    fn(f);
  }
  return WireError::kNone;
}

}  // namespace sluice::rudp
