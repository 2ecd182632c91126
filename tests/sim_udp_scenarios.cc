// Datagram scenarios: echo, and the heartbeat service over UDP, under
// loss, duplication and reordering.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "codec/heartbeat.h"
#include "core/event_loop.h"
#include "core/net.h"
#include "servers/heartbeat_service.h"
#include "tests/sim_scenarios.h"

namespace sluice::simtest {

using namespace std::chrono_literals;
using sim::DatagramPeer;

namespace {
std::chrono::milliseconds ms_of(SimClock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

sim::SimFaults lossy(sim::Rng& pick) {
  sim::SimFaults f;
  f.max_delay = std::chrono::microseconds(pick.range(0, 20000));
  f.loss = pick.chance(0.3) ? 0.0 : static_cast<double>(pick.range(0, 30)) / 100;
  f.duplicate = pick.chance(0.3) ? 0.0 : static_cast<double>(pick.range(0, 20)) / 100;
  f.jump = pick.chance(0.3) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 1000));
  return f;
}
}  // namespace

// ---- datagram echo ----
// Peers send numbered datagrams with random payloads; the server echoes
// each. Every echo a peer gets is exactly one it sent (no corruption), at
// most twice each way duplicated; the endpoint's counters match the
// world's; with neither loss nor duplication, each peer gets each of its
// datagrams back exactly once.
Outcome run_udp_echo(uint64_t seed) {
  sim::Rng pick(seed ^ 0xd6a);
  sim::SimFaults f = lossy(pick);
  Harness h(seed, f);
  struct App final : DatagramHandler {
    UdpEndpoint::Stats stats;
    size_t pending_at_close = 0;
    void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
      ep.send_to(d.addr, d.addr_len, d.data);
    }
    void on_close(UdpEndpoint& ep) override {
      stats = ep.stats();
      pending_at_close = ep.pending();
    }
  } app;
  struct PeerRun {
    DatagramPeer* p;
    std::map<std::string, int> sent;  // payload -> echoes received
    uint64_t bad = 0;
  };
  std::vector<PeerRun> peers(pick.range(1, 5));
  uint64_t total_sent = 0;
  auto script = [&](UdpServer& server) {
    h.deadline(60s);
    SimClock::duration last{};
    for (size_t i = 0; i < peers.size(); ++i) {
      PeerRun* r = &peers[i];
      r->p = h.world().datagram_peer();
      r->p->on_datagram = [r, &server](uint16_t from, std::string_view d) {
        auto it = r->sent.find(std::string(d));
        if (from != server.port() || it == r->sent.end()) {
          ++r->bad;
        } else {
          ++it->second;
        }
      };
      const size_t n = h.rng().range(1, 50);
      SimClock::duration t{};
      for (size_t k = 0; k < n; ++k) {
        t += std::chrono::microseconds(h.rng().range(0, 3000));
        // Unique per peer: its number, then random bytes.
        std::string d = fmt::format("{}:{}:", i, k) + random_bytes(h.rng(), h.rng().range(0, 1400));
        r->sent[d] = 0;
        ++total_sent;
        const uint16_t port = server.port();
        h.world().after(t, [r, d, port] { r->p->send_to(port, d); });
      }
      last = std::max(last, t);
    }
    // Everything has arrived well after the longest delay (twice: there and back).
    h.world().after(last + 2 * h.world().faults().max_delay + 1ms, [&] { h.finish(); });
  };
  auto check = [&] {
    const sim::SimStats& w = h.world().stats();
    uint64_t echoes = 0;
    for (const PeerRun& r : peers) {
      if (r.bad) h.fail("peer {}: {} datagrams that it never sent", r.p->port(), r.bad);
      for (const auto& [d, n] : r.sent) {
        echoes += n;
        if (n > 4) h.fail("peer {}: one datagram echoed {} times", r.p->port(), n);
        if (f.loss == 0 && f.duplicate == 0 && n != 1 && w.datagrams_overflow == 0) {
          h.fail("peer {}: a datagram echoed {} times on a lossless network", r.p->port(), n);
        }
      }
    }
    if (app.stats.received != w.datagrams_to_core) {
      h.fail("endpoint received {}, world delivered {}", app.stats.received, w.datagrams_to_core);
    }
    // The close flushes what was still queued when on_close ran.
    if (app.stats.sent + app.pending_at_close != app.stats.queued ||
        app.stats.queued != w.datagrams_from_core) {
      h.fail("endpoint queued {}, sent {} (+{} at close); world took {}", app.stats.queued,
             app.stats.sent, app.pending_at_close, w.datagrams_from_core);
    }
    if (app.stats.queued != app.stats.received) {
      h.fail("received {}, echoed {}", app.stats.received, app.stats.queued);
    }
    // Every datagram either way: lost, or delivered once or twice.
    const uint64_t routed = total_sent + w.datagrams_from_core;
    const uint64_t delivered = w.datagrams_to_core + w.datagrams_overflow + echoes;
    if (delivered + w.datagrams_lost != routed + w.datagrams_duplicated) {
      h.fail("datagrams do not add up: {} routed + {} duplicated != {} delivered + {} lost",
             routed, w.datagrams_duplicated, delivered, w.datagrams_lost);
    }
  };
  return run_udp_server(h, UdpServerOptions{}, app, script, check);
}

