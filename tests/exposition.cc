#include "tests/exposition.h"

#include <cstdlib>
#include <sstream>

namespace sluice::testing {

namespace {

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

bool parse_value(const std::string& s, double* v) {
  if (s == "+Inf") {
    *v = 1e308 * 10;
    return true;
  }
  if (s == "-Inf") {
    *v = -1e308 * 10;
    return true;
  }
  if (s == "NaN") {
    *v = 0.0 / 0.0;
    return true;
  }
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// The family a sample belongs to: histogram suffixes stripped when the
// stripped name was declared a histogram.
std::string family_of(const std::string& name, const Exposition& e) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string sfx = suffix;
    if (name.size() > sfx.size() && name.ends_with(sfx)) {
      const std::string base = name.substr(0, name.size() - sfx.size());
      auto it = e.types.find(base);
      if (it != e.types.end() && it->second == "histogram") return base;
    }
  }
  return name;
}

}  // namespace

bool parse_exposition(const std::string& text, Exposition* out, std::string* error) {
  std::istringstream in(text);
  std::string line;
  size_t n = 0;
  auto fail = [&](const std::string& why) {
    *error = "line " + std::to_string(n) + ": " + why + ": " + line;
    return false;
  };
  if (!text.empty() && text.back() != '\n') {
    *error = "no final newline";
    return false;
  }
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream words(line);
      std::string hash, kind, name;
      words >> hash >> kind >> name;
      if (kind == "TYPE") {
        std::string type;
        words >> type;
        if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
            type != "untyped") {
          return fail("unknown type");
        }
        if (out->types.count(name)) return fail("second TYPE");
        out->types[name] = type;
      } else if (kind == "HELP") {
        const size_t at = line.find(name) + name.size();
        std::string raw = at < line.size() ? line.substr(at + 1) : "";
        std::string h;
        for (size_t i = 0; i < raw.size(); ++i) {
          if (raw[i] == '\\' && i + 1 < raw.size()) {
            h += raw[i + 1] == 'n' ? '\n' : raw[i + 1];
            ++i;
          } else {
            h += raw[i];
          }
        }
        out->help[name] = h;
      }
      continue;
    }
    size_t i = 0;
    while (i < line.size() && name_char(line[i], i == 0)) ++i;
    if (i == 0) return fail("no metric name");
    const std::string name = line.substr(0, i);
    std::string key = name;
    if (i < line.size() && line[i] == '{') {
      key += '{';
      ++i;
      bool first = true;
      while (i < line.size() && line[i] != '}') {
        if (!first) {
          if (line[i] != ',') return fail("expected ,");
          ++i;
          key += ',';
        }
        first = false;
        const size_t start = i;
        while (i < line.size() && name_char(line[i], i == start) && line[i] != ':') ++i;
        if (i == start) return fail("no label name");
        key += line.substr(start, i - start);
        if (i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') return fail("expected =\"");
        i += 2;
        key += "=\"";
        for (;; ++i) {
          if (i >= line.size()) return fail("unterminated label value");
          if (line[i] == '"') break;
          if (line[i] == '\\') {
            if (i + 1 >= line.size()) return fail("bad escape");
            const char c = line[++i];
            if (c == 'n') {
              key += '\n';
            } else if (c == '\\' || c == '"') {
              key += c;
            } else {
              return fail("bad escape");
            }
          } else {
            key += line[i];
          }
        }
        ++i;  // the closing quote
        key += '"';
      }
      if (i >= line.size()) return fail("unterminated labels");
      ++i;  // '}'
      key += '}';
    }
    if (i >= line.size() || line[i] != ' ') return fail("expected a space before the value");
    const std::string rest = line.substr(i + 1);
    const std::string value = rest.substr(0, rest.find(' '));  // an optional timestamp follows
    double v;
    if (!parse_value(value, &v)) return fail("bad value");
    const std::string family = family_of(name, *out);
    if (!out->types.count(family)) return fail("sample before its TYPE");
    if (out->samples.count(key)) return fail("duplicate sample");
    out->samples[key] = v;
  }
  return true;
}

}  // namespace sluice::testing
