// Shared helpers for the codec fuzz targets (tests/fuzz/*_fuzz.cc).
//
// Each target is a plain LLVMFuzzerTestOneInput. Built with clang and
// -fsanitize=fuzzer it is a libFuzzer binary (scripts/fuzz.sh); built with
// gcc and corpus_main.cc it is an ordinary regression test (bazel test
// //tests/fuzz/...). Nothing here depends on libFuzzer.
//
// The targets check properties of the decoder contract (codec/codec.h,
// docs/CODECS.md), not only "no crash":
//   * every decode() call: consumed <= input, a frame is a view into the
//     consumed prefix and no longer than the codec allows, kNeedMore
//     consumes nothing (except the length codec's discarding mode), and
//     after kNeedMore the bytes still held stay under the codec's bound
//     (so nothing is buffered beyond max_frame before an error);
//   * the stream split anywhere (one fuzzer-chosen cut, byte by byte for
//     small inputs, random chunkings) decodes exactly like the whole stream;
//   * the whole stream decodes like a naive reference model of the spec;
//   * encode -> decode gives the payloads back (payloads the encoder
//     refuses are skipped, and a refusal appends nothing).
// A violation prints what failed and traps (__builtin_trap), which
// libFuzzer reports as a crash and the regression test as a failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "codec/codec.h"
#include "base/buffer.h"

namespace sluice::fuzz {

[[noreturn]] inline void property_failed(const char* what, const char* file,
                                         int line) {
  std::fprintf(stderr, "\n*** codec property violated: %s (%s:%d)\n", what,
               file, line);
  std::fflush(stderr);
  __builtin_trap();
}

#define FUZZ_CHECK(cond)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      ::sluice::fuzz::property_failed(#cond, __FILE__, __LINE__); \
    }                                                             \
  } while (0)

// Builds a C from args, checking the constructor's validation: it must throw
// CodecConfigError exactly when `valid` (what the options should be) is
// false. Null when it threw.
template <class C, class... Args>
std::unique_ptr<C> construct_checked(bool valid, Args&&... args) {
  std::unique_ptr<C> made;
  try {
    made = std::make_unique<C>(std::forward<Args>(args)...);
  } catch (const codec::CodecConfigError&) {
    FUZZ_CHECK(!valid);
    return nullptr;
  }
  FUZZ_CHECK(valid);
  return made;
}

// Takes fuzzer bytes from the front; returns zeros once they run out.
class Input {
 public:
  Input(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}

  size_t remaining() const { return size_ - pos_; }

  uint8_t u8() {
    return pos_ < size_ ? static_cast<uint8_t>(data_[pos_++]) : uint8_t{0};
  }
  uint16_t u16() {
    const uint16_t hi = u8();
    return static_cast<uint16_t>((hi << 8) | u8());
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | u8();
    return v;
  }
  bool flag() { return (u8() & 1) != 0; }

  // Up to n bytes (fewer at the end of the input).
  std::string_view bytes(size_t n) {
    if (n > remaining()) n = remaining();
    std::string_view s(data_ + pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view rest() { return bytes(remaining()); }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Small deterministic generator (xorshift64*), for chunkings.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform-ish in [0, n); n > 0.
  uint64_t below(uint64_t n) { return next() % n; }

 private:
  uint64_t s_;
};

// A decoder output: a frame (errc == kNone) or an error.
struct Event {
  codec::CodecErrc errc = codec::CodecErrc::kNone;
  std::string frame;
  uint64_t error_length = 0;
};

struct Run {
  std::vector<Event> events;
  bool stopped = false;  // a terminal error ended decoding
  std::string leftover;  // bytes still held at the end (when not stopped)
};

// What the per-call checks allow for one codec configuration.
struct Rules {
  // After kNeedMore, the bytes the caller still holds must be <= this.
  size_t max_held = 0;
  // Every frame is at most this long.
  size_t max_frame_out = 0;
  // kNeedMore may consume bytes (length codec, fail_fast == false).
  bool may_discard = false;
  // An error that consumed bytes is not terminal (discarding mode).
  bool recover = false;
  // Compare error_length between chunkings / with the model. The delimiter
  // codecs report "as far as known", which depends on what had arrived.
  bool exact_error_length = true;
};

inline bool same_events(const std::vector<Event>& a,
                        const std::vector<Event>& b, bool exact_len) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].errc != b[i].errc || a[i].frame != b[i].frame) return false;
    if (exact_len && a[i].errc != codec::CodecErrc::kNone &&
        a[i].error_length != b[i].error_length) {
      return false;
    }
  }
  return true;
}

