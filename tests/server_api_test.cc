// The server API beyond one connection's callbacks, on every back end:
// reaching connections by id from other threads (run_on, send_to,
// for_each, gather, broadcast), server timers, loop hooks, the output cap,
// the high-water check after a flush, idle close, and all of it racing
// stop(). Typed per-connection state is tested without sockets.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "codec/factory.h"
#include "core/event_loop.h"
#include "core/server.h"
#include "core/state_slot.h"
#include "io/registry.h"
#include "tests/backend_params.h"
#include "tests/test_thread.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::connect_local;
using testing::set_recv_timeout;
using testing::wait_closed;

// Polls `cond` until it holds or `limit` passes.
template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 5s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return cond();
}

// Water marks low enough for a test to cross quickly.
ServerOptions low_marks() {
  ServerOptions o;
  o.limits.high_water = 64 << 10;
  o.limits.low_water = 16 << 10;
  return o;
}

void set_rcvbuf(int fd, int bytes) { ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes); }

// A blocking line client.
class LineClient {
 public:
  explicit LineClient(uint16_t port) : fd_(connect_local(port)) {
    if (fd_ >= 0) set_recv_timeout(fd_, 3000);
  }
  ~LineClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  bool send_line(const std::string& s) {
    const std::string l = s + "\n";
    return ::send(fd_, l.data(), l.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(l.size());
  }
  // One line without its "\n"; "<timeout>", "<eof>" or "<error ...>" otherwise.
  std::string line() {
    for (;;) {
      if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      char tmp[4096];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n == 0) return "<eof>";
      // EINTR with no signal at all has been seen here (kernel 6.18; an
      // io_uring task-work notification to this thread, it seems): retry.
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno == EAGAIN ? "<timeout>" : std::string("<error ") + std::strerror(errno) + ">";
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
};

// Records what the server did, for the tests to look at from main.
class Recorder : public Handler {
 public:
  void on_open(Connection& c) override {
    std::lock_guard lock(mu);
    open_ids.push_back(c.id());
    if (!loop_started[loop_of(c)]) opened_before_loop_start = true;
  }
  void on_message(Connection& c, std::string_view line) override {
    if (line == "id") c.send(std::to_string(c.id()));
  }
  void on_high_water(Connection&, size_t) override {
    ++high_water;
    if (in_send) high_water_inside_send = true;
  }
  void on_close(Connection& c, CloseReason reason, int) override {
    if (in_send) close_inside_send = true;
    std::lock_guard lock(mu);
    closed[c.id()] = {reason, c.close_detail()};
  }
  void on_loop_start(EventLoop& loop, size_t index) override {
    std::lock_guard lock(mu);
    starts.push_back(index);
    if (!loop.in_loop_thread()) hook_off_thread = true;
    loop_started[index] = true;
  }
  void on_server_stop(EventLoop& loop, size_t index) override {
    std::lock_guard lock(mu);
    stops.push_back(index);
    if (!loop.in_loop_thread()) hook_off_thread = true;
  }

  size_t loop_of(const Connection& c) const { return (c.id() - 1) % loops; }
  std::vector<uint64_t> ids() {
    std::lock_guard lock(mu);
    return open_ids;
  }
  bool closed_with(uint64_t id, CloseReason* reason, std::string* detail = nullptr) {
    std::lock_guard lock(mu);
    auto it = closed.find(id);
    if (it == closed.end()) return false;
    *reason = it->second.first;
    if (detail) *detail = it->second.second;
    return true;
  }

  size_t loops = 1;
  std::mutex mu;
  std::vector<uint64_t> open_ids;
  std::map<uint64_t, std::pair<CloseReason, std::string>> closed;
  std::vector<size_t> starts, stops;
  std::map<size_t, bool> loop_started;
  bool hook_off_thread = false;
  bool opened_before_loop_start = false;
  std::atomic<int> high_water{0};
  // Set by a test around its own send() calls on the loop thread.
  static thread_local bool in_send;
  std::atomic<bool> high_water_inside_send{false};
  std::atomic<bool> close_inside_send{false};
};
thread_local bool Recorder::in_send = false;

class ServerApi : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
  }
  void start(ServerOptions opts = {}, Handler* handler = nullptr, const char* codec = "line") {
    opts.io = GetParam();
    if (opts.threads == 1) opts.threads = 2;
    opts.stop_deadline = 500ms;
    rec_.loops = opts.threads;
    server_ = std::make_unique<Server>(
        opts, handler ? *handler : rec_,
        std::string(codec) == "raw" ? nullptr : codec::make_codec({.name = codec}));
    std::string err;
    ASSERT_EQ(server_->start(&err), 0) << err;
  }
  // Connects n line clients and waits until the server opened them all.
  std::vector<std::unique_ptr<LineClient>> connect(size_t n) {
    std::vector<std::unique_ptr<LineClient>> cs;
    const size_t before = rec_.ids().size();
    for (size_t i = 0; i < n; ++i) cs.push_back(std::make_unique<LineClient>(server_->port()));
    EXPECT_TRUE(eventually([&] { return rec_.ids().size() == before + n; }));
    return cs;
  }
  // The server-side id of a client (asks it).
  uint64_t id_of(LineClient& c) {
    c.send_line("id");
    return std::stoull(c.line());
  }

