// rudp's life cycle on the simulated world (virtual time, seeded):
// a spoofed INITIAL flood creates no state; a paused reader holds its
// sender back with bounded memory and loses nothing; closes end in order,
// a peer that never finishes its side is reset, a vanished peer times out;
// a silent peer is dropped by the idle machinery although keepalive PINGs
// flow; unreliable messages arrive at most once and in order; reconnects
// on one socket are never confused with the closed connection.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "io/sim_peer.h"
#include "io/sim_rng.h"
#include "rudp/wire.h"
#include "tests/rudp_sim.h"

namespace sluice::rudptest {
namespace {

// A client-side handler whose callbacks a test fills in.
struct Hooks final : Handler {
  std::function<void(Connection&)> open;
  std::function<void(Connection&, std::string_view)> message;
  std::function<void(Connection&, size_t)> high_water;
  std::function<void(Connection&, CloseReason, int)> close;
  bool ignore_peer_shutdown = false;  // stay half-open when the peer finishes
  void on_peer_shutdown(Connection& c) override {
    if (!ignore_peer_shutdown) c.close();
  }
  void on_open(Connection& c) override {
    if (open) open(c);
  }
  void on_message(Connection& c, std::string_view d) override {
    if (message) message(c, d);
  }
  void on_high_water(Connection& c, size_t p) override {
    if (high_water) high_water(c, p);
  }
  void on_close(Connection& c, CloseReason r, int e) override {
    if (close) close(c, r, e);
  }
};

// A scenario made of lambdas: the server's hooks, and a script.
class Script final : public Scenario {
 public:
  Hooks server_hooks;
  std::function<void(Script&, EventLoop&, uint16_t)> script;
  std::vector<std::unique_ptr<rudp::Client>> clients;
  std::vector<std::unique_ptr<Hooks>> client_hooks;
  EventLoop* loop = nullptr;
  rudp::Options options;

  Handler& server_handler() override { return server_hooks; }
  void start(EventLoop& l, uint16_t port) override {
    loop = &l;
    l.run_after(std::chrono::seconds(300), [this] {
      fail("not done after 300 s of virtual time");
      done();
    });
    script(*this, l, port);
  }
  void stopping() override {
    stopped = true;  // scripts' timers check it: the clients go now
    for (auto& c : clients) c->abort();
    clients.clear();
  }
  bool stopped = false;