inline bool same_run(const Run& a, const Run& b, bool exact_len) {
  return same_events(a.events, b.events, exact_len) &&
         a.stopped == b.stopped && (a.stopped || a.leftover == b.leftover);
}

// Plays the connection: appends each chunk (stream cut at `cuts`, which
// must be ascending) and decodes until the decoder needs more, like
// drain_frames(). Every decode() call sees an exactly sized heap copy of
// the held bytes, so ASan catches any read past the end of the input.
inline Run decode_chunks(codec::Decoder& dec, std::string_view stream,
                         const std::vector<size_t>& cuts, const Rules& rules) {
  Run run;
  std::string held;
  size_t from = 0;
  for (size_t i = 0; i <= cuts.size(); ++i) {
    const size_t to = i < cuts.size() ? cuts[i] : stream.size();
    FUZZ_CHECK(from <= to && to <= stream.size());
    held.append(stream.substr(from, to - from));
    from = to;
    for (;;) {
      const size_t n = held.size();
      std::unique_ptr<char[]> copy(new char[n]);
      if (n) std::memcpy(copy.get(), held.data(), n);
      const std::string_view in(copy.get(), n);
      const codec::DecodeResult r = dec.decode(in);
      FUZZ_CHECK(r.consumed <= n);
      if (r.status == codec::DecodeStatus::kFrame) {
        FUZZ_CHECK(r.consumed > 0);
        FUZZ_CHECK(r.error == codec::CodecErrc::kNone);
        // The frame is a view into the bytes it consumed.
        FUZZ_CHECK(r.frame.empty() || (r.frame.data() >= in.data() &&
                                       r.frame.data() + r.frame.size() <=
                                           in.data() + r.consumed));
        FUZZ_CHECK(r.frame.size() <= rules.max_frame_out);
        run.events.push_back({codec::CodecErrc::kNone, std::string(r.frame),
                              0});
        held.erase(0, r.consumed);
        continue;
      }
      if (r.status == codec::DecodeStatus::kError) {
        FUZZ_CHECK(r.error != codec::CodecErrc::kNone);
        FUZZ_CHECK(r.frame.empty());
        run.events.push_back({r.error, std::string(), r.error_length});
        held.erase(0, r.consumed);
        if (r.consumed == 0 || !rules.recover) {
          run.stopped = true;
          return run;
        }
        continue;
      }
      FUZZ_CHECK(r.status == codec::DecodeStatus::kNeedMore);
      FUZZ_CHECK(r.error == codec::CodecErrc::kNone);
      FUZZ_CHECK(r.frame.empty());
      // An incomplete frame consumes nothing (but a discarding decoder).
      FUZZ_CHECK(r.consumed == 0 || rules.may_discard);
      held.erase(0, r.consumed);
      // Nothing is buffered beyond the bound: the decoder must have
      // reported an error before the caller held more than this.
      FUZZ_CHECK(held.size() <= rules.max_held);
      if (r.consumed == 0 || held.empty()) break;
    }
  }
  run.leftover = held;
  return run;
}

inline Run decode_with(const codec::Codec& c, std::string_view stream,
                       const std::vector<size_t>& cuts, const Rules& rules) {
  std::unique_ptr<codec::Decoder> dec = c.new_decoder();
  FUZZ_CHECK(dec != nullptr);
  return decode_chunks(*dec, stream, cuts, rules);
}

