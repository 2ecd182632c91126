// Stop signals for a server's main(): SIGINT and SIGTERM are taken by a
// waiting thread instead of a signal handler, so stopping runs as ordinary
// code (Server::stop() flushes what is owed) and no loop is interrupted.
//
//   sluice::block_stop_signals();      // first: threads started later inherit the mask
//   server.start(&error);
//   int sig = sluice::wait_for_stop_signal();  // returns on SIGINT/SIGTERM
//   server.stop();                     // or let ~Server do it
//
// Also ignores SIGPIPE (a write to a closed socket must never kill a
// server; sluice's own writes use MSG_NOSIGNAL anyway).
//
// Thread rules: block_stop_signals() in main before any thread starts (a
// thread started earlier keeps an unblocked mask and may receive the
// signal's default action instead). wait_for_stop_signal() from one thread.
#pragma once

#include <chrono>

namespace sluice {

void block_stop_signals();
// Blocks until SIGINT or SIGTERM; returns its number.
int wait_for_stop_signal();
// The same, giving up after `timeout`: returns 0 then.
int wait_for_stop_signal(std::chrono::milliseconds timeout);

}  // namespace sluice