// ---- heartbeat over UDP ----
// Pingers send a PING every 1/4 interval or more often (so losing a few is
// survivable), then stop; silent peers send one PING. Drops: every silent
// peer, as timed out, no earlier than interval x misses after its last
// PING reached the server; no pinger before it stopped.
Outcome run_heartbeat_udp(uint64_t seed) {
  namespace hb = codec::heartbeat;
  sim::Rng pick(seed ^ 0x4b7d);
  sim::SimFaults f = lossy(pick);
  f.loss = std::min(f.loss, 0.1);
  f.max_delay = std::min<std::chrono::microseconds>(f.max_delay, 5000us);
  Harness h(seed, f);
  servers::HeartbeatOptions ho;
  ho.interval = std::chrono::milliseconds(pick.range(40, 300));
  ho.misses = static_cast<int>(pick.range(3, 5));
  struct PeerInfo {
    bool pinger = false;
    SimClock::time_point stops{};  // pingers: after their last PING
    int drops = 0;
  };
  std::map<std::string, PeerInfo> info;  // "127.0.0.1:port" -> info
  // Last PING arrival per peer, seen from the server's side.
  struct Spy final : DatagramHandler {
    DatagramHandler* inner;
    Harness* h;
    std::map<std::string, SimClock::time_point> last;
    void on_open(UdpEndpoint& ep) override { inner->on_open(ep); }
    void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
      const std::string who = address_name(d.addr, d.addr_len);
      last[who] = ep.loop().clock();
      inner->on_datagram(ep, d);
    }
    void on_close(UdpEndpoint& ep) override { inner->on_close(ep); }
  } spy;
  servers::HeartbeatUdpHandler service(ho, [&](const servers::PeerEvent& e) {
    if (e.kind != servers::PeerEvent::Kind::kDrop) return;
    PeerInfo& p = info[e.peer];
    ++p.drops;
    if (e.reason.rfind("timeout", 0) != 0) {
      if (e.reason != "server stopping") h.fail("peer {} dropped: {}", e.peer, e.reason);
      return;
    }
    const SimClock::duration quiet = e.at - spy.last[e.peer];
    if (p.pinger && e.at < p.stops) h.fail("pinger {} dropped at {:.3f} ms", e.peer, h.ms());
    if (quiet < ho.timeout()) {
      h.fail("peer {}: dropped {} ms after its last PING < {} ms", e.peer, ms_of(quiet).count(),
             ms_of(ho.timeout()).count());
    }
    // The UDP service checks each peer on its own idle timer and gives one
    // more window when the socket holds unread datagrams: a tick late, plus
    // the stalls meanwhile, plus one interval for its timer's granularity.
    const auto allowed =
        ho.timeout() + ho.interval + 2ms + h.world().stalled_between(spy.last[e.peer], e.at);
    if (quiet > allowed) {
      h.fail("peer {}: dropped only {} ms after its last PING (allowed {} ms)", e.peer,
             ms_of(quiet).count(), ms_of(allowed).count());
    }
  });
  spy.inner = &service;
  spy.h = &h;
  auto script = [&](UdpServer& server) {
    h.deadline(120s);
    const size_t n = h.rng().range(1, 6);
    SimClock::duration end{};
    for (size_t i = 0; i < n; ++i) {
      DatagramPeer* p = h.world().datagram_peer();
      const std::string name = fmt::format("127.0.0.1:{}", p->port());
      PeerInfo& pi = info[name];
      pi.pinger = h.rng().chance(0.6);
      const uint16_t port = server.port();
      // The first PING is sent until it gets through (loss).
      p->send_to(port, hb::view(hb::encode_ping(1, 0)));
      if (!pi.pinger) continue;
      const auto every = std::chrono::microseconds(
          h.rng().range(ho.interval.count() * 50, ho.interval.count() * 250));
      const int count = static_cast<int>(h.rng().range(1, 40));
      for (int k = 1; k <= count; ++k) {
        h.world().after(every * k, [p, port, k] { p->send_to(port, hb::view(hb::encode_ping(k + 1, 0))); });
      }
      pi.stops = h.world().now() + every * count;
      end = std::max<SimClock::duration>(end, every * count);
    }
    // Every peer has been silent long enough to be dropped, with room.
    h.world().after(end + 3 * ho.timeout() + 2 * ho.interval + 50ms, [&] { h.finish(); });
  };
  auto check = [&] {
    for (const auto& [name, p] : info) {
      // A silent peer whose only PING was lost never joined: no drop.
      const bool joined = spy.last.count(name) > 0;
      if (joined && p.drops != 1) h.fail("peer {}: dropped {} times", name, p.drops);
      if (!joined && p.drops != 0) h.fail("peer {}: never heard, dropped", name);
    }
    if (service.counters().joins != service.counters().drops) {
      h.fail("{} joins, {} drops", service.counters().joins.load(), service.counters().drops.load());
    }
  };
  return run_udp_server(h, UdpServerOptions{}, spy, script, check);
}

}  // namespace sluice::simtest
