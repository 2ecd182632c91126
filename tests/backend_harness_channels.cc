#include "tests/backend_harness_channels.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "tests/backend_harness_net.h"
#include "tests/test_thread.h"

namespace sluice::testing {

using Clock = std::chrono::steady_clock;

bool pump(io::Backend& be, const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    const int n = be.wait(std::chrono::milliseconds(10));
    EXPECT_GE(n, 0);
    if (n < 0) return false;
  }
  return true;
}

void pump_for(io::Backend& be, std::chrono::milliseconds d) {
  const auto deadline = Clock::now() + d;
  while (Clock::now() < deadline) EXPECT_GE(be.wait(std::chrono::milliseconds(5)), 0);
}

// ------------------------------------------------------------ TestConn

TestConn::~TestConn() {
  if (!closed_) ::close(fd());
}

void TestConn::alive(const char* what) {
  if (detached || detach_called) {
    ++late;
    ADD_FAILURE() << what << " after detach";
  }
}

void TestConn::queue(std::string_view bytes) {
  output().append(bytes);
  queued += bytes.size();
  be_.update(*this);
}

void TestConn::set_reading(bool on) {
  set_want_read(on);
  be_.update(*this);
}

void TestConn::do_detach() {
  if (detach_called) return;
  detach_called = true;
  be_.detach(*this);
}

void TestConn::on_input(std::string_view data) {
  alive("on_input");
  if (!want_read()) ADD_FAILURE() << "on_input while want_read() is false";
  if (data.empty()) ADD_FAILURE() << "on_input with no bytes";
  if (eofs) ADD_FAILURE() << "on_input after on_eof";
  ++inputs;
  in_bytes += data.size();
  if (echo) {
    output().append(data);
    queued += data.size();
    if (high_water > 0 && unsent() > high_water && want_read()) {
      bp_paused = true;
      set_want_read(false);
    }
    be_.update(*this);
  } else {
    got.append(data);  // the view is only valid during the call
  }
  if (input_hook) input_hook(*this, data.size());
}

void TestConn::on_sent(size_t n) {
  alive("on_sent");
  if (n == 0 || n > unsent()) ADD_FAILURE() << "on_sent(" << n << ") with " << unsent() << " owed";
  sent_bytes += n;
  if (bp_paused && unsent() < low_water) {
    bp_paused = false;
    set_reading(true);
  }
  if (sent_hook) sent_hook(*this, n);
  if (auto_detach && eofs && unsent() == 0) do_detach();
}

void TestConn::on_eof() {
  alive("on_eof");
  ++eofs;
  eof_at_bytes = in_bytes;
  if (auto_detach && unsent() == 0) do_detach();
}

void TestConn::on_error(int err) {
  alive("on_error");
  ++errors;
  last_error = err;
  if (auto_detach) do_detach();
}

void TestConn::on_detached() {
  if (detached) ADD_FAILURE() << "second on_detached";
  if (!detach_called) ADD_FAILURE() << "on_detached without detach()";
  ++detached;
  if (!closed_) {
    ::close(fd());
    closed_ = true;
  }
}

// ------------------------------------------------------------ TestListener

TestListener::~TestListener() { ::close(fd()); }

void TestListener::on_accept(int fd) {
  if (detached) ++late;
  accepts.fetch_add(1);
  EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
  auto c = std::make_unique<TestConn>(be_, fd);
  if (setup) setup(*c);
  const int rc = be_.attach(*c);
  if (rc != 0) {
    ADD_FAILURE() << "attach of an accepted stream: " << rc;
    return;  // c's destructor closes fd
  }
  conns.push_back(std::move(c));
  if (after_attach) after_attach(*conns.back());
  max_live = std::max(max_live, live());
}

void TestListener::on_accept_error(int err) {
  if (detached) ++late;
  accept_errors.push_back(err);
}

void TestListener::on_detached() {
  if (detached) ADD_FAILURE() << "second on_detached (listener)";
  ++detached;
}

size_t TestListener::live() const {
  size_t n = 0;
  for (const auto& c : conns) n += c->detached == 0;
  return n;
}

int TestListener::late_total() const {
  int n = late;
  for (const auto& c : conns) n += c->late;
  return n;
}

// ------------------------------------------------------------ StreamServer

