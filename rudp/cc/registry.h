// Congestion controllers by name, like the IO back ends (io/registry.h).
// Thread rules: any thread (the table is immutable).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rudp/cc/controller.h"

namespace sluice::rudp::cc {

// Names of the controllers built in, the default first.
std::vector<std::string> available();
// A controller, or null with *error set for an unknown name.
std::unique_ptr<Controller> create(std::string_view name, const Config& cfg,
                                   std::string* error = nullptr);

// Tests only: makes create() know one more controller by name (not listed
// by available()). Call before anything creates controllers; not safe
// against concurrent create().
using Factory = std::unique_ptr<Controller> (*)(const Config&);
void register_for_tests(std::string name, Factory make);

}  // namespace sluice::rudp::cc
