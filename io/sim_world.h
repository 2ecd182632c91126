// A simulated network with a virtual clock: sluice's core runs on it
// unchanged (through io/sim_backend.h), against scripted peers
// (io/sim_peer.h), with every delay, segmentation, loss and stall drawn
// from one seeded generator. No sleeps: when nothing is due, the clock
// jumps to the next event. A run is reproducible from its seed.
//
// The model:
//  * Streams: a simulated client connect()s to the port of a listening
//    socket the core attached (the Server binds a real one; nothing ever
//    connects to it through the kernel). The core is handed a real
//    descriptor, one end of an AF_UNIX socketpair, so it can close,
//    shutdown(SHUT_WR) and setsockopt it as usual and tests can count
//    /proc/self/fd; the world keeps the other end only to see the core's
//    shutdown or close as EOF there. No data flows through the kernel:
//    bytes move in the world's queues, in order per direction, in
//    segments of random sizes after random delays.
//    Core -> peer: what the peer has not read plus what is in flight is
//    bounded by a per-stream window (a socket buffer); the back end's
//    sends take what fits, and sometimes less (a short send).
//    Faults: resets (the core gets -ECONNRESET, the peer on_reset).
//    Not modelled: TCP_INFO (getsockopt fails on AF_UNIX, so a sim stream
//    closes without lingering: core/connection_linger.cc detaches at once
//    when TCP_INFO fails) and the RST Linux sends when a socket is closed
//    with unread input (a sim close always ends in EOF).
//  * Datagrams: the core's bound UDP socket (a real one, never used for
//    IO) is registered by port at attach(); DatagramPeers have virtual
//    addresses 127.0.0.1:100 and up (below 1024: a port the kernel never
//    hands out for port 0, so no clash with the core's sockets). A datagram
//    goes by destination port to the core socket bound there (two core
//    endpoints can talk: both ends of an rudp test) or to a DatagramPeer.
//    Each datagram, either way, may be lost, duplicated and delayed
//    independently (so reordered). A datagram carries the ECN codepoint
//    its socket's IP_TOS / IPV6_TCLASS set (peers send Not-ECT); a socket
//    that turned IP_RECVTOS / IPV6_RECVTCLASS on before attach sees it
//    (and CE where the bottleneck marked it) in Datagram::ecn.
//  * Time: the clock starts at a fixed time point. Every wait() runs the
//    events due; when none is due it jumps to the next event (or to
//    now + timeout, whichever is first). A time jump (a stalled process)
//    moves the clock up to max_jump ahead in one wait(), running
//    everything due meanwhile first: input that arrived "during" the stall
//    is dispatched before any timer judges absence (the complete sweep of
//    io/backend.h).
//
// Determinism: one world, one back end, one loop thread (Server or
// UdpServer with threads = 1). Everything the world does happens on that
// thread in the order of its event queue (virtual time, then sequence
// number). A cross-thread post to the loop (Server::stop() from the test's
// thread) arrives at a point in virtual time that depends on real
// scheduling, so a scenario pause()s the world when it is done (the clock
// stops; wait() blocks in real time until wakeup()) and resume()s it from
// a loop-thread callback that stop() triggers (Handler::on_server_stop,
// DatagramHandler::on_close). A world starts paused for the same reason:
// resume() it from Handler::on_loop_start / DatagramHandler::on_open.
//
// Thread rules: everything is loop-thread only, except that before the
// loop starts (server.start()) the creating thread may set the world up
// (after(), connect(), datagram_peer()), and the back end's wakeup() is
// callable from any thread. The world must outlive its back end and so the
// server using it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "io/backend.h"
#include "io/sim_rng.h"

