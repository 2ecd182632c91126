#include "codec/delimiter.h"

#include <array>
#include <cstring>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sluice::codec {

struct DelimiterSpec {
  std::vector<std::string> delimiters;
  bool strip = true;
  size_t max_frame = 0;
  // When every delimiter starts with the same byte, candidates are found
  // with memchr; otherwise with a first-byte table.
  int common_first = -1;
  std::array<bool, 256> is_first{};
  // The distinct first bytes, for a vector scan when there are few of them
  // (unused slots repeat firsts[0]; count > kMaxVectorFirsts: table scan).
  std::array<char, 4> firsts{};
  size_t first_count = 0;
  // One single-byte delimiter: a memchr hit is the match.
  bool single_byte = false;
};

namespace {

unsigned char byte_at(std::string_view s, size_t i) {
  return static_cast<unsigned char>(s[i]);
}

// Highest position to scan (exclusive) for a frame-ending match. A match at
// position p means p bytes of content, so positions past max_frame can only
// end an oversize frame; written so max_frame + 1 cannot overflow.
size_t scan_limit(size_t n, size_t max_frame, size_t slack) {
  return max_frame >= n || n - max_frame <= slack ? n : max_frame + slack;
}

std::shared_ptr<const DelimiterSpec> build_spec(DelimiterOptions o) {
  if (o.delimiters.empty()) {
    throw CodecConfigError("delimiter codec: at least one delimiter needed");
  }
  if (o.max_frame == 0) {
    throw CodecConfigError("delimiter codec: max_frame must be >= 1");
  }
  for (const std::string& d : o.delimiters) {
    if (d.empty() || d.size() > kMaxDelimiterLength) {
      throw CodecConfigError("delimiter codec: each delimiter must be 1.." +
                             std::to_string(kMaxDelimiterLength) +
                             " bytes (got " + std::to_string(d.size()) + ")");
    }
  }
  const std::string& first = o.delimiters.front();
  for (const std::string& d : o.delimiters) {
    if (d.size() > first.size() && d.starts_with(first)) {
      throw CodecConfigError(
          "delimiter codec: the first delimiter (written by the encoder) "
          "must not be a proper prefix of another delimiter; list the "
          "longer one first");
    }
  }
  auto spec = std::make_shared<DelimiterSpec>();
  spec->strip = o.strip_delimiter;
  spec->max_frame = o.max_frame;
  spec->common_first = byte_at(first, 0);
  for (const std::string& d : o.delimiters) {
    spec->is_first[byte_at(d, 0)] = true;
    if (byte_at(d, 0) != spec->common_first) spec->common_first = -1;
  }
  for (int b = 0; b < 256; ++b) {
    if (!spec->is_first[static_cast<size_t>(b)]) continue;
    if (spec->first_count < spec->firsts.size()) {
      spec->firsts[spec->first_count] = static_cast<char>(b);
    }
    ++spec->first_count;
  }
  for (size_t i = spec->first_count; i < spec->firsts.size(); ++i) {
    spec->firsts[i] = spec->firsts[0];
  }
  spec->single_byte = o.delimiters.size() == 1 && first.size() == 1;
  spec->delimiters = std::move(o.delimiters);
  return spec;
}

// Next position in [p, limit) whose byte starts some delimiter, or limit.
// One first byte: memchr. Up to four: 16 bytes per step compared against
// each (SSE2, part of every x86-64), so a mixed set such as {"\r\n", ";"}
// is not left to a byte-at-a-time loop. Otherwise, and for the tail: a
// table lookup per byte.
size_t next_candidate(const DelimiterSpec& s, std::string_view in, size_t p,
                      size_t limit) {
  if (s.common_first >= 0) {
    const void* hit = std::memchr(in.data() + p, s.common_first, limit - p);
    return hit ? static_cast<size_t>(static_cast<const char*>(hit) - in.data())
               : limit;
  }
#if defined(__SSE2__)
  if (s.first_count <= s.firsts.size()) {
    const __m128i f0 = _mm_set1_epi8(s.firsts[0]);
    const __m128i f1 = _mm_set1_epi8(s.firsts[1]);
    const __m128i f2 = _mm_set1_epi8(s.firsts[2]);
    const __m128i f3 = _mm_set1_epi8(s.firsts[3]);
    for (; p + 16 <= limit; p += 16) {
      const __m128i v =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(in.data() + p));
      const __m128i eq =
          _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, f0), _mm_cmpeq_epi8(v, f1)),
                       _mm_or_si128(_mm_cmpeq_epi8(v, f2), _mm_cmpeq_epi8(v, f3)));
      if (const int mask = _mm_movemask_epi8(eq)) {
        return p + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
      }
    }
  }
