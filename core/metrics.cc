#include "core/metrics.h"

#include <charconv>
#include <cmath>

namespace sluice::metrics {

size_t latency_bucket(uint64_t ns) {
  size_t i = 0;
  while (i < std::size(kLatencyBoundsNs) && ns > kLatencyBoundsNs[i]) ++i;
  return i;
}

void LatencyCounts::add(const LatencyCounts& o) {
  for (size_t i = 0; i < kLatencyBuckets; ++i) buckets[i] += o.buckets[i];
  sum_ns += o.sum_ns;
}

LatencyCounts LocalHistogram::read() const {
  LatencyCounts c;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    c.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  c.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return c;
}

LatencyCounts SharedHistogram::read() const {
  LatencyCounts c;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    c.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  c.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return c;
}

namespace {

bool name_char(char c, bool first, bool colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool valid(std::string_view name, bool colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!name_char(name[i], i == 0, colon)) return false;
  }
  return true;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const char* type_name(Type t) {
  switch (t) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

bool TextWriter::valid_name(std::string_view name) { return valid(name, true); }

std::string TextWriter::escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string TextWriter::format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Whole numbers up to 2^53 are exact in a double: write them as integers
  // (counters are), not in exponent form.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
    return std::string(buf, r.ptr);
  }
  // Shortest round-trip; fixed notation where it stays short ("0.0001",
  // not "1e-04": bucket bounds are read by people too).
  const double a = std::fabs(v);
  const auto fmt = a >= 1e-6 && a < 1e15 ? std::chars_format::fixed : std::chars_format::general;
  auto r = std::to_chars(buf, buf + sizeof buf, v, fmt);
  return std::string(buf, r.ptr);
}

void TextWriter::family(std::string_view name, Type type, std::string_view help) {
  name_.clear();
  if (!valid_name(name)) {
    error_ += "invalid metric name '" + std::string(name) + "' (skipped); ";
    return;
  }
  name_ = name;
  type_ = type;
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escape_help(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type_name(type);
  out_ += '\n';
}

void TextWriter::sample(std::string_view suffix, const Labels& labels, const char* extra_name,
                        std::string_view extra_value, double v) {
  out_ += name_;
  out_ += suffix;
  if (!labels.empty() || extra_name != nullptr) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, val] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      out_ += escape_label(val);
      out_ += '"';
    }
    if (extra_name != nullptr) {
      if (!first) out_ += ',';
      out_ += extra_name;
      out_ += "=\"";
      out_ += extra_value;
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += format_value(v);
  out_ += '\n';
}

void TextWriter::value(const Labels& labels, double v) {
  if (name_.empty()) return;  // no family, or a skipped one
  if (type_ == Type::kHistogram) {
    error_ += name_ + ": a plain value in a histogram family (skipped); ";
    return;
  }
  for (const auto& [k, val] : labels) {
    if (!valid(k, false) || k.starts_with("__")) {
      error_ += name_ + ": invalid label name '" + k + "' (skipped); ";
      return;
    }
  }
  sample("", labels, nullptr, {}, v);
}

void TextWriter::latency(const Labels& labels, const LatencyCounts& counts) {
  double bounds[std::size(kLatencyBoundsNs)];
  for (size_t i = 0; i < std::size(kLatencyBoundsNs); ++i) {
    bounds[i] = static_cast<double>(kLatencyBoundsNs[i]) / 1e9;
  }
  histogram(labels, bounds, counts.buckets, static_cast<double>(counts.sum_ns) / 1e9);
}

void TextWriter::histogram(const Labels& labels, std::span<const double> bounds,
                           std::span<const uint64_t> counts, double sum) {
  if (name_.empty()) return;
  if (type_ != Type::kHistogram || counts.size() != bounds.size() + 1) {
    error_ += name_ + ": histogram sample does not fit its family (skipped); ";
    return;
  }
  for (const auto& [k, val] : labels) {
    if (!valid(k, false) || k.starts_with("__") || k == "le") {
      error_ += name_ + ": invalid label name '" + k + "' (skipped); ";
      return;
    }
  }
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    const std::string le = i < bounds.size() ? format_value(bounds[i]) : "+Inf";
    sample("_bucket", labels, "le", le, static_cast<double>(cumulative));
  }
  sample("_sum", labels, nullptr, {}, sum);
  sample("_count", labels, nullptr, {}, static_cast<double>(cumulative));
}

}  // namespace sluice::metrics