namespace sluice::sim {

using SimClock = std::chrono::steady_clock;

// What the scheduler may do; every choice is drawn from the world's seed.
// Defaults: a benign but shuffled network (segmentation, delays, short
// sends); faults that end connections or lose data are off.
struct SimFaults {
  // Streams.
  size_t max_segment = 1500;   // peer -> core bytes arrive in 1..max_segment pieces
  std::chrono::microseconds max_delay{2000};  // each segment / datagram: 0..max_delay
  double short_send = 0.25;    // a back-end send takes only part of what fits
  size_t min_window = 512;     // core -> peer bytes unread + in flight, per
  size_t max_window = 256 * 1024;  // stream, drawn from [min, max]
  // The back end calls on_detached() later (0..max_detach_delay), from a later wait(),
  // instead of inside detach() (io/backend.h allows both; a proactor with
  // operations in flight does the former): the core must stay quiet
  // between on_close and on_detached.
  double late_detach = 0;
  std::chrono::milliseconds max_detach_delay{50};
  double reset = 0;            // per stream: reset at a random time...
  std::chrono::milliseconds reset_within{200};  // ...within this after connect
  // Datagrams (each way, independently per datagram).
  double loss = 0;
  double duplicate = 0;
  // A copy arrives with one byte changed (a random bit pattern XORed in):
  // what a checksum must catch (UDP's may be off).
  double corrupt = 0;
  // Datagrams take at least this long (plus 0..max_delay): a link's
  // propagation delay under its jitter.
  std::chrono::microseconds min_delay{0};
  size_t datagram_queue = 1024;  // per socket while its reader is paused; more are dropped
  // A bottleneck for congestion-control tests: datagrams to `port` share
  // one serializer of `bps` bits/s with a drop-tail queue of `queue_bytes`
  // (the uplink), datagrams from it share another (the downlink). A
  // datagram's size on the wire counts IPv4 and UDP headers (28 bytes).
  // 0 bps: none. With ce_threshold_bytes > 0, an ECN-capable datagram
  // (sent from a socket whose IP_TOS / IPV6_TCLASS says ECT) that arrives
  // while more than that many bytes are queued is marked CE (step marking,
  // as DCTCP's AQM) -- and still dropped if the queue is full.
  struct Bottleneck {
    uint64_t bps = 0;
    size_t queue_bytes = 64 * 1024;
    uint16_t port = 0;
    size_t ce_threshold_bytes = 0;
  } bottleneck;
  // Extra propagation delay per datagram by its ports (per-flow RTTs);
  // null: none. Called on the loop thread.
  std::function<std::chrono::microseconds(uint16_t from, uint16_t to)> path_delay;
  // Time jumps: per wait(), the chance that the process "stalls".
  double jump = 0;
  std::chrono::milliseconds max_jump{3000};
};

struct SimStats {
  uint64_t events = 0;
  uint64_t streams = 0;
  uint64_t resets = 0;
  uint64_t bytes_to_core = 0;      // delivered by on_input
  uint64_t bytes_from_core = 0;    // taken by back-end sends
  uint64_t short_sends = 0;
  uint64_t datagrams_to_core = 0;  // delivered by on_datagram
  uint64_t datagrams_from_core = 0;
  uint64_t datagrams_lost = 0;
  uint64_t datagrams_duplicated = 0;
  uint64_t datagrams_corrupted = 0;
  uint64_t datagrams_overflow = 0;  // dropped: receiver's queue full
  uint64_t jumps = 0;
  uint64_t bottleneck_drops = 0;        // queue full (both directions)
  uint64_t bottleneck_max_backlog = 0;  // bytes, the uplink's largest queue
  uint64_t bottleneck_ce_marks = 0;     // datagrams marked CE (both directions)
  SimClock::duration jumped{};  // virtual time skipped by jumps, in total
};

class StreamPeer;
class DatagramPeer;
class SimBackend;

class World {
 public:
  // The fixed start of virtual time (any value works; fixed keeps runs
  // byte-for-byte identical).
  static constexpr SimClock::time_point kEpoch{std::chrono::hours(1000)};

  explicit World(uint64_t seed, SimFaults faults = {});
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  // The back end bound to this world (one per world; see Determinism).
  std::unique_ptr<io::Backend> backend();

  uint64_t seed() const { return seed_; }
  const SimFaults& faults() const { return faults_; }
  Rng& rng() { return rng_; }
  SimClock::time_point now() const { return now_; }
  const SimStats& stats() const { return stats_; }

  // Runs fn at now() + delay, from inside the back end's wait() (so on the
  // loop thread, as part of the complete sweep).
  void after(SimClock::duration delay, std::function<void()> fn);

  // Simulated clients. The world owns them; pointers stay valid for its
  // life. A connection is refused (on_reset(-ECONNREFUSED)) when nothing
  // listens on the port when the SYN arrives.
  StreamPeer* connect(uint16_t port);
  DatagramPeer* datagram_peer();
  // The peer at the other end of a stream descriptor the world handed to
  // the core (from accept until the core detaches it); null otherwise. For
  // tests that match server-side state to peers.
  StreamPeer* peer_for(int core_fd) const {
    auto it = by_fd_.find(core_fd);
    return it == by_fd_.end() ? nullptr : it->second;
  }

  // Datagrams from or to `port` vanish (a peer whose host died, a cut
  // cable), until lifted. Loop thread (or before the loop starts).
  void blackhole(uint16_t port, bool on = true) {
    if (on) {
      blackholed_.insert(port);
    } else {
      blackholed_.erase(port);
    }
  }

