// Scripted peers of a simulated world (io/sim_world.h): the client side of
// a stream, and a datagram sender/receiver with a virtual address. Their
// callbacks run inside the world's scheduler, on the loop thread, at
// virtual times the world's seed decides.
//
// Thread rules: loop thread only (or the creating thread before the loop
// starts). Owned by the world; pointers stay valid for the world's life.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "io/backend.h"
#include "io/sim_world.h"

namespace sluice::sim {

class StreamPeer {
 public:
  // Bytes from the core arrived (only while reading).
  std::function<void(std::string_view)> on_data;
  // The core shut down its side (shutdown or close); everything it sent
  // came before. Only while reading (after the unread bytes).
  std::function<void()> on_eof;
  // The connection died: -ECONNRESET (the world reset it) or
  // -ECONNREFUSED (nothing listened on the port). Nothing follows.
  std::function<void(int err)> on_reset;

  // Queues bytes to the core (segmented and delayed by the world). False
  // after shutdown(), reset() or a reset from the world.
  bool write(std::string_view bytes);
  // The FIN, after everything written.
  void shutdown();
  // Abortive close: nothing more either way; the core gets -ECONNRESET.
  void reset();
  // Stop / resume reading: while off, what the core sends piles up here
  // and, once the stream's window is full, the core's sends stall.
  void set_reading(bool on);

  // The core has the connection (attached), or had it and let go.
  bool accepted() const { return ch_ != nullptr || core_gone_; }
  // on_eof ran (a peer that stopped reading sees the EOF only once it
  // reads again and has read what came before it).
  bool got_eof() const { return eof_seen_; }
  int error() const { return error_; }  // 0, or the on_reset error
  // Bytes that arrived while not reading, not yet handed to on_data.
  size_t unread() const { return unread_.size(); }
  // 1, 2 ... in connect() order (what World::peer_for() matches).
  uint64_t id() const { return id_; }

 private:
  friend class World;
  StreamPeer(World& w, uint64_t id) : world_(w), id_(id) {}

  // Core side (sim_stream.cc).
  void deliver_to_core();  // on_input / on_eof while the core reads
  void write_from_core(io::Channel& ch);
  ssize_t take_from_core(const char* p, size_t n);  // a send: bytes taken
  void core_closed();      // the core's FIN (shutdown or close)
  void arrive_at_peer(const std::string& bytes);
  void fin_at_peer();
  void die(int err_to_core, int err_to_peer);
  size_t window_left() const;
  void schedule_writable();
  void schedule_read();

  World& world_;
  uint64_t id_;
  int core_fd_ = -1;   // handed to the core at accept
  int world_fd_ = -1;  // the world's end of the socketpair
  io::Channel* ch_ = nullptr;
  bool core_gone_ = false;   // detached (or closed unattached)
  bool core_shut_ = false;   // the core's FIN is on its way
  bool core_failed_ = false; // on_error delivered
  int core_error_ = 0;       // a reset on its way to the core: -errno
  bool read_scheduled_ = false;
  bool write_blocked_ = false;
  bool writable_scheduled_ = false;
  // Peer -> core.
  std::string rx_;             // arrived, not yet given to on_input
  bool fin_in_ = false;        // the peer's FIN arrived (after rx_)
  bool eof_delivered_ = false;
  SimClock::time_point last_in_{};
  // Core -> peer.
  size_t window_ = 0;
  size_t in_flight_ = 0;
  SimClock::time_point last_out_{};
  std::string unread_;
  bool reading_ = true;
  bool fin_pending_ = false;  // the core's FIN arrived behind unread_
  bool eof_seen_ = false;
  // Peer side state.
  bool shut_ = false;
  bool dead_ = false;
  int error_ = 0;
};

class DatagramPeer {
 public:
  // A datagram from a core socket: its port and the payload.
  std::function<void(uint16_t from_port, std::string_view data)> on_datagram;

  // Sends one datagram to the core socket bound to `port` (lost,
  // duplicated and delayed as the world's faults say; dropped when no
  // socket is registered there when it arrives).
  void send_to(uint16_t port, std::string_view data);
  uint16_t port() const { return port_; }
  uint64_t received() const { return received_; }

 private:
  friend class World;
  DatagramPeer(World& w, uint16_t port) : world_(w), port_(port) {}

  World& world_;
  uint16_t port_;
  uint64_t received_ = 0;
};

}  // namespace sluice::sim
