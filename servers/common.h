// Command-line helpers shared by the bundled servers' main() functions
// (--list-io, --io). Main thread only. Logging setup and stop signals are
// library API: core/log.h, core/signals.h.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "core/server.h"
#include "core/workers.h"

namespace sluice::servers {

// The flags every example server takes, bound to `opts` and `log_level`:
// --io, --port, --threads, --log-level, and --list-io (prints, exits 0).
void add_server_flags(CLI::App& app, ServerOptions& opts, std::string& log_level);

// After parsing, before the Server starts: logs to stderr at `log_level`,
// resolves --io, blocks SIGINT/SIGTERM for wait_for_stop_signal(). Returns
// 0, or main's exit code (2) after saying what is wrong on stderr.
int prepare_server(ServerOptions& opts, const std::string& log_level);

// Prints "listening on HOST:PORT io=NAME" (the line scripts and tests
// wait for) and blocks until SIGINT/SIGTERM; the Server's destructor then
// stops it gracefully.
void serve_until_signal(const Server& server, const ServerOptions& opts);

// Prints every back end with available/unavailable and the reason; returns
// the process exit code (0).
int print_backends();

// Empty name: the best available back end. An unavailable name is reported
// on stderr; for the default choice the server falls back to epoll. Returns
// false when the named back end cannot run here.
bool resolve_io(std::string& name);

// --workers N for a bundled server (core/workers.h): `main` runs in each
// of `count` worker processes and binds `port` with SO_REUSEPORT. Port 0
// is resolved here first (reserve_port), so every worker binds the same
// one; `port` holds it when `main` runs. Prints the listening line (from
// `listening_line(port)`) once every worker is ready, then supervises
// until SIGTERM/SIGINT; workers still draining 3 s past `drain` are
// killed. Returns main()'s exit code. Call it before any thread starts.
// `sidecar` (optional): one more supervised process (WorkerOptions::sidecar),
// with `extra_words` words per worker in the shared page.
int run_workers(size_t count, std::chrono::milliseconds drain, const std::string& host,
                uint16_t& port, int sock_type, WorkerMain main,
                const std::function<std::string(uint16_t)>& listening_line,
                WorkerMain sidecar = {}, size_t extra_words = 0);

// The --workers flag and its limits, shared by the bundled servers.
void add_worker_flags(CLI::App& app, size_t& workers);

}  // namespace sluice::servers