  // A test's own handler, owned here so that it outlives server_ (declared
  // after it: destroyed first), whose stop() still calls the handler.
  template <class H>
  H& use() {
    auto h = std::make_unique<H>();
    H& ref = *h;
    custom_ = std::move(h);
    return ref;
  }

  Recorder rec_;
  std::unique_ptr<Handler> custom_;
  std::unique_ptr<Server> server_;
};

TEST_P(ServerApi, IdsNameTheirLoopAndRunOnReachesThem) {
  start();
  auto cs = connect(6);
  std::set<size_t> loops;
  for (auto& c : cs) {
    const uint64_t id = id_of(*c);
    loops.insert((id - 1) % server_->loop_count());
    // From this (non-loop) thread, on the connection's own loop.
    std::atomic<int> ran{0};
    ASSERT_TRUE(server_->run_on(id, [&, id](Connection* conn) {
      ASSERT_NE(conn, nullptr);
      EXPECT_EQ(conn->id(), id);
      EXPECT_TRUE(conn->loop().in_loop_thread());
      conn->send("direct " + std::to_string(id));
      ran = 1;
    }));
    EXPECT_EQ(c->line(), "direct " + std::to_string(id));
    EXPECT_EQ(ran.load(), 1);
    ASSERT_TRUE(server_->send_to(id, "via send_to"));
    EXPECT_EQ(c->line(), "via send_to");
  }
  EXPECT_EQ(loops.size(), 2u) << "round-robin spreads 6 connections over both loops";
}

TEST_P(ServerApi, RunOnAGoneConnectionSaysSo) {
  start();
  auto cs = connect(2);
  const uint64_t id = id_of(*cs[0]);
  cs[0].reset();  // closes the client: the server sees EOF and closes too
  CloseReason why;
  ASSERT_TRUE(eventually([&] { return rec_.closed_with(id, &why); }));
  std::promise<bool> got;
  ASSERT_TRUE(server_->run_on(id, [&](Connection* c) { got.set_value(c == nullptr); }));
  EXPECT_TRUE(got.get_future().get());
  // An id that never existed (but names a loop) is just as gone.
  std::promise<bool> never;
  ASSERT_TRUE(server_->run_on(id + 1000 * server_->loop_count(),
                              [&](Connection* c) { never.set_value(c == nullptr); }));
  EXPECT_TRUE(never.get_future().get());
  EXPECT_FALSE(server_->run_on(0, [](Connection*) {}));
}

