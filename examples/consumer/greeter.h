// Greeter: for each line "NAME" a client sends, the line "hello, NAME"
// back ("hello, stranger" for an empty one). Lines are at most 256 bytes;
// a longer one closes the connection (the codec's frame limit).
//
// Thread rules: the handler keeps no state of its own, so any number of
// the server's loop threads may call it at once.
#pragma once

#include <memory>
#include <string_view>

#include "core/handler.h"
#include "core/server.h"

namespace greeter {

class Greeter final : public sluice::Handler {
 public:
  void on_message(sluice::Connection& conn, std::string_view line) override;
};

// A Server that greets on opts.host:opts.port through `handler`, which
// must outlive it. Call start() on the result.
std::unique_ptr<sluice::Server> make_server(sluice::ServerOptions opts, Greeter& handler);

}  // namespace greeter
