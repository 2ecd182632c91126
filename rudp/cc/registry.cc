#include "rudp/cc/registry.h"

#include "rudp/cc/bbr.h"
#include "rudp/cc/cubic.h"
#include "rudp/cc/fixed.h"
#include "rudp/cc/newreno.h"
#include "rudp/cc/vegas.h"

namespace sluice::rudp::cc {

namespace {

// The default first (Options::cc): CUBIC, the Internet's common choice,
// which shares a bottleneck fairly with kernel TCP (docs/CONGESTION.md).
struct Entry {
  const char* name;
  std::unique_ptr<Controller> (*make)(const Config&);
};

const Entry kEntries[] = {
    {"cubic", [](const Config& c) -> std::unique_ptr<Controller> {
       return std::make_unique<Cubic>(c);
     }},
    {"newreno", [](const Config& c) -> std::unique_ptr<Controller> {
       return std::make_unique<NewReno>(c);
     }},
    {"bbr", [](const Config& c) -> std::unique_ptr<Controller> {
       return std::make_unique<Bbr>(c);
     }},
    {"vegas", [](const Config& c) -> std::unique_ptr<Controller> {
       return std::make_unique<Vegas>(c);
     }},
    {"fixed", [](const Config& c) -> std::unique_ptr<Controller> {
       return std::make_unique<Fixed>(c);
     }},
};

}  // namespace

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
  if (error) {
    *error = "unknown congestion controller '" + std::string(name) + "' (have:";
    for (const Entry& e : kEntries) *error += std::string(" ") + e.name;
    *error += ")";
  }
  return nullptr;
}

}  // namespace sluice::rudp::cc
