// The README's example: a line-based server that answers each line in
// upper case, on whichever IO back end you name (default: the best here).
//   bazel run //servers:example_server -- uring
#include <cctype>
#include <cstdio>
#include <string>

#include "codec/factory.h"
#include "core/log.h"
#include "core/server.h"
#include "core/signals.h"

class Shout : public sluice::Handler {
  void on_open(sluice::Connection& c) override { c.send("hello " + c.peer()); }
  void on_message(sluice::Connection& c, std::string_view line) override {
    std::string out(line);
    for (char& ch : out) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (out == "BYE") return c.close();  // graceful: "hello"s and replies still flushed
    c.send(out);
  }
};

int main(int argc, char** argv) {
  sluice::init_logging("info");  // log lines to stderr; stdout is the program's
  sluice::ServerOptions opts;
  opts.port = 7070;
  opts.io = argc > 1 ? argv[1] : "";  // "", "epoll", "uring", "blocking", ...
  sluice::block_stop_signals();  // before start: loop threads inherit it
  Shout handler;
  sluice::Server server(opts, handler, sluice::codec::make_codec({.name = "line"}));
  std::string error;
  if (server.start(&error) < 0) return std::fprintf(stderr, "%s\n", error.c_str()), 1;
  std::printf("listening on 127.0.0.1:%u io=%s\n", server.port(), server.io_name().c_str());
  std::fflush(stdout);
  sluice::wait_for_stop_signal();  // Ctrl-C: ~Server stops gracefully
}
