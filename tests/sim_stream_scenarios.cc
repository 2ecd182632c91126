// Stream scenarios: echo, backpressure, the output cap, graceful stop.
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "codec/length_field.h"
#include "core/connection.h"
#include "tests/sim_scenarios.h"

namespace sluice::simtest {

using namespace std::chrono_literals;
using sim::StreamPeer;

namespace {

// Echoes every message (frame, or raw bytes without a codec) and counts
// closes by reason.
class EchoApp final : public Handler {
 public:
  void on_message(Connection& c, std::string_view data) override { c.send(data); }
  void on_close(Connection&, CloseReason reason, int) override {
    ++closes[reason];
    ++closed;
  }
  std::map<CloseReason, int> closes;
  size_t closed = 0;
};

}  // namespace

// ---- echo ----
// Peers send random length-framed messages and read the echoes; once every
// echo is back they shut down and expect EOF. Each peer ends with exactly
// its messages echoed and EOF, or with a reset (then what it got is a
// prefix of what it sent, and the server's handler heard the error).
Outcome run_echo(uint64_t seed) {
  sim::Rng pick(seed ^ 0xec40);
  sim::SimFaults f = shuffled_network(pick);
  f.reset = pick.chance(0.3) ? 0.2 : 0.0;
  f.reset_within = std::chrono::milliseconds(pick.range(1, 100));
  f.jump = pick.chance(0.3) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 2000));
  Harness h(seed, f);
  EchoApp app;
  struct PeerRun {
    StreamPeer* p;
    std::vector<std::string> sent;
    std::vector<std::string> got;
    std::string buf;
    bool done = false;
  };
  std::vector<PeerRun> peers(pick.range(1, 4));
  auto all_done = [&] {
    for (const PeerRun& r : peers) {
      if (!r.done) return;
    }
    h.finish();
  };
  auto script = [&](Server& server) {
    h.deadline(120s);
    for (PeerRun& r : peers) {
      PeerRun* rp = &r;
      r.p = h.world().connect(server.port());
      const size_t n = h.rng().range(1, 20);
      for (size_t i = 0; i < n; ++i) r.sent.push_back(random_bytes(h.rng(), h.rng().range(0, 2000)));
      r.p->on_data = [&, rp](std::string_view d) {
        rp->buf.append(d);
        unframe(rp->buf, rp->got);
        if (rp->got.size() > rp->sent.size()) h.fail("peer {}: more echoes than messages", rp->p->id());
        if (rp->got.size() == rp->sent.size()) rp->p->shutdown();
      };
      r.p->on_eof = [&, rp] {
        rp->done = true;
        all_done();
      };
      r.p->on_reset = [&, rp](int) {
        rp->done = true;
        all_done();
      };
      // Messages go out at random moments, each in one write.
      SimClock::duration t{};
      for (const std::string& m : r.sent) {
        t += std::chrono::microseconds(h.rng().range(0, 3000));
        h.world().after(t, [rp, m] { rp->p->write(frame(m)); });
      }
    }
  };
  auto check = [&] {
    size_t clean = 0;
    for (PeerRun& r : peers) {
      const size_t k = std::min(r.got.size(), r.sent.size());
      for (size_t i = 0; i < k; ++i) {
        if (r.got[i] != r.sent[i]) {
          h.fail("peer {}: echo {} differs ({} bytes, sent {})", r.p->id(), i, r.got[i].size(),
                 r.sent[i].size());
          break;
        }
      }
      if (r.p->error() == 0) {
        ++clean;
        if (!r.p->got_eof()) h.fail("peer {}: no EOF and no error", r.p->id());
        if (r.got.size() != r.sent.size()) {
          h.fail("peer {}: EOF after {} of {} echoes, no error", r.p->id(), r.got.size(),
                 r.sent.size());
        }
        if (!r.buf.empty()) h.fail("peer {}: {} stray bytes", r.p->id(), r.buf.size());
      }
    }
    // Every reset the core saw reached the handler as an error, and only
    // resets did: the others closed in order.
    const int errors = app.closes[CloseReason::kPeerReset];
    if (static_cast<uint64_t>(errors) > h.world().stats().resets) {
      h.fail("{} connections closed as reset, {} resets", errors, h.world().stats().resets);
    }
    if (static_cast<size_t>(app.closes[CloseReason::kPeerClosed]) < clean) {
      h.fail("{} clean peers, but {} orderly closes", clean, app.closes[CloseReason::kPeerClosed]);
    }
    if (h.world().stats().streams != app.closed) {
      h.fail("{} streams accepted, {} closed", h.world().stats().streams, app.closed);
    }
  };
  ServerOptions o;
  return run_server(h, o, std::make_unique<codec::LengthFieldCodec>(codec::length_prefix_options()),
                    app, script, check);
}