#endif
  while (p < limit && !s.is_first[byte_at(in, p)]) ++p;
  return p;
}

struct MatchAt {
  size_t len = 0;          // longest delimiter matching fully at p (0: none)
  bool undecided = false;  // a longer delimiter's prefix reaches the end
};

// Which delimiters match at p. Only a delimiter longer than what remains
// can be undecided, and it would beat any full match at p, so the caller
// must wait whenever undecided is set.
MatchAt match_at(const DelimiterSpec& s, std::string_view in, size_t p) {
  MatchAt m;
  if (s.single_byte) {
    m.len = 1;  // p came from memchr on that byte
    return m;
  }
  const char* at = in.data() + p;
  const size_t left = in.size() - p;
  for (const std::string& d : s.delimiters) {
    if (d.size() <= left) {
      if (d.size() > m.len && std::memcmp(at, d.data(), d.size()) == 0) {
        m.len = d.size();
      }
    } else if (std::memcmp(at, d.data(), left) == 0) {
      m.undecided = true;
    }
  }
  return m;
}

}  // namespace

// ---------------------------------------------------------------- Delimiter

DelimiterDecoder::DelimiterDecoder(std::shared_ptr<const DelimiterSpec> spec)
    : spec_(std::move(spec)),
      single_(spec_->single_byte ? spec_->common_first : -1),
      strip_(spec_->strip),
      max_frame_(spec_->max_frame) {}

DecodeResult DelimiterDecoder::decode(std::string_view in) {
  const size_t n = in.size();
  if (scanned_ > n) scanned_ = 0;  // input was not the grown previous input
  const size_t start = scanned_;
  const size_t limit = scan_limit(n, max_frame_, 1);
  if (single_ >= 0) return decode_single(in, start, limit);
  const DelimiterSpec& s = *spec_;
  for (size_t p = start; p < limit; ++p) {
    p = next_candidate(s, in, p, limit);
    if (p == limit) break;
    const MatchAt m = match_at(s, in, p);
    if (m.undecided) {
      examined_ += p + 1 - start;
      scanned_ = p;  // resume here: the partial delimiter may complete
      return DecodeResult::need_more();
    }
    if (m.len > 0) {
      examined_ += p + 1 - start;
      scanned_ = 0;  // the next input starts at the next frame
      return DecodeResult::ok(p + m.len, in.substr(0, s.strip ? p : p + m.len));
    }
  }
  examined_ += limit - start;
  scanned_ = limit;
  // No delimiter starts in [0, max_frame]: the content is already longer
  // than max_frame, so fail now rather than buffer more of it.
  if (limit > s.max_frame) {
    return DecodeResult::fail(CodecErrc::kFrameTooLong, 0, limit);
  }
  return DecodeResult::need_more();
}

// One single-byte delimiter (the common case): a memchr hit is the frame's
// end, so skip the candidate/match machinery of the general loop.
DecodeResult DelimiterDecoder::decode_single(std::string_view in, size_t start,
                                             size_t limit) {
  // (memchr must not see a null pointer, even for zero bytes.)
  const void* hit =
      start < limit ? std::memchr(in.data() + start, single_, limit - start) : nullptr;
  if (hit) {
    const size_t p = static_cast<size_t>(static_cast<const char*>(hit) - in.data());
    examined_ += p + 1 - start;
    scanned_ = 0;
    return DecodeResult::ok(p + 1, in.substr(0, strip_ ? p : p + 1));
  }
  examined_ += limit - start;
  scanned_ = limit;
  if (limit > max_frame_) {
    return DecodeResult::fail(CodecErrc::kFrameTooLong, 0, limit);
  }
  return DecodeResult::need_more();
}

