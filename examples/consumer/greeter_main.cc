// greeter_server [PORT]: serves the greeter on 127.0.0.1 (default port
// 7300) until SIGINT or SIGTERM.   Try: printf 'Ada\n' | nc 127.0.0.1 7300
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "greeter.h"

int main(int argc, char** argv) {
  sluice::ServerOptions opts;
  opts.port = 7300;
  if (argc > 1) opts.port = static_cast<uint16_t>(std::atoi(argv[1]));
  ::signal(SIGPIPE, SIG_IGN);
  // Block the stop signals before start(): the loop threads inherit the
  // mask, so only sigwait below sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  greeter::Greeter handler;
  auto server = greeter::make_server(opts, handler);
  std::string error;
  if (server->start(&error) < 0) {
    std::fprintf(stderr, "greeter_server: %s\n", error.c_str());
    return 1;
  }
  std::printf("greeter on 127.0.0.1:%u\n", server->port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  server->stop();
  return 0;
}
