// Checks for the fault-injection runs (tests/fault_test.cc): a Handler
// that echoes frames and records contract violations, and a one-thread
// client that sends a byte stream in random pieces while reading the echo.
// Test code only.
//
// Thread rules: CheckingEcho's callbacks may come from any loop thread;
// its methods lock. exchange() and frame() are plain functions.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/connection.h"
#include "core/handler.h"

namespace sluice::testing {

// Echoes every frame and watches the handler contract.
class CheckingEcho final : public Handler {
 public:
  struct Record {
    bool closed = false;
    CloseReason reason = CloseReason::kLocal;
    int err = 0;
  };

  void on_open(Connection& conn) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!conns_.emplace(conn.id(), Record{}).second) violation("on_open twice");
    ++opened_;
  }
  void on_message(Connection& conn, std::string_view data) override {
    check_open(conn, "on_message");
    conn.send(data);
  }
  void on_peer_shutdown(Connection& conn) override {
    check_open(conn, "on_peer_shutdown");
    Handler::on_peer_shutdown(conn);
  }
  void on_high_water(Connection& conn, size_t) override { check_open(conn, "on_high_water"); }
  void on_drain(Connection& conn) override { check_open(conn, "on_drain"); }
  void on_close(Connection& conn, CloseReason reason, int err) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = conns_.find(conn.id());
    if (it == conns_.end()) {
      violation("on_close without on_open");
    } else if (it->second.closed) {
      violation("on_close twice");
    } else {
      it->second = {true, reason, err};
      last_ = it->second;
    }
    ++closed_;
    cv_.notify_all();
  }

  // Waits until every opened connection is closed; false on timeout.
  bool settle(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return opened_ == closed_; });
  }
  // Waits until at least n connections were opened (and all closed).
  bool settle_after(size_t n, std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return opened_ >= n && opened_ == closed_; });
  }
  size_t opened() {
    std::lock_guard<std::mutex> lock(mu_);
    return opened_;
  }
  Record last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }
  std::string take_violations() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string v;
    v.swap(violations_);
    conns_.clear();  // the run is over: its connections are all closed
    return v;
  }

 private:
  void check_open(Connection& conn, const char* what) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = conns_.find(conn.id());
    if (it == conns_.end()) {
      violation(std::string(what) + " before on_open");
    } else if (it->second.closed) {
      violation(std::string(what) + " after on_close");
    }
  }
  void violation(const std::string& what) {  // mu_ held
    if (!violations_.empty()) violations_ += "; ";
    violations_ += what;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, Record> conns_;
  size_t opened_ = 0, closed_ = 0;
  Record last_;
  std::string violations_;
};

// What the client saw of one exchange.
struct ClientResult {
  std::string got;
  // kComplete: every byte came back (the server's close after our FIN
  // may have been a reset); kEof / kReset: cut short; kTimeout: a hang.
  enum { kComplete, kEof, kReset, kTimeout } end = kTimeout;
};

// Sends `wire` in random pieces while reading the echo, from one poll()
// loop (no thread per run). Every wait is bounded by `deadline`.
ClientResult exchange(int fd, const std::string& wire, std::mt19937_64& rng,
                      std::chrono::steady_clock::time_point deadline);

}  // namespace sluice::testing
