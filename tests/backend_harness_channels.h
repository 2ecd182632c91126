// Channel test doubles and loop drivers for tests that drive a Backend
// directly, with no core: a listener whose on_accept attaches stream
// doubles, a datagram double, and servers that own a back end plus those
// channels and tear them down (RAII) however the test ends.
//
// Every double checks the Channel callback rules as it goes (no callback
// after on_detached or after detach(), on_detached exactly once and only
// after detach(), no input while want_read() is false, on_sent within
// what was queued) and fails the test where one is broken.
//
// Thread rules: the doubles and servers belong to the test thread, which
// is the loop thread: it calls the back end and runs wait() (pump,
// run_until). Client sockets live on other threads (tests/test_thread.h).
// Only TestListener::accepts may be read from another thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/backend.h"
#include "tests/backend_harness.h"

namespace sluice::testing {

// Drives wait(10 ms) until pred() holds or `limit` passes; false on
// timeout or a back-end error.
bool pump(io::Backend& be, const std::function<bool()>& pred,
          std::chrono::milliseconds limit = std::chrono::seconds(30));
// Drives wait(5 ms) for `d`.
void pump_for(io::Backend& be, std::chrono::milliseconds d);

// A stream channel: echoes (or keeps) its input, with echo backpressure
// (reading pauses above high_water unsent bytes, resumes below low_water).
class TestConn final : public io::Channel {
 public:
  TestConn(io::Backend& be, int fd) : Channel(fd, Kind::kStream), be_(be) {}
  ~TestConn() override;  // closes the fd unless on_detached did

  // Appends to output() (counted, so on_sent can be checked) and update()s.
  void queue(std::string_view bytes);
  void set_reading(bool on);  // set_want_read + update
  void do_detach();           // once; later calls do nothing
  size_t unsent() const { return queued - sent_bytes; }
  io::Backend& backend() { return be_; }

  // Knobs: set before attach (TestListener::setup) or between pumps.
  bool echo = true;         // else input is kept in `got`
  bool auto_detach = true;  // on error, and on EOF once all output went
  size_t high_water = 4 << 20, low_water = 1 << 20;
  std::function<void(TestConn&, size_t)> input_hook;  // after each on_input
  std::function<void(TestConn&, size_t)> sent_hook;   // after each on_sent

  // What happened.
  size_t inputs = 0, in_bytes = 0, queued = 0, sent_bytes = 0, eof_at_bytes = 0;
  std::string got;
  int eofs = 0, errors = 0, last_error = 0, detached = 0, late = 0;
  bool bp_paused = false;  // reading paused by echo backpressure
  bool detach_called = false;

  void on_input(std::string_view data) override;
  void on_sent(size_t n) override;
  void on_eof() override;
  void on_error(int err) override;
  void on_detached() override;

 private:
  void alive(const char* what);
  io::Backend& be_;
  bool closed_ = false;
};

// A listener: every accepted descriptor becomes an attached TestConn.
class TestListener final : public io::Channel {
 public:
  TestListener(io::Backend& be, int fd) : Channel(fd, Kind::kListener), be_(be) {}
  ~TestListener() override;  // closes the listening fd

  void on_accept(int fd) override;
  void on_accept_error(int err) override;
  void on_detached() override;

  size_t live() const;      // conns not detached yet
  int late_total() const;   // late callbacks, here and on every conn
  TestConn* last() { return conns.empty() ? nullptr : conns.back().get(); }

  std::function<void(TestConn&)> setup;         // before attach
  std::function<void(TestConn&)> after_attach;  // after attach
  std::vector<std::unique_ptr<TestConn>> conns;
  std::vector<int> accept_errors;
  std::atomic<int> accepts{0};
  int detached = 0, late = 0;
  size_t max_live = 0;

 private:
  io::Backend& be_;
};

// A back end with an attached TestListener on 127.0.0.1. The destructor
// (or shutdown()) detaches everything and waits for every on_detached, so
// a test that returns early still releases its channels in order.
class StreamServer {
 public:
  // be == nullptr: ok() is false and nothing else is set up.
  explicit StreamServer(std::unique_ptr<io::Backend> be, int rcvbuf = 0);
  ~StreamServer() { shutdown(); }
  StreamServer(const StreamServer&) = delete;
  StreamServer& operator=(const StreamServer&) = delete;

  bool ok() const { return be != nullptr && lis != nullptr; }
  // Idempotent; does nothing once the back end is gone.
  void shutdown();
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    return pump(*be, pred, limit);
  }
  void run_for(std::chrono::milliseconds d) { pump_for(*be, d); }
  // Echoes one payload through a fresh connection (written from a second
  // thread, read here on a third) while this thread runs the loop.
  std::string echo_once(const std::string& data);

  std::unique_ptr<io::Backend> be;
  std::unique_ptr<TestListener> lis;
  uint16_t port = 0;

 private:
  bool down_ = false;
};

// A datagram channel: records (and by default echoes) what arrives.
class TestDatagram final : public io::Channel {
 public:
  TestDatagram(io::Backend& be, int fd) : Channel(fd, Kind::kDatagram), be_(be) {}

  void on_datagram(const io::Datagram& d) override;
  void on_error(int err) override;
  void on_detached() override;
  void do_detach();  // once

  bool echo = true;
  bool record = true;
  bool check_addr = true;  // expect IPv4 127.0.0.1 senders
  size_t pause_at = 0;     // turn want_read off on this datagram (1-based)
  size_t detach_at = 0;    // detach from inside on_datagram
  size_t count = 0;
  std::vector<Received> got;
  std::vector<int> errors;
  int detached = 0, late = 0, while_paused = 0, bad_addr = 0;
  bool detach_called = false;

 private:
  io::Backend& be_;
};

// A back end with one attached TestDatagram on 127.0.0.1 (its socket
// connected to 127.0.0.1:connect_to first, if given). The destructor
// detaches and checks the single on_detached and the callback rules.
class DatagramServer {
 public:
  explicit DatagramServer(std::unique_ptr<io::Backend> be, int bufsize = 0,
                          uint16_t connect_to = 0);
  ~DatagramServer();
  DatagramServer(const DatagramServer&) = delete;
  DatagramServer& operator=(const DatagramServer&) = delete;

  bool ok() const { return be != nullptr && ch != nullptr; }
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    return pump(*be, pred, limit);
  }
  void run_for(std::chrono::milliseconds d) { pump_for(*be, d); }

  std::unique_ptr<io::Backend> be;
  std::unique_ptr<TestDatagram> ch;
  uint16_t port = 0;
  // Checked at the end: the back end dropped Channel::io once detached.
  bool expect_io_released = false;
};

}  // namespace sluice::testing