  // Bytes queued at the bottleneck toward faults().bottleneck.port (the
  // uplink) or from it, now (serializing included). Loop thread.
  uint64_t bottleneck_backlog(bool uplink) const;
  // The bottleneck's port, once known (a server bound to port 0). Loop thread.
  void set_bottleneck_port(uint16_t port) { faults_.bottleneck.port = port; }

  // After the loop has stopped for good (its thread joined; the caller now
  // owns the world): runs what is still in flight, up to `limit` of
  // virtual time from now, so a scenario can check what its peers finally
  // received. Returns the events run.
  int settle(SimClock::duration limit);

  // How much of [from, to] the process spent stalled (time jumps): how
  // late a timer due in that span may run through no fault of the loop.
  SimClock::duration stalled_between(SimClock::time_point from, SimClock::time_point to) const;

  // Stops / restarts virtual time (see Determinism). While paused, wait()
  // runs only what is due now and otherwise blocks until wakeup().
  // `parked`, if given, runs once on the loop thread when the loop first
  // has nothing left to do at the paused time (about to block): signal
  // the test's thread from there, so what it then posts (stop()) arrives
  // at the same point of every run.
  void pause(std::function<void()> parked = nullptr) {
    paused_ = true;
    parked_ = std::move(parked);
  }
  void resume() { paused_ = false; }
  bool paused() const { return paused_; }

 private:
  friend class SimBackend;
  friend class StreamPeer;
  friend class DatagramPeer;
  struct Event {
    SimClock::time_point at;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  struct Listener {
    io::Channel* ch;
  };
  struct Socket;  // a core datagram socket (sim_datagram.cc)
  // When a bottleneck direction's serializer is next free.
  SimClock::time_point up_free_{}, down_free_{};
  // Queues the datagram at the bottleneck if it crosses it: false when
  // the queue is full (dropped); else *wait grows by its queueing and
  // serialization time.
  // An ECN-capable datagram may be marked: *ecn becomes CE.
  bool cross_bottleneck(uint16_t from, uint16_t to, size_t bytes, SimClock::duration* wait,
                        uint8_t* ecn);

  void at(SimClock::time_point when, std::function<void()> fn);
  SimClock::duration delay();  // 0..max_delay
  // Runs every event due by t (the clock at each event's time), then sets
  // the clock to t. Returns the number run.
  int run_until(SimClock::time_point t);
  bool take_wakeup();
  void block();  // real time, until wakeup()
  static uint16_t bound_port(int fd);
  // The back end's side (SimBackend forwards here).
  int wait(std::chrono::milliseconds timeout);
  void wakeup();
  int attach(io::Channel& ch);
  void update(io::Channel& ch);
  void detach(io::Channel& ch);
  ssize_t send_now(io::Channel& ch, std::string_view bytes);
  // Streams (sim_stream.cc).
  void syn_arrives(StreamPeer* p, uint16_t port);
  void poll_core_shutdowns();
  int attach_stream(io::Channel& ch);
  void update_stream(io::Channel& ch, StreamPeer& p);
  void detach_stream(StreamPeer& p);
  // Datagrams (sim_datagram.cc).
  // ecn: the codepoint it was sent with (io::Ecn).
  void route_datagram(uint16_t from, uint16_t to, std::string_view data, uint8_t ecn);
  int attach_datagram(io::Channel& ch);
  void detach_datagram(io::Channel& ch);
  void datagram_to_core(uint16_t from, uint16_t to, const std::string& data, uint8_t ecn);
  void datagram_to_peer(uint16_t from, uint16_t to, const std::string& data);
  void drain_datagrams(uint16_t port);
  void send_datagrams(io::Channel& ch);

  uint64_t seed_;
  SimFaults faults_;
  Rng rng_;
  std::set<uint16_t> blackholed_;
  SimClock::time_point now_ = kEpoch;
  SimStats stats_;
  bool paused_ = true;
  std::function<void()> parked_;
  bool has_backend_ = false;
  uint64_t next_seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::map<uint16_t, Listener> listeners_;
  std::map<uint16_t, std::unique_ptr<Socket>> sockets_;  // core datagram sockets by port
  std::vector<std::unique_ptr<StreamPeer>> streams_;
  std::map<int, StreamPeer*> by_fd_;  // core descriptors not yet attached or attached
  std::vector<std::unique_ptr<DatagramPeer>> dpeers_;
  std::vector<std::pair<SimClock::time_point, SimClock::time_point>> stalls_;  // jumps
  static constexpr uint16_t kFirstPeerPort = 100;
  // wakeup() from any thread.
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;  // guarded by mu_
};

}  // namespace sluice::sim
