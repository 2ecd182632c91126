// Codec throughput: decode and encode of 64-byte payloads for each codec,
// plus a memchr baseline over the delimiter stream (the floor for any
// delimiter scanner). The scanning decoders (delimiter, line) and the
// baseline also run at 256 B to 4 KiB frames, where the scan rather than
// the per-frame call dominates. Items are frames; bytes are wire bytes.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "codec/codec.h"
#include "codec/delimiter.h"
#include "codec/fixed_length.h"
#include "codec/length_field.h"
#include "base/buffer.h"

namespace sluice::codec {
namespace {

constexpr size_t kPayload = 64;
constexpr int kFrames = 1024;

std::string payload(size_t size = kPayload) {
  std::string s(size, 'x');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

std::unique_ptr<Codec> make(int which) {
  switch (which) {
    case 0:
      return std::make_unique<LengthFieldCodec>(length_prefix_options());
    case 1:
      return std::make_unique<FixedLengthCodec>(kPayload);
    case 2:
      return std::make_unique<DelimiterCodec>(DelimiterOptions{});
    case 3: {
      DelimiterOptions o;
      o.delimiters = {"\r\n"};
      return std::make_unique<DelimiterCodec>(o);
    }
    case 4: {
      DelimiterOptions o;
      o.delimiters = {"\r\n", ";"};
      return std::make_unique<DelimiterCodec>(o);
    }
    default:
      return std::make_unique<LineCodec>();
  }
}

const char* const kNames[] = {"length4",    "fixed64",     "delim_lf",
                              "delim_crlf", "delim_multi", "line"};

std::string stream_for(const Codec& codec, size_t size = kPayload) {
  Buffer buf;
  const std::string p = payload(size);
  for (int i = 0; i < kFrames; ++i) {
    if (!codec.encode(p, buf)) std::abort();
  }
  return std::string(buf.view());
}

void BM_Decode(benchmark::State& state) {
  const auto codec = make(static_cast<int>(state.range(0)));
  const auto size = static_cast<size_t>(state.range(1));
  state.SetLabel(kNames[state.range(0)]);
  const std::string stream = stream_for(*codec, size);
  auto dec = codec->new_decoder();
  for (auto _ : state) {
    std::string_view in = stream;
    while (!in.empty()) {
      const DecodeResult r = dec->decode(in);
      if (r.status != DecodeStatus::kFrame) std::abort();
      benchmark::DoNotOptimize(r.frame.data());
      in.remove_prefix(r.consumed);
    }
  }
  state.SetItemsProcessed(state.iterations() * kFrames);
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(stream.size()));
}
BENCHMARK(BM_Decode)
    ->ArgsProduct({benchmark::CreateDenseRange(0, 5, 1), {int64_t{kPayload}}})
    ->ArgsProduct({{2, 4, 5}, {256, 1024, 4096}})
    ->ArgNames({"codec", "size"});

void BM_Encode(benchmark::State& state) {
  const auto codec = make(static_cast<int>(state.range(0)));
  state.SetLabel(kNames[state.range(0)]);
  const std::string p = payload();
  Buffer out(kFrames * (kPayload + 8));
  size_t bytes = 0;
  for (auto _ : state) {
    out.retrieve_all();
    for (int i = 0; i < kFrames; ++i) codec->encode(p, out);
    bytes = out.readable();
    benchmark::DoNotOptimize(out.peek());
  }
  state.SetItemsProcessed(state.iterations() * kFrames);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_Encode)->DenseRange(0, 5);

// Splitting the "\n" stream with bare memchr: what delim_lf is measured
// against.
void BM_MemchrBaseline(benchmark::State& state) {
  const std::string stream =
      stream_for(*make(2), static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    const char* p = stream.data();
    const char* end = p + stream.size();
    while (p < end) {
      const void* hit = std::memchr(p, '\n', static_cast<size_t>(end - p));
      if (!hit) std::abort();
      benchmark::DoNotOptimize(p);
      p = static_cast<const char*>(hit) + 1;
    }
  }
  state.SetItemsProcessed(state.iterations() * kFrames);
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(stream.size()));
}
BENCHMARK(BM_MemchrBaseline)->Arg(int64_t{kPayload})->Arg(256)->Arg(1024)->Arg(4096)->ArgName("size");

}  // namespace
}  // namespace sluice::codec