  rudp::Client& client(uint16_t port, Hooks** hooks) {
    client_hooks.push_back(std::make_unique<Hooks>());
    *hooks = client_hooks.back().get();
    rudp::ClientOptions co;
    co.port = port;
    co.rudp = options;
    clients.push_back(std::make_unique<rudp::Client>(*loop, **hooks, co));
    return *clients.back();
  }
  double seconds() const {
    return std::chrono::duration<double>(world->now() - sim::World::kEpoch).count();
  }
};

SimRun base_run(uint64_t seed) {
  SimRun r;
  r.seed = seed;
  r.faults.min_delay = std::chrono::milliseconds(5);
  r.faults.max_delay = std::chrono::milliseconds(5);
  return r;
}

void expect_clean(const std::vector<std::string>& v) {
  for (const std::string& s : v) ADD_FAILURE() << s;
}

TEST(RudpLifecycle, SpoofedInitialFloodCreatesNoState) {
  spdlog::set_level(spdlog::level::warn);
  SimRun r = base_run(7);
  Script sc;
  size_t retries = 0, largest_reply = 0;
  constexpr int kFlood = 3000;
  sc.script = [&](Script& s, EventLoop& loop, uint16_t port) {
    sim::Rng rng(99);
    // Spoofed sources: many addresses (virtual peers), each INITIAL with
    // no cookie, a forged cookie, or garbage. None ever answers a RETRY.
    std::vector<sim::DatagramPeer*> peers;
    for (int i = 0; i < 50; ++i) {
      peers.push_back(s.world->datagram_peer());
      peers.back()->on_datagram = [&](uint16_t, std::string_view d) {
        ++retries;
        largest_reply = std::max(largest_reply, d.size());
      };
    }
    for (int i = 0; i < kFlood; ++i) {
      std::string d;
      rudp::begin_datagram(d, rudp::PacketType::kInitial, 0);
      rudp::Initial in;
      in.src_id = static_cast<uint32_t>(rng.below(1u << 31)) + 1;
      if (i % 3 == 1) {
        in.cookie.resize(rudp::kCookieSize);
        for (char& c : in.cookie) c = static_cast<char>(rng.below(256));
      }
      rudp::write_initial(d, in);
      rudp::seal_datagram(d);
      if (i % 3 == 2) d[20 + rng.below(d.size() - 20)] ^= 0x40;  // corrupt: dropped at the checksum
      peers[rng.below(peers.size())]->send_to(port, d);
    }
    // Meanwhile a real client connects and is served.
    Hooks* h = nullptr;
    rudp::Client& c = s.client(port, &h);
    h->open = [](Connection& conn) { conn.send("hello"); };
    h->message = [&s, &loop](Connection& conn, std::string_view d) {
      if (d != "hello") s.fail("echo: {}", d);
      if (s.server->accepted_count() != 1) {
        s.fail("{} connections accepted (flood made state)", s.server->accepted_count());
      }
      conn.close();
      loop.run_after(std::chrono::seconds(2), [&s] { s.done(); });
    };
    c.connect([&s](int rc) {
      if (rc < 0) s.fail("connect under flood: {}", rc);
    });
  };
  sc.server_hooks.message = [](Connection& c, std::string_view d) { c.send(d); };
  expect_clean(run(r, sc));
  // Every spoofed INITIAL that passed the checksum got at most one RETRY,
  // never larger than the INITIAL: no amplification, no state.
  EXPECT_LE(retries, static_cast<size_t>(kFlood) * 2 / 3);
  EXPECT_GT(retries, static_cast<size_t>(kFlood) / 2);
  EXPECT_LE(largest_reply, rudp::kInitialSize);
}

TEST(RudpLifecycle, PausedReaderHoldsSenderBackWithBoundedMemory) {
  spdlog::set_level(spdlog::level::warn);
  SimRun r = base_run(11);
  r.faults.loss = 0.02;
  r.options.window = 256 << 10;
  r.options.send_buffer = 256 << 10;
  Script sc;
  sc.options = r.options;
  constexpr size_t kMsg = 32 << 10, kCount = 256;  // 8 MiB
  Connection* server_conn = nullptr;
  size_t got = 0, high_waters = 0;
  uint64_t max_buffered = 0;
  std::string want(kMsg, 'x');
  sc.server_hooks.open = [&](Connection& c) {
    server_conn = &c;
    c.set_reading(false);
  };
  sc.server_hooks.close = [&](Connection&, CloseReason, int) { server_conn = nullptr; };
  sc.server_hooks.message = [&](Connection& c, std::string_view d) {
    if (d.size() != kMsg || d[0] != static_cast<char>('a' + got % 26)) {
      sc.fail("message {} wrong", got);
      c.abort();
    }
    ++got;
    if (got == kCount) c.send("done");
  };
  sc.script = [&](Script& s, EventLoop& loop, uint16_t port) {
    Hooks* h = nullptr;
    rudp::Client& c = s.client(port, &h);
    ConnectionLimits lim;
    h->open = [&](Connection& conn) {
      for (size_t i = 0; i < kCount; ++i) {
        std::string m(kMsg, static_cast<char>('a' + i % 26));
        if (!conn.send(m)) s.fail("send {} refused", i);
      }
    };
    h->high_water = [&](Connection&, size_t) { ++high_waters; };
    h->message = [&s, &loop](Connection& conn, std::string_view d) {
      if (d != "done") s.fail("reply {}", d);
      conn.close();
      loop.run_after(std::chrono::seconds(2), [&s] { s.done(); });
    };
    c.connect([&s](int rc) {
      if (rc < 0) s.fail("connect: {}", rc);
    });
    // Watch memory while paused; resume after 20 s.
    loop.run_every(std::chrono::milliseconds(100), [&] {
      if (!server_conn) return;
      if (auto st = rudp::stats(*server_conn)) {
        max_buffered = std::max(max_buffered, st->recv_buffered);
      }
    });
    loop.run_after(std::chrono::seconds(20), [&] {
      if (s.stopped) return;
      if (got != 0) s.fail("{} messages delivered while paused", got);
      Connection* cc = c.connection();
      if (!cc || cc->pending_output() == 0) s.fail("sender not held back");
      if (server_conn) server_conn->set_reading(true);
    });
  };
  expect_clean(run(r, sc));
  EXPECT_EQ(got, kCount);
  EXPECT_GE(high_waters, 1u);
  // What the paused side holds never exceeds the window it advertised.
  EXPECT_LE(max_buffered, r.options.window);
  EXPECT_GT(max_buffered, r.options.window / 2);
}

TEST(RudpLifecycle, PeerThatNeverFinishesIsResetAfterCloseTimeout) {
  spdlog::set_level(spdlog::level::warn);
  SimRun r = base_run(3);
  r.options.close_timeout = std::chrono::milliseconds(2000);
  Script sc;
  sc.options = r.options;
  CloseReason server_reason{};
  int server_err = 0;
  double closed_at = 0, reset_at = 0;
  sc.server_hooks.ignore_peer_shutdown = true;
  sc.server_hooks.message = [](Connection& c, std::string_view d) { c.send(d); };
  sc.server_hooks.close = [&](Connection&, CloseReason rr, int e) {
    server_reason = rr;
    server_err = e;
    reset_at = sc.seconds();
    sc.loop->run_after(std::chrono::seconds(1), [&] { sc.done(); });
  };
  sc.script = [&](Script& s, EventLoop&, uint16_t port) {
    Hooks* h = nullptr;
    rudp::Client& c = s.client(port, &h);
    h->open = [](Connection& conn) { conn.send("x"); };
    h->message = [&](Connection& conn, std::string_view) {
      closed_at = s.seconds();
      conn.close();
    };
    c.connect([&s](int rc) {
      if (rc < 0) s.fail("connect: {}", rc);
    });
  };
  expect_clean(run(r, sc));
  std::printf("reset %.3f s after the client's close\n", reset_at - closed_at);
  EXPECT_EQ(server_reason, CloseReason::kPeerReset);
  EXPECT_EQ(server_err, -ECONNRESET);
  EXPECT_GE(reset_at - closed_at, 1.9);
  EXPECT_LE(reset_at - closed_at, 3.0);
}

TEST(RudpLifecycle, VanishedPeerTimesOut) {
  spdlog::set_level(spdlog::level::warn);
  SimRun r = base_run(5);
  r.options.idle_timeout = std::chrono::milliseconds(4000);
  r.options.keepalive = std::chrono::milliseconds(1000);
  Script sc;
  sc.options = r.options;
  double gone_at = 0, closed_at = 0;
  int err = 0;
  sc.server_hooks.message = [](Connection& c, std::string_view d) { c.send(d); };
  sc.server_hooks.close = [&](Connection&, CloseReason, int e) {
    err = e;
    closed_at = sc.seconds();
    sc.done();
  };
  sc.script = [&](Script& s, EventLoop&, uint16_t port) {
    Hooks* h = nullptr;
    rudp::Client& c = s.client(port, &h);
    h->open = [](Connection& conn) { conn.send("x"); };
    h->message = [&](Connection&, std::string_view) {
      // The client's host vanishes: nothing more from or to it.
      gone_at = s.seconds();
      s.world->blackhole(c.local_port());
    };
    c.connect([&s](int rc) {
      if (rc < 0) s.fail("connect: {}", rc);
    });
  };
  expect_clean(run(r, sc));
  EXPECT_EQ(err, -ETIMEDOUT);
  EXPECT_GE(closed_at - gone_at, 3.9);
  EXPECT_LE(closed_at - gone_at, 4.5);
}

TEST(RudpLifecycle, SilentPeerIsDroppedByIdleDetectionDespiteKeepalives) {
  // The heartbeat server's rule with rudp: a peer that sends no messages
  // for its window is dropped, although the transport's PINGs keep the
  // connection itself alive; an active peer stays.
  spdlog::set_level(spdlog::level::warn);
  SimRun r = base_run(9);
  r.faults.loss = 0.05;
  r.options.keepalive = std::chrono::milliseconds(500);
  r.server.idle.reader = std::chrono::milliseconds(3000);
  r.server.idle_close = true;
  Script sc;
  sc.options = r.options;
  std::vector<std::pair<CloseReason, double>> closes;
  double silent_since = 0;
  sc.server_hooks.message = [](Connection&, std::string_view) {};
  sc.server_hooks.close = [&](Connection&, CloseReason why, int) {
    closes.emplace_back(why, sc.seconds());
  };
  sc.script = [&](Script& s, EventLoop& loop, uint16_t port) {
    for (int i = 0; i < 2; ++i) {
      Hooks* h = nullptr;
      rudp::Client& c = s.client(port, &h);
      c.connect([&s](int rc) {
        if (rc < 0) s.fail("connect: {}", rc);
      });
    }
    // Both send every 500 ms; the first stops at 5 s.
    loop.run_every(std::chrono::milliseconds(500), [&] {
      for (size_t i = 0; i < s.clients.size(); ++i) {
        Connection* conn = s.clients[i]->connection();
        if (!conn || !conn->is_open()) continue;
        if (i == 0 && s.seconds() >= 5) {
          if (silent_since == 0) silent_since = s.seconds();
          continue;
        }
        conn->send("beat");
      }
    });
    loop.run_after(std::chrono::seconds(15), [&s] { s.done(); });
  };
  expect_clean(run(r, sc));
  ASSERT_GE(closes.size(), 1u);
  EXPECT_EQ(closes[0].first, CloseReason::kIdle);
  // Dropped within its window (3 s after its last message), not before.
  EXPECT_GE(closes[0].second - silent_since, 2.5);
  EXPECT_LE(closes[0].second - silent_since, 4.0);
  // The active one lasted until the server stopped.
  ASSERT_EQ(closes.size(), 2u);
  EXPECT_EQ(closes[1].first, CloseReason::kServerStop);
}

// Sends 1000 unreliable messages, one per 5 ms; returns the sequence
// numbers the server got, in the order it got them.
std::vector<uint32_t> unreliable_run(uint64_t seed, std::chrono::milliseconds jitter) {
  SimRun r = base_run(seed);
  r.faults.loss = 0.10;
  r.faults.duplicate = 0.10;
  r.faults.max_delay = jitter;
  Script sc;
  sc.options = r.options;
  std::vector<uint32_t> got;
  sc.server_hooks.message = [&](Connection&, std::string_view d) {
    uint32_t n = 0;
    if (d.size() != 64) return;
    std::memcpy(&n, d.data(), 4);
    got.push_back(n);
  };
  sc.script = [&](Script& s, EventLoop& loop, uint16_t port) {
    Hooks* h = nullptr;
    rudp::Client& c = s.client(port, &h);
    c.connect([&s](int rc) {
      if (rc < 0) s.fail("connect: {}", rc);
    });
    auto n = std::make_shared<uint32_t>(0);
    loop.run_every(std::chrono::milliseconds(5), [&, n] {
      if (s.stopped) return;
      Connection* conn = c.connection();
      if (!conn || *n >= 1000) return;
      std::string m(64, 'u');
      std::memcpy(m.data(), n.get(), 4);
      if (!conn->send_unreliable(m)) s.fail("send_unreliable refused");
      ++*n;
    });
    loop.run_after(std::chrono::seconds(10), [&s] { s.done(); });
  };
  expect_clean(run(r, sc));
  return got;
}

TEST(RudpLifecycle, UnreliableMessagesArriveAtMostOnceInOrder) {
  spdlog::set_level(spdlog::level::warn);
  // Jitter below the sending interval: little reordering, so about the
  // loss rate goes missing.
  std::vector<uint32_t> mild = unreliable_run(13, std::chrono::milliseconds(4));
  // Jitter six times the interval: many a message is overtaken by a later
  // one, and then dropped on arrival (never delivered out of its place).
  std::vector<uint32_t> wild = unreliable_run(14, std::chrono::milliseconds(30));
  for (const auto* got : {&mild, &wild}) {
    for (size_t i = 1; i < got->size(); ++i) {
      ASSERT_GT((*got)[i], (*got)[i - 1]) << "at " << i;
    }
  }
  std::printf("unreliable: %zu of 1000 delivered with 4 ms jitter, %zu with 30 ms\n",
              mild.size(), wild.size());
  EXPECT_GT(mild.size(), 850u);
  EXPECT_LT(mild.size(), 970u);
  EXPECT_GT(wild.size(), 300u);
  EXPECT_LT(wild.size(), mild.size());
}

TEST(RudpLifecycle, ReconnectsOnOneSocketNeverMeetTheOldConnection) {
  spdlog::set_level(spdlog::level::warn);
  SimRun r = base_run(17);
  r.faults.duplicate = 0.3;
  r.faults.max_delay = std::chrono::milliseconds(40);  // late copies of the old one
  Script sc;
  sc.options = r.options;
  int rounds = 0, server_opens = 0;
  std::function<void()> go;  // outlives the run (a self-capturing pointer leaked)
  sc.server_hooks.open = [&](Connection&) { ++server_opens; };
  sc.server_hooks.message = [](Connection& c, std::string_view d) { c.send(d); };
  sc.script = [&](Script& s, EventLoop& loop, uint16_t port) {
    Hooks* h = nullptr;
    rudp::Client& c = s.client(port, &h);
    go = [&] {
      if (s.stopped) return;
      c.connect([&](int rc) {
        if (rc < 0) s.fail("connect {}: {}", rounds, rc);
      });
    };
    h->open = [&](Connection& conn) {
      conn.send(fmt::format("round {}", rounds));
    };
    h->message = [&](Connection& conn, std::string_view d) {
      if (d != fmt::format("round {}", rounds)) s.fail("round {}: echo {}", rounds, d);
      conn.close();
    };
    h->close = [&](Connection&, CloseReason, int) {
      if (++rounds < 10) {
        loop.run_after(std::chrono::milliseconds(1), [&go] { go(); });
      } else {
        loop.run_after(std::chrono::seconds(2), [&s] { s.done(); });
      }
    };
    go();
  };
  expect_clean(run(r, sc));
  EXPECT_EQ(rounds, 10);
  EXPECT_EQ(server_opens, 10);
}

}  // namespace
}  // namespace sluice::rudptest