DelimiterCodec::DelimiterCodec(DelimiterOptions opts)
    : spec_(build_spec(std::move(opts))) {}

DelimiterCodec::~DelimiterCodec() = default;

size_t DelimiterCodec::max_frame() const { return spec_->max_frame; }

std::unique_ptr<Decoder> DelimiterCodec::new_decoder() const {
  return std::make_unique<DelimiterDecoder>(spec_);
}

bool DelimiterCodec::encode(std::string_view payload, Buffer& out) const {
  const DelimiterSpec& s = *spec_;
  if (payload.size() > s.max_frame) return false;
  const std::string_view first = s.delimiters.front();
  for (const std::string& d : s.delimiters) {
    if (payload.find(d) != std::string_view::npos) return false;
    // A match starting m bytes before the end of the payload: d begins with
    // the payload's last m bytes and its rest agrees with the appended
    // delimiter (or extends past it, depending on the next frame).
    for (size_t m = 1; m < d.size() && m <= payload.size(); ++m) {
      const std::string_view dv = d;
      if (!dv.starts_with(payload.substr(payload.size() - m))) continue;
      const std::string_view rest = dv.substr(m);
      if (first.starts_with(rest) || rest.starts_with(first)) return false;
    }
  }
  out.ensure_writable(payload.size() + first.size());
  out.append(payload);
  out.append(first);
  return true;
}

// --------------------------------------------------------------------- Line

DecodeResult LineDecoder::decode(std::string_view in) {
  const size_t n = in.size();
  if (scanned_ > n) scanned_ = 0;
  const size_t start = scanned_;
  // A '\n' at q ends max_frame + 1 content bytes at most when preceded by
  // '\r', so positions up to max_frame + 1 can end a legal line.
  const size_t limit = scan_limit(n, max_frame_, 2);
  // (memchr must not see a null pointer, even for zero bytes.)
  const void* hit = start < limit
                        ? std::memchr(in.data() + start, '\n', limit - start)
                        : nullptr;
  if (hit) {
    const size_t q =
        static_cast<size_t>(static_cast<const char*>(hit) - in.data());
    examined_ += q + 1 - start;
    scanned_ = 0;
    const size_t len = (q > 0 && in[q - 1] == '\r') ? q - 1 : q;
    if (len > max_frame_) {
      return DecodeResult::fail(CodecErrc::kFrameTooLong, 0, len);
    }
    return DecodeResult::ok(q + 1, in.substr(0, len));
  }
  examined_ += limit - start;
  scanned_ = limit;
  // No '\n' before limit: the content is at least limit bytes, minus a
  // trailing '\r' that may yet pair with a '\n'.
  const size_t known = (limit > 0 && in[limit - 1] == '\r') ? limit - 1 : limit;
  if (known > max_frame_) {
    return DecodeResult::fail(CodecErrc::kFrameTooLong, 0, known);
  }
  return DecodeResult::need_more();
}

LineCodec::LineCodec(LineOptions opts) : opts_(opts) {
  if (opts_.max_frame == 0) {
    throw CodecConfigError("line codec: max_frame must be >= 1");
  }
}

std::unique_ptr<Decoder> LineCodec::new_decoder() const {
  return std::make_unique<LineDecoder>(opts_.max_frame);
}

bool LineCodec::encode(std::string_view payload, Buffer& out) const {
  if (payload.size() > opts_.max_frame) return false;
  if (payload.find('\n') != std::string_view::npos) return false;
  if (!opts_.crlf && payload.ends_with('\r')) return false;
  const std::string_view eol = opts_.crlf ? "\r\n" : "\n";
  out.ensure_writable(payload.size() + eol.size());
  out.append(payload);
  out.append(eol);
  return true;
}

}  // namespace sluice::codec