TEST_P(ServerApi, ForEachGatherAndBroadcastSeeEveryOpenConnection) {
  start();
  auto cs = connect(5);
  std::vector<uint64_t> client_ids;  // by client
  for (auto& c : cs) client_ids.push_back(id_of(*c));
  std::vector<uint64_t> ids = client_ids;
  std::sort(ids.begin(), ids.end());

  std::promise<std::vector<uint64_t>> gathered;
  ASSERT_TRUE(server_->gather<uint64_t>(
      [](Connection& c) -> std::optional<uint64_t> { return c.id(); },
      [&](std::vector<uint64_t> all) { gathered.set_value(std::move(all)); }));
  std::vector<uint64_t> got = gathered.get_future().get();
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, ids);

  std::atomic<int> visited{0};
  std::promise<int> done;
  ASSERT_TRUE(server_->for_each([&](Connection&) { ++visited; },
                                [&] { done.set_value(visited.load()); }));
  EXPECT_EQ(done.get_future().get(), 5) << "done runs after every loop's part";

  ASSERT_TRUE(server_->broadcast("to all"));
  for (auto& c : cs) EXPECT_EQ(c->line(), "to all");
  // With a filter: everyone but the first connection.
  const uint64_t skip = ids[0];
  ASSERT_TRUE(server_->broadcast("not you", [skip](Connection& c) { return c.id() != skip; }));
  for (size_t i = 0; i < cs.size(); ++i) {
    // The broadcast is posted; the "id" request may be served before or
    // after it on the loop.
    cs[i]->send_line("id");
    std::multiset<std::string> got{cs[i]->line()};
    if (client_ids[i] != skip) got.insert(cs[i]->line());
    std::multiset<std::string> want{std::to_string(client_ids[i])};
    if (client_ids[i] != skip) want.insert("not you");
    EXPECT_EQ(got, want);
  }
  // Nothing else arrives: each client's next line answers the next "id".
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i]->send_line("id");
    EXPECT_EQ(cs[i]->line(), std::to_string(client_ids[i]));
  }
  // A payload the codec cannot frame is refused up front.
  EXPECT_FALSE(server_->broadcast(std::string(2 << 20, 'x')));  // over the line codec's max_frame
}

TEST_P(ServerApi, HooksRunOnEachLoopThread) {
  start();
  auto cs = connect(2);
  {
    std::lock_guard lock(rec_.mu);
    std::vector<size_t> s = rec_.starts;
    std::sort(s.begin(), s.end());
    EXPECT_EQ(s, (std::vector<size_t>{0, 1}));
  }
  server_->stop();
  std::lock_guard lock(rec_.mu);
  std::vector<size_t> s = rec_.stops;
  std::sort(s.begin(), s.end());
  EXPECT_EQ(s, (std::vector<size_t>{0, 1}));
  EXPECT_FALSE(rec_.hook_off_thread);
  EXPECT_FALSE(rec_.opened_before_loop_start);
}

// A loop's start hook may already use the server's cross-thread API.
class TimerFromHook final : public Recorder {
 public:
  Server* server = nullptr;
  void on_loop_start(EventLoop& loop, size_t index) override {
    Recorder::on_loop_start(loop, index);
    if (server->run_every(5ms, [this, index] { ticks[index]++; }, index) == 0) refused = true;
  }
  std::atomic<int> ticks[2] = {};
  std::atomic<bool> refused{false};
};

TEST_P(ServerApi, StartHookCanStartServerTimers) {
  auto& h = use<TimerFromHook>();
  ServerOptions o;
  o.io = GetParam();
  o.threads = 2;
  server_ = std::make_unique<Server>(o, h, nullptr);
  h.server = server_.get();
  std::string err;
  ASSERT_EQ(server_->start(&err), 0) << err;
  EXPECT_TRUE(eventually([&] { return h.ticks[0] >= 2 && h.ticks[1] >= 2; }));
  EXPECT_FALSE(h.refused.load());
}

// on_server_stop sees open connections and may say goodbye to them.
class Goodbye final : public Recorder {
 public:
  Server* server = nullptr;
  void on_server_stop(EventLoop& loop, size_t index) override {
    Recorder::on_server_stop(loop, index);
    // The cross-thread API is closed by now: it says so.
    if (server->broadcast("too late")) broadcast_during_stop = true;
  }
  void on_close(Connection& c, CloseReason reason, int err) override {
    if (reason == CloseReason::kServerStop) c.send("never sent");  // closing: refused
    Recorder::on_close(c, reason, err);
  }
  std::atomic<bool> broadcast_during_stop{false};
};