// Split-point property: the stream decodes the same whole, cut once at a
// fuzzer-chosen point, byte by byte (small streams) and in random chunks.
// Returns the whole-stream run.
inline Run check_split_invariance(const codec::Codec& c,
                                  std::string_view stream, uint16_t cut,
                                  uint64_t seed, const Rules& rules) {
  const Run whole = decode_with(c, stream, {}, rules);
  const size_t n = stream.size();

  const size_t k = n ? cut % (n + 1) : 0;
  const Run two = decode_with(c, stream, {k}, rules);
  FUZZ_CHECK(same_run(whole, two, rules.exact_error_length));

  if (n <= 256) {
    std::vector<size_t> every;
    for (size_t i = 1; i < n; ++i) every.push_back(i);
    const Run bytes = decode_with(c, stream, every, rules);
    FUZZ_CHECK(same_run(whole, bytes, rules.exact_error_length));
  }

  Rng rng(seed);
  std::vector<size_t> cuts;
  // Mostly small reads with an occasional big one.
  for (size_t at = 0;;) {
    at += 1 + (rng.below(8) == 0 ? rng.below(n + 1) : rng.below(16));
    if (at >= n) break;
    cuts.push_back(at);
  }
  const Run chunks = decode_with(c, stream, cuts, rules);
  FUZZ_CHECK(same_run(whole, chunks, rules.exact_error_length));
  return whole;
}

// Payloads cut from fuzzer bytes: each is [len][bytes], len one byte, or
// 0xFF followed by a 2-byte length for longer ones.
inline std::vector<std::string> take_payloads(Input& in, size_t max_count) {
  std::vector<std::string> out;
  while (in.remaining() > 0 && out.size() < max_count) {
    size_t len = in.u8();
    if (len == 0xFF) len = in.u16();
    out.emplace_back(in.bytes(len));
  }
  return out;
}

// Round-trip property: encode every payload (a refusal must append nothing;
// `must_accept` says whether the codec is obliged to take it, or -1 when
// unknown), decode the concatenation in chunks, and get `expected(payload,
// encoded bytes)` back for each accepted payload, with nothing left over.
template <typename MustAccept, typename Expected>
void check_round_trip(const codec::Codec& c,
                      const std::vector<std::string>& payloads, uint16_t cut,
                      uint64_t seed, const Rules& rules,
                      MustAccept&& must_accept, Expected&& expected) {
  Buffer wire;
  std::vector<Event> want;
  for (const std::string& p : payloads) {
    const size_t before = wire.readable();
    const bool ok = c.encode(p, wire);
    const int must = must_accept(p);
    if (must >= 0) FUZZ_CHECK(ok == (must == 1));
    if (!ok) {
      FUZZ_CHECK(wire.readable() == before);
      continue;
    }
    FUZZ_CHECK(wire.readable() > before);
    const std::string encoded(wire.view().substr(before));
    want.push_back({codec::CodecErrc::kNone, expected(p, encoded), 0});
  }
  const std::string stream(wire.view());
  const size_t n = stream.size();
  const size_t k = n ? cut % (n + 1) : 0;
  const Run two = decode_with(c, stream, {k}, rules);
  FUZZ_CHECK(!two.stopped);
  FUZZ_CHECK(same_events(two.events, want, true));
  FUZZ_CHECK(two.leftover.empty());

  Rng rng(seed ^ 0xA5A5A5A5u);
  std::vector<size_t> cuts;
  for (size_t at = 0;;) {
    at += 1 + rng.below(32);
    if (at >= n) break;
    cuts.push_back(at);
  }
  const Run chunks = decode_with(c, stream, cuts, rules);
  FUZZ_CHECK(!chunks.stopped);
  FUZZ_CHECK(same_events(chunks.events, want, true));
  FUZZ_CHECK(chunks.leftover.empty());
}

}  // namespace sluice::fuzz
