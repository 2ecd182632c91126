// enet_bulk: the congestion-control bench's ENet peer (perf/ccbench.py),
// from Debian's libenet-dev. Bulk: the client sends --message-byte
// reliable packets (ENET_PACKET_FLAG_RELIABLE, channel 0) for --seconds,
// then an end marker, and the server answers with what it received (the
// wire format and the JSON lines: perf/peers/bench_common.h). Latency: a
// small reliable message per connection (peer) every --interval-ms, each
// echoed by the server and timed, as perf/msg_rtt.
//
//   enet_bulk --server --port 9000 [--seconds 30 --json srv.jsonl]
//   enet_bulk --host 10.201.0.2 --port 9000 --seconds 30 --json out.jsonl
//   enet_bulk --mode latency --host 10.201.0.2 --port 9000 --conns 4 --seconds 20
//
// ENet as it is: its reliable window is at most 64 KiB in flight
// (ENET_PROTOCOL_MAXIMUM_WINDOW_SIZE), scaled down further by its packet
// throttle (which backs off when the RTT rises above its running mean), so
// its bulk rate is bounded by ~64 KiB per RTT whatever the link. No
// bandwidth limits are set (0 = unlimited) and the throttle keeps its
// defaults; the peer timeout is raised so that long lossy links do not
// disconnect. Retransmissions: ENet counts a peer's timed-out reliable
// packets (packetsLost, reset every 10 s); they are summed as they come and
// reported over the host's UDP packets sent.
#include <enet/enet.h>

#include <csignal>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "perf/peers/bench_common.h"