// ---- backpressure ----
// A peer sends far more than high_water while not reading, then starts
// reading: the server pauses reading at high water (on_high_water with at
// least high_water owed), resumes at low water (on_drain), and the peer
// ends up with exactly what it sent, then EOF.
Outcome run_backpressure(uint64_t seed) {
  sim::Rng pick(seed ^ 0xbac4);
  sim::SimFaults f = shuffled_network(pick);
  f.max_window = std::min<size_t>(f.max_window, 64 * 1024);
  f.jump = pick.chance(0.3) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 1000));
  Harness h(seed, f);
  ServerOptions o;
  o.limits.high_water = pick.range(8, 128) * 1024;
  o.limits.low_water = o.limits.high_water / pick.range(2, 8);
  // More than the window can hold plus high water: the rest must wait in
  // the server's output while the peer does not read.
  const size_t total = f.max_window + o.limits.high_water * pick.range(2, 8) + pick.range(0, 4096);
  struct App final : Handler {
    Harness* h;
    size_t high_water = 0;
    int highs = 0, drains = 0;
    bool paused = false;
    void on_message(Connection& c, std::string_view d) override { c.send(d); }
    void on_high_water(Connection& c, size_t pending) override {
      (void)c;
      if (paused) h->fail("on_high_water twice without on_drain");
      if (pending < high_water) h->fail("on_high_water with {} owed < {}", pending, high_water);
      paused = true;
      ++highs;
    }
    void on_drain(Connection& c) override {
      (void)c;
      if (!paused) h->fail("on_drain without on_high_water");
      paused = false;
      ++drains;
    }
  } app;
  app.h = &h;
  app.high_water = o.limits.high_water;
  std::string sent = random_bytes(pick, total);
  std::string got;
  StreamPeer* p = nullptr;
  auto script = [&](Server& server) {
    h.deadline(120s);
    p = h.world().connect(server.port());
    p->set_reading(false);
    for (size_t pos = 0; pos < sent.size();) {
      const size_t n = std::min<size_t>(sent.size() - pos, h.rng().range(1, 64 * 1024));
      p->write(std::string_view(sent).substr(pos, n));
      pos += n;
    }
    h.world().after(std::chrono::milliseconds(h.rng().range(50, 500)), [&] { p->set_reading(true); });
    p->on_data = [&](std::string_view d) {
      got.append(d);
      if (got.size() == sent.size()) p->shutdown();
    };
    p->on_eof = [&] { h.finish(); };
    p->on_reset = [&](int err) {
      h.fail("peer reset: {}", err);
      h.finish();
    };
  };
  auto check = [&] {
    if (got != sent) h.fail("peer got {} of {} bytes (or different bytes)", got.size(), sent.size());
    if (!p->got_eof()) h.fail("peer: no EOF");
    if (app.highs == 0) h.fail("no on_high_water for {} bytes, high water {}", total, o.limits.high_water);
    if (app.drains != app.highs) h.fail("{} high waters, {} drains", app.highs, app.drains);
  };
  return run_server(h, o, nullptr, app, script, check);
}

// ---- output cap ----
// The server pushes to a peer that never reads: it is closed as too slow,
// having queued no more than the cap (plus the send that crossed it).
Outcome run_output_cap(uint64_t seed) {
  sim::Rng pick(seed ^ 0xca9);
  sim::SimFaults f = shuffled_network(pick);
  f.max_window = std::min<size_t>(f.max_window, 64 * 1024);
  Harness h(seed, f);
  ServerOptions o;
  o.limits.high_water = pick.range(8, 64) * 1024;
  o.limits.low_water = o.limits.high_water / 2;
  o.limits.max_output = 1;  // raised to the floor: 2 x (high water + 64 KiB)
  const size_t chunk = pick.range(1, 32) * 1024;
  struct App final : Handler {
    Harness* h;
    size_t chunk = 0;
    size_t cap = 0;
    size_t max_owed = 0;
    int too_slow = 0;
    void on_open(Connection& c) override {
      cap = c.output_cap();
      push(c);
    }
    void push(Connection& c) {
      // Every millisecond another chunk, until send() is refused.
      if (!c.send(std::string(chunk, 'x'))) return;
      max_owed = std::max(max_owed, c.pending_output());
      const uint64_t id = c.id();
      Connection* cp = &c;
      c.loop().run_after(1ms, [this, cp, id] {
        if (live.count(id)) push(*cp);
      });
    }
    void on_message(Connection&, std::string_view) override {}
    void on_close(Connection& c, CloseReason reason, int) override {
      live.erase(c.id());
      if (reason == CloseReason::kTooSlow) ++too_slow;
      h->finish();
    }
    std::set<uint64_t> live;
  } app;
  struct Track final : Handler {
    App* app;
    void on_open(Connection& c) override {
      app->live.insert(c.id());
      app->on_open(c);
    }
    void on_message(Connection& c, std::string_view d) override { app->on_message(c, d); }
    void on_close(Connection& c, CloseReason r, int e) override { app->on_close(c, r, e); }
  } track;
  app.h = &h;
  app.chunk = chunk;
  track.app = &app;
  StreamPeer* p = nullptr;
  auto script = [&](Server& server) {
    h.deadline(60s);
    p = h.world().connect(server.port());
    p->set_reading(false);
  };
  auto check = [&] {
    if (app.too_slow != 1) h.fail("not closed as too slow ({} times)", app.too_slow);
    if (app.max_owed > app.cap + chunk) {
      h.fail("owed {} bytes, cap {} (+ one {}-byte send)", app.max_owed, app.cap, chunk);
    }
  };
  return run_server(h, o, nullptr, track, script, check);
}

}  // namespace sluice::simtest