StreamServer::StreamServer(std::unique_ptr<io::Backend> backend, int rcvbuf)
    : be(std::move(backend)) {
  if (!be) return;
  int fd = tcp_listen_local(&port, rcvbuf);
  EXPECT_GE(fd, 0);
  if (fd < 0) return;
  lis = std::make_unique<TestListener>(*be, fd);
  EXPECT_EQ(be->attach(*lis), 0);
}

void StreamServer::shutdown() {
  if (down_ || !be || !lis) return;
  down_ = true;
  for (auto& c : lis->conns) c->do_detach();
  if (lis->detached == 0) be->detach(*lis);
  EXPECT_TRUE(pump(*be, [&] { return lis->detached == 1 && lis->live() == 0; }))
      << "on_detached missing after detach";
  EXPECT_EQ(lis->late_total(), 0) << "callbacks after detach";
}

std::string StreamServer::echo_once(const std::string& data) {
  std::string got;
  std::atomic<bool> done{false};
  TestThread client([&](std::stop_token st) {
    int fd = tcp_client(port);
    if (fd >= 0) {
      {
        UnblockOnStop unblock(st, fd);
        TestThread writer([&] { send_all(fd, data); });
        got = recv_n(fd, data.size());
        ::shutdown(fd, SHUT_RDWR);  // a writer still blocked (short echo) returns
      }
      ::close(fd);
    }
    done = true;
  });
  EXPECT_TRUE(run_until([&] { return done.load(); }, std::chrono::seconds(120)));
  if (!done) client.request_stop();  // its socket is shut down: it returns
  client.join();                     // before `got` is read
  return got;
}

// ------------------------------------------------------------ TestDatagram

void TestDatagram::on_datagram(const io::Datagram& d) {
  if (detach_called || detached) ++late;
  if (!want_read()) ++while_paused;
  ++count;
  uint16_t from = 0;
  if (check_addr) {
    if (d.addr == nullptr || d.addr_len != sizeof(sockaddr_in) || d.addr->sa_family != AF_INET) {
      ++bad_addr;
      return;
    }
    const auto* in = reinterpret_cast<const sockaddr_in*>(d.addr);
    if (in->sin_addr.s_addr != htonl(INADDR_LOOPBACK)) ++bad_addr;
    from = ntohs(in->sin_port);
  }
  if (record) got.push_back({from, std::string(d.data)});
  if (echo) {
    datagrams().push(d.addr, d.addr_len, d.data);
    be_.update(*this);
  }
  if (pause_at != 0 && count == pause_at) {
    set_want_read(false);
    be_.update(*this);
  }
  if (detach_at != 0 && count == detach_at) do_detach();
}

void TestDatagram::on_error(int err) {
  if (detach_called || detached) ++late;
  errors.push_back(err);
}

void TestDatagram::on_detached() {
  if (!detach_called) ++late;
  ++detached;
}

void TestDatagram::do_detach() {
  if (detach_called) return;
  detach_called = true;
  be_.detach(*this);
}

// ------------------------------------------------------------ DatagramServer

DatagramServer::DatagramServer(std::unique_ptr<io::Backend> backend, int bufsize,
                               uint16_t connect_to)
    : be(std::move(backend)) {
  if (!be) return;
  int fd = udp_local(&port, bufsize);
  EXPECT_GE(fd, 0);
  if (fd < 0) return;
  if (connect_to != 0) {
    const sockaddr_in pa = local_addr(connect_to);
    EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&pa), sizeof pa), 0);
  }
  ch = std::make_unique<TestDatagram>(*be, fd);
  EXPECT_EQ(be->attach(*ch), 0);
}

DatagramServer::~DatagramServer() {
  if (!be || !ch) {
    if (ch) ::close(ch->fd());
    return;
  }
  ch->do_detach();
  EXPECT_TRUE(run_until([&] { return ch->detached > 0; }, std::chrono::seconds(10)));
  run_for(std::chrono::milliseconds(30));
  EXPECT_EQ(ch->detached, 1);
  EXPECT_EQ(ch->late, 0) << "callbacks after detach";
  EXPECT_EQ(ch->while_paused, 0) << "on_datagram while want_read is false";
  EXPECT_EQ(ch->bad_addr, 0);
  EXPECT_TRUE(ch->errors.empty());
  if (expect_io_released) {
    EXPECT_TRUE(ch->io == nullptr);
  }
  ::close(ch->fd());
}

}  // namespace sluice::testing