namespace {

using namespace peers::bench;
volatile std::sig_atomic_t g_stop = 0;

std::string peer_name(const ENetPeer* p) {
  char ip[64] = "?";
  enet_address_get_host_ip(&p->address, ip, sizeof ip);
  return std::string(ip) + ":" + std::to_string(p->address.port);
}

void send(ENetPeer* peer, const void* data, size_t n) {
  ENetPacket* pk = enet_packet_create(data, n, ENET_PACKET_FLAG_RELIABLE);
  if (enet_peer_send(peer, 0, pk) != 0) enet_packet_destroy(pk);
}

// packetsLost is reset every ENET_PEER_PACKET_LOSS_INTERVAL: add what is new.
struct LossCounter {
  uint64_t total = 0;
  uint32_t last = 0;
  void poll(const ENetPeer* p) {
    total += p->packetsLost >= last ? p->packetsLost - last : p->packetsLost;
    last = p->packetsLost;
  }
};

int run_server(const Options& o) {
  ENetAddress addr{};
  if (enet_address_set_host(&addr, o.host.c_str()) != 0) addr.host = ENET_HOST_ANY;
  addr.port = o.port;
  ENetHost* host = enet_host_create(&addr, 256, 1, 0, 0);
  if (!host) {
    std::fprintf(stderr, "enet_bulk: cannot listen on %s:%u\n", o.host.c_str(), o.port);
    return 1;
  }
  std::map<ENetPeer*, Receiver> recv;
  ENetEvent ev;
  while (!g_stop) {
    if (enet_host_service(host, &ev, 10) <= 0) continue;
    do {
      const auto now = Clock::now();
      if (ev.type == ENET_EVENT_TYPE_CONNECT) {
        enet_peer_timeout(ev.peer, 0, 30000, 60000);
        recv[ev.peer] = Receiver{};
      } else if (ev.type == ENET_EVENT_TYPE_DISCONNECT) {
        recv[ev.peer].finish_window(now, o, "enet", peer_name(ev.peer));
        recv.erase(ev.peer);
      } else if (ev.type == ENET_EVENT_TYPE_RECEIVE) {
        const auto* d = ev.packet->data;
        const size_t n = ev.packet->dataLength;
        Receiver& r = recv[ev.peer];
        if (r.window_over(now, o)) r.finish_window(now, o, "enet", peer_name(ev.peer));
        if (n > 0 && d[0] == 'D') {
          r.on_data(n, now, o);
        } else if (n > 0 && d[0] == 'E') {
          r.finish_window(now, o, "enet", peer_name(ev.peer));
          const std::string a = r.answer(now, o);
          send(ev.peer, a.data(), a.size());
        } else if (n > 0 && d[0] == 'P') {
          send(ev.peer, d, n);
        }
        enet_packet_destroy(ev.packet);
      }
    } while (enet_host_check_events(host, &ev) > 0);
  }
  enet_host_flush(host);
  enet_host_destroy(host);
  return 0;
}

ENetPeer* connect(ENetHost* host, const Options& o) {
  ENetAddress addr{};
  if (enet_address_set_host(&addr, o.host.c_str()) != 0) return nullptr;
  addr.port = o.port;
  ENetPeer* p = enet_host_connect(host, &addr, 1, 0);
  if (p) enet_peer_timeout(p, 0, 30000, 60000);
  return p;
}

// Services until every peer is connected (or 10 s).
bool wait_connected(ENetHost* host, size_t n) {
  size_t up = 0;
  ENetEvent ev;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (up < n && Clock::now() < deadline && !g_stop) {
    if (enet_host_service(host, &ev, 10) > 0 && ev.type == ENET_EVENT_TYPE_CONNECT) ++up;
  }
  return up == n;
}

int run_bulk(const Options& o) {
  ENetHost* host = enet_host_create(nullptr, 1, 1, 0, 0);
  ENetPeer* peer = host ? connect(host, o) : nullptr;
  if (!peer || !wait_connected(host, 1)) {
    std::fprintf(stderr, "enet_bulk: cannot connect to %s:%u\n", o.host.c_str(), o.port);
    return 1;
  }
  std::vector<uint8_t> buf(o.message);
  std::mt19937_64 rng(o.seed);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  buf[0] = 'D';
  BulkResult r;
  LossCounter lost;
  const auto start = Clock::now(), stop = start + Receiver::dur(o.seconds);
  bool ended = false, answered = false;
  Clock::time_point end_at;
  ENetEvent ev;
  while (!answered && !g_stop) {
    const auto now = Clock::now();
    if (!ended && now >= stop) {
      ended = true;
      end_at = now;
      r.send_seconds = std::chrono::duration<double>(now - start).count();
      send(peer, "E", 1);
    }
    if (ended && now - end_at > Receiver::dur(o.drain)) {
      std::fprintf(stderr, "enet_bulk: no answer %.0f s after sending stopped\n", o.drain);
      break;
    }
    // Keep ENet's queue short but never empty: it sends what its window allows.
    if (!ended) {
      while (enet_list_size(&peer->outgoingCommands) < 64) {
        send(peer, buf.data(), buf.size());
        r.sent += buf.size();
      }
    }
    lost.poll(peer);
    if (enet_host_service(host, &ev, 1) > 0) {
      do {
        if (ev.type == ENET_EVENT_TYPE_RECEIVE) {
          unsigned long long bytes = 0, warm = 0;
          double secs = 0, warm_secs = 0;
          std::string a(reinterpret_cast<const char*>(ev.packet->data), ev.packet->dataLength);
          if (std::sscanf(a.c_str(), "R %llu %lf %llu %lf", &bytes, &secs, &warm, &warm_secs) == 4) {
            r.recv_bytes = bytes;
            r.recv_seconds = secs;
            r.warm_bytes = warm;
            r.warm_seconds = warm_secs;
            r.verified = bytes == r.sent;
            answered = true;
          }
          enet_packet_destroy(ev.packet);
        } else if (ev.type == ENET_EVENT_TYPE_DISCONNECT) {
          std::fprintf(stderr, "enet_bulk: disconnected\n");
          answered = true;
        }
      } while (!answered && enet_host_check_events(host, &ev) > 0);
    }
  }
  lost.poll(peer);
  r.total_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.retransmitted = lost.total;
  r.retx_overhead = host->totalSentPackets > lost.total
                        ? static_cast<double>(lost.total) / (host->totalSentPackets - lost.total)
                        : -1;
  r.srtt_ms = peer->roundTripTime;
  print_bulk("enet", o, r);
  enet_peer_disconnect_now(peer, 0);
  enet_host_destroy(host);
  return r.verified ? 0 : 1;
}

int run_latency(const Options& o) {
  ENetHost* host = enet_host_create(nullptr, o.conns, 1, 0, 0);
  std::vector<ENetPeer*> peers;
  for (size_t i = 0; host && i < o.conns; ++i) peers.push_back(connect(host, o));
  if (!host || !wait_connected(host, o.conns)) {
    std::fprintf(stderr, "enet_bulk: cannot connect to %s:%u\n", o.host.c_str(), o.port);
    return 1;
  }
  std::map<ENetPeer*, size_t> index;
  for (size_t i = 0; i < peers.size(); ++i) index[peers[i]] = i;
  std::vector<std::map<uint32_t, Clock::time_point>> sent(o.conns);
  std::vector<Clock::time_point> next(o.conns);
  std::vector<uint32_t> seq(o.conns, 0);
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<size_t> size(o.min_size, o.max_size);
  sluice::perf::Histogram hist{3};
  uint64_t wrong = 0;
  const auto interval = Receiver::dur(o.interval_ms / 1000);
  const auto start = Clock::now(), measure = start + Receiver::dur(o.warmup),
             stop = measure + Receiver::dur(o.seconds), quit = stop + std::chrono::seconds(5);
  for (size_t i = 0; i < o.conns; ++i) next[i] = start + interval * i / o.conns;
  std::vector<LossCounter> lost(o.conns);
  ENetEvent ev;
  while (!g_stop) {
    const auto now = Clock::now();
    if (now >= quit) break;
    for (size_t i = 0; i < o.conns && now < stop; ++i) {
      if (now < next[i]) continue;
      next[i] += interval;
      std::string m(size(rng), '\0');
      m[0] = 'P';
      const uint32_t s = seq[i]++;
      std::memcpy(m.data() + 1, &s, 4);
      for (size_t k = 5; k < m.size(); ++k) m[k] = static_cast<char>(rng());
      if (now >= measure) sent[i][s] = now;
      send(peers[i], m.data(), m.size());
    }
    bool all_done = now >= stop;
    for (auto& s : sent) all_done = all_done && s.empty();
    if (all_done) break;
    for (size_t i = 0; i < o.conns; ++i) lost[i].poll(peers[i]);
    if (enet_host_service(host, &ev, 1) <= 0) continue;
    do {
      if (ev.type != ENET_EVENT_TYPE_RECEIVE) continue;
      const auto t = Clock::now();
      auto it = index.find(ev.peer);
      uint32_t s = 0;
      if (it == index.end() || ev.packet->dataLength < 5 || ev.packet->data[0] != 'P') {
        ++wrong;
      } else {
        std::memcpy(&s, ev.packet->data + 1, 4);
        auto& m = sent[it->second];
        auto f = m.find(s);
        if (f != m.end()) {
          hist.record(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(t - f->second).count()));
          m.erase(f);
        }
      }
      enet_packet_destroy(ev.packet);
    } while (enet_host_check_events(host, &ev) > 0);
  }
  uint64_t unanswered = 0;
  for (auto& s : sent) unanswered += s.size();
  uint64_t retx = 0;
  for (auto& l : lost) retx += l.total;
  print_latency("enet", o, hist, wrong, unanswered, retx);
  for (auto* p : peers) enet_peer_disconnect_now(p, 0);
  enet_host_destroy(host);
  return wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"enet_bulk: ENet bulk transfer / small-message RTT for the congestion-control bench"};
  Options o;
  add_options(app, o);
  CLI11_PARSE(app, argc, argv);
  if (enet_initialize() != 0) {
    std::fprintf(stderr, "enet_bulk: enet_initialize failed\n");
    return 1;
  }
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGINT, [](int) { g_stop = 1; });
  const int rc = o.server ? run_server(o) : o.mode == "bulk" ? run_bulk(o) : run_latency(o);
  enet_deinitialize();
  return rc;
}
