// A strict reader of the Prometheus text format (0.0.4) for tests: every
// sample line must parse (metric name, optional {label="value",...} with
// \\ \" \n escapes, a value), every # TYPE must come before its family's
// samples and name a known type. Test code only.
#pragma once

#include <map>
#include <string>

namespace sluice::testing {

struct Exposition {
  // "name{a=\"x\",b=\"y\"}" (labels as written, unescaped) -> value.
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // family -> counter|gauge|histogram
  std::map<std::string, std::string> help;   // family -> text (unescaped)
};

// False, with *error naming the line, on anything malformed.
bool parse_exposition(const std::string& text, Exposition* out, std::string* error);

}  // namespace sluice::testing