TEST_P(ServerApi, StopClosesTheCrossThreadApiFirst) {
  auto& h = use<Goodbye>();
  start({}, &h);
  h.server = server_.get();
  std::vector<std::unique_ptr<LineClient>> cs;
  for (int i = 0; i < 3; ++i) cs.push_back(std::make_unique<LineClient>(server_->port()));
  ASSERT_TRUE(eventually([&] { return h.ids().size() == 3; }));
  server_->stop();
  EXPECT_FALSE(h.broadcast_during_stop.load());
  for (auto& c : cs) EXPECT_EQ(c->line(), "<eof>");
  EXPECT_FALSE(server_->broadcast("after"));
  EXPECT_FALSE(server_->run_on(1, [](Connection*) {}));
  EXPECT_FALSE(server_->post(0, [] {}));
  EXPECT_EQ(server_->run_after(1ms, [] {}), 0u);
}

// Other threads keep calling the cross-thread API while stop() runs:
// every call that returned true had its task run, and none ran after
// stop() returned (TSan checks the rest).
TEST_P(ServerApi, CrossThreadCallsRaceStop) {
  start();
  auto cs = connect(4);
  std::atomic<bool> go{true};
  std::atomic<uint64_t> accepted{0}, ran{0};
  std::vector<testing::TestThread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t](std::stop_token st) {
      while (go.load() && !st.stop_requested()) {
        bool ok = false;
        switch (t) {
          case 0: ok = server_->run_on(1 + (accepted.load() % 8), [&](Connection*) { ++ran; }); break;
          case 1: ok = server_->for_each([](Connection&) {}, [&] { ++ran; }); break;
          case 2: ok = server_->post(accepted.load() % 2, [&] { ++ran; }); break;
        }
        if (ok) ++accepted;
        if (t == 1) server_->broadcast("tick");
        if (t == 2) server_->cancel_timer(server_->run_after(1ms, [] {}));
      }
    });
  }
  std::this_thread::sleep_for(100ms);
  server_->stop();
  const uint64_t ran_at_stop = ran.load();
  go = false;
  testing::stop_and_join(threads);
  EXPECT_GT(accepted.load(), 0u);
  EXPECT_EQ(ran_at_stop, ran.load()) << "nothing runs after stop() returned";
  EXPECT_EQ(ran.load(), accepted.load()) << "every accepted call ran";
}

TEST_P(ServerApi, ServerTimersRunOnTheirLoopAndCancelFromAnyThread) {
  start();
  std::atomic<int> once{0}, every{0};
  std::atomic<bool> wrong_thread{false};
  ASSERT_NE(server_->run_after(20ms, [&] {
    if (!server_->loop(1).in_loop_thread()) wrong_thread = true;
    ++once;
  }, 1), 0u);
  const ServerTimer tick = server_->run_every(10ms, [&] { ++every; });
  ASSERT_NE(tick, 0u);
  ASSERT_TRUE(eventually([&] { return once.load() == 1 && every.load() >= 3; }));
  ASSERT_TRUE(server_->cancel_timer(tick));
  std::this_thread::sleep_for(30ms);  // let the cancel land
  const int frozen = every.load();
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(every.load(), frozen) << "cancelled from another thread";
  EXPECT_EQ(once.load(), 1);
  EXPECT_FALSE(wrong_thread.load());
  // Still pending at stop(): cancelled then, never runs.
  std::atomic<int> late{0};
  ASSERT_NE(server_->run_after(10s, [&] { ++late; }), 0u);
  server_->stop();
  EXPECT_EQ(late.load(), 0);
}

// A broadcast server: the peer that never reads is cut off at the cap
// (kClose), and never owes more than the cap.
class Pusher final : public Recorder {
 public:
  void on_open(Connection& c) override {
    Recorder::on_open(c);
    int small = 4096;  // a small kernel buffer: the cap is reached sooner
    ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  }
  void on_close(Connection& c, CloseReason reason, int err) override {
    max_owed = std::max<size_t>(max_owed, c.pending_output());
    Recorder::on_close(c, reason, err);
  }
  std::atomic<size_t> max_owed{0};
};

