#include "greeter.h"

#include <string>
#include <utility>

#include "codec/factory.h"
#include "core/connection.h"

namespace greeter {

void Greeter::on_message(sluice::Connection& conn, std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // telnet, nc -C
  conn.send("hello, " + std::string(line.empty() ? "stranger" : line));
}

std::unique_ptr<sluice::Server> make_server(sluice::ServerOptions opts, Greeter& handler) {
  return std::make_unique<sluice::Server>(
      std::move(opts), handler, sluice::codec::make_codec({.name = "line", .max_frame = 256}));
}

}  // namespace greeter
