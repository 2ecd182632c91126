#include "rudp/cc/registry.h"

#include "rudp/cc/fixed.h"

namespace sluice::rudp::cc {

namespace {

struct Entry {
  const char* name;
  std::unique_ptr<Controller> (*make)(const Config&);
};

const Entry kEntries[] = {
    {"fixed", [](const Config& c) -> std::unique_ptr<Controller> {
       return std::make_unique<Fixed>(c);
     }},
};

std::vector<std::pair<std::string, Factory>>& extra() {
  static std::vector<std::pair<std::string, Factory>> v;
  return v;
}

}  // namespace

void register_for_tests(std::string name, Factory make) {
  extra().emplace_back(std::move(name), make);
}

std::vector<std::string> available() {
  std::vector<std::string> names;
  for (const Entry& e : kEntries) names.emplace_back(e.name);
  return names;
}

std::unique_ptr<Controller> create(std::string_view name, const Config& cfg,
                                   std::string* error) {
  for (const Entry& e : kEntries) {
    if (name == e.name) return e.make(cfg);
  }
  for (const auto& [n, make] : extra()) {
    if (name == n) return make(cfg);
  }
  if (error) {
    *error = "unknown congestion controller '" + std::string(name) + "' (have:";
    for (const Entry& e : kEntries) *error += std::string(" ") + e.name;
    *error += ")";
  }
  return nullptr;
}

}  // namespace sluice::rudp::cc