TEST_P(ServerApi, PeerThatNeverReadsIsCutOffAtTheOutputCap) {
  auto& h = use<Pusher>();
  ServerOptions o = low_marks();
  o.limits.max_output = 1 << 20;
  start(o, &h, "raw");
  LineClient sleeper(server_->port());  // never reads
  set_rcvbuf(sleeper.fd(), 4096);
  ASSERT_TRUE(eventually([&] { return h.ids().size() == 1; }));
  const uint64_t id = h.ids()[0];
  const std::string chunk(16 << 10, 'p');
  std::atomic<size_t> cap{0};
  std::atomic<size_t> worst{0};
  CloseReason why{};
  std::string detail;
  for (int i = 0; i < 2000 && !h.closed_with(id, &why, &detail); ++i) {
    ASSERT_TRUE(server_->broadcast(chunk));
    // Posted after the broadcast from this thread to the same loop: runs
    // after it (one FIFO per loop), and sees what it queued.
    server_->run_on(id, [&](Connection* c) {
      if (!c) return;
      cap = c->output_cap();
      worst = std::max<size_t>(worst, c->pending_output());
    });
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(eventually([&] { return h.closed_with(id, &why, &detail); }));
  EXPECT_EQ(why, CloseReason::kTooSlow) << detail;
  EXPECT_NE(detail.find("output cap"), std::string::npos) << detail;
  EXPECT_EQ(cap.load(), size_t{1} << 20);
  EXPECT_LE(worst.load(), cap) << "owed never passes the cap";
  EXPECT_TRUE(wait_closed(sleeper.fd(), 3000));
}

// The other policy: the send is refused, the connection stays, and once
// the peer reads, sends go through again.
class Refuser final : public Recorder {
 public:
  void on_message(Connection& c, std::string_view line) override {
    if (line != "flood") return Recorder::on_message(c, line);
    const std::string chunk(16 << 10, 'r');
    Recorder::in_send = true;
    int n = 0;
    while (c.send(chunk)) ++n;
    Recorder::in_send = false;
    refused_while_open = c.is_open();
    accepted = n;
  }
  std::atomic<int> accepted{0};
  std::atomic<bool> refused_while_open{false};
};

TEST_P(ServerApi, RefusePolicyRefusesWithoutClosingOrCallingBack) {
  auto& h = use<Refuser>();
  ServerOptions o = low_marks();
  o.limits.max_output = 3 << 20;  // above 2 x (high_water + line max_frame (1 MiB) + 64 KiB)
  o.limits.output_policy = OutputPolicy::kRefuse;
  start(o, &h);
  LineClient c(server_->port());
  ASSERT_TRUE(c.send_line("flood"));
  ASSERT_TRUE(eventually([&] { return h.accepted.load() > 0; }));
  EXPECT_TRUE(h.refused_while_open.load());
  // Everything queued was accepted within the cap.
  EXPECT_LE(static_cast<size_t>(h.accepted.load()) * (16 << 10), size_t{3} << 20);
  EXPECT_FALSE(h.high_water_inside_send.load()) << "send() never calls the handler";
  EXPECT_FALSE(h.close_inside_send.load());
  // Read everything owed, then the connection still answers.
  const size_t owed = static_cast<size_t>(h.accepted.load()) * ((16 << 10) + 1);
  EXPECT_EQ(testing::read_n(c.fd(), owed).size(), owed);
  c.send_line("id");
  EXPECT_FALSE(c.line().empty());
  CloseReason why;
  EXPECT_FALSE(h.closed_with(h.ids()[0], &why));
}

// A burst the kernel takes at once is not a slow peer: the high-water
// check runs after the flush, not inside send().
class Burst final : public Recorder {
 public:
  void on_open(Connection& c) override {
    Recorder::on_open(c);
    int big = 4 << 20;
    ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  }
  void on_message(Connection& c, std::string_view line) override {
    if (line != "burst") return Recorder::on_message(c, line);
    Recorder::in_send = true;
    for (int i = 0; i < 300; ++i) c.send(std::string(1000, 'b'));  // ~300 KB
    Recorder::in_send = false;
  }
};

TEST_P(ServerApi, BurstTheKernelTakesIsNotHighWater) {
  auto& h = use<Burst>();
  ServerOptions o = low_marks();
  start(o, &h);
  LineClient c(server_->port());
  set_rcvbuf(c.fd(), 4 << 20);
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(c.send_line("burst"));
    for (int i = 0; i < 300; ++i) {
      const std::string l = c.line();
      ASSERT_EQ(l.size(), 1000u) << l;
    }
  }
  EXPECT_EQ(h.high_water.load(), 0) << "a reading client never looks slow";
  EXPECT_FALSE(h.high_water_inside_send.load());
}

// And a peer that stops reading does trip it, after the flush.
TEST_P(ServerApi, PeerThatStopsReadingTripsHighWaterOutsideSend) {
  auto& h = use<Burst>();
  ServerOptions o = low_marks();
  start(o, &h);
  LineClient c(server_->port());
  set_rcvbuf(c.fd(), 4096);
  for (int round = 0; round < 40 && h.high_water.load() == 0; ++round) {
    ASSERT_TRUE(c.send_line("burst"));
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(eventually([&] { return h.high_water.load() > 0; }));
  EXPECT_FALSE(h.high_water_inside_send.load());
}

TEST_P(ServerApi, IdleCloseByOption) {
  ServerOptions o;
  o.idle.reader = 200ms;
  o.idle_close = true;
  start(o);
  LineClient quiet(server_->port());
  LineClient chatty(server_->port());
  ASSERT_TRUE(eventually([&] { return rec_.ids().size() == 2; }));
  const uint64_t chatty_id = id_of(chatty);
  const auto t0 = std::chrono::steady_clock::now();
  // chatty keeps talking; quiet says nothing and is closed.
  bool quiet_closed = false;
  while (std::chrono::steady_clock::now() - t0 < 1500ms && !quiet_closed) {
    chatty.send_line("id");
    EXPECT_EQ(chatty.line(), std::to_string(chatty_id));
    quiet_closed = wait_closed(quiet.fd(), 50);
  }
  EXPECT_TRUE(quiet_closed);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 150ms);
  std::vector<uint64_t> ids = rec_.ids();
  const uint64_t quiet_id = ids[0] == chatty_id ? ids[1] : ids[0];
  CloseReason why;
  std::string detail;
  ASSERT_TRUE(eventually([&] { return rec_.closed_with(quiet_id, &why, &detail); }));
  EXPECT_EQ(why, CloseReason::kIdle);
  EXPECT_EQ(detail, "reader-idle for 200 ms");
  EXPECT_FALSE(rec_.closed_with(chatty_id, &why)) << "a talking peer is not idle";
}

INSTANTIATE_TEST_SUITE_P(AllBackends, ServerApi,
                         ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

// Typed state, no sockets.
struct Counted {
  static inline int alive = 0;
  std::string name;
  Counted() { ++alive; }
  explicit Counted(std::string n) : name(std::move(n)) { ++alive; }
  ~Counted() { --alive; }
};

TEST(StateSlot, CreatesOnFirstUseAndKnowsItsType) {
  StateSlot s;
  EXPECT_FALSE(s.has_value());
  EXPECT_EQ(s.find<Counted>(), nullptr);
  s.get<Counted>().name = "alice";
  EXPECT_EQ(Counted::alive, 1);
  ASSERT_NE(s.find<Counted>(), nullptr);
  EXPECT_EQ(s.find<Counted>()->name, "alice");
  EXPECT_EQ(s.find<int>(), nullptr) << "another type is not found";
  s.emplace<Counted>("bob");
  EXPECT_EQ(Counted::alive, 1);
  EXPECT_EQ(s.get<Counted>().name, "bob");
  s.reset();
  EXPECT_EQ(Counted::alive, 0);
  s.emplace<int>(7);
  EXPECT_EQ(s.get<int>(), 7);
}

TEST(StateSlotDeathTest, GetOfAnotherTypeAborts) {
  StateSlot s;
  s.get<int>() = 1;
  EXPECT_DEATH(s.get<std::string>(), "another type");
}

}  // namespace
}  // namespace sluice
