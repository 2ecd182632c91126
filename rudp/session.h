// Session: one rudp connection's protocol state after the handshake: the
// reliable stream both ways (packets, ACK ranges, RTT, loss detection and
// probe timeouts after RFC 9002, flow control after RFC 9000 §4),
// unreliable messages, pacing, and the close (FIN both ways, then CLOSE
// and a draining period; or RESET).
//
// The user-facing side is a sluice::Connection whose channel the session
// serves (attach/update/detach/shutdown_write of io::ChannelOps arrive
// here through the Endpoint). The Connection frames messages with its
// codec (a 4-byte length, then the message) onto the stream, so messages
// are whole and in order on the other side, and backpressure, water marks
// and idle detection are the Connection's, unchanged.
//
// A session outlives its Connection: after a graceful close it keeps
// retransmitting what it was handed until the peer has it all (as a kernel
// socket does after close()), then drains. The Endpoint owns sessions and
// destroys one once finished() is called.
//
// Thread rules: the endpoint's loop thread only.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/buffer.h"
#include "core/timer_queue.h"
#include "io/backend.h"
#include "rudp/cc/controller.h"
#include "rudp/cc/delivery_rate.h"
#include "rudp/options.h"
#include "rudp/range_set.h"
#include "rudp/rtt.h"
#include "rudp/stats.h"
#include "rudp/stream_buffer.h"
#include "rudp/wire.h"

namespace sluice {
class EventLoop;
}

namespace sluice::rudp {

class Session;
struct Link;

// What a session needs from the endpoint that owns it.
class SessionHost {
 public:
  virtual EventLoop& loop() = 0;
  // Queues one datagram to the session's peer; false when the socket's
  // queue is full (the packet is then as good as lost).
  virtual bool send_datagram(Session& s, std::string_view d) = 0;
  // Room for this many more datagrams in the socket's queue.
  virtual size_t send_room() const = 0;
  // The session is done (drained, reset, timed out): destroy it later.
  virtual void finished(Session& s) = 0;
  // The endpoint is closing its socket (server stop): no new connection
  // can meet a late packet, so a closed session need not drain.
  virtual bool closing() const = 0;
  // The session's ECN validation failed (docs/RUDP.md, "ECN"): stop
  // marking what goes to its peer where the socket is the session's own.
  virtual void ecn_failed(Session& s) { (void)s; }

 protected:
  ~SessionHost() = default;
};

class Session {
 public:
  Session(SessionHost& host, const Options& opts, uint32_t local_id, uint32_t peer_id,
          const sockaddr* peer, socklen_t peer_len, const Params& peer_params,
          std::unique_ptr<cc::Controller> cc);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  uint32_t local_id() const { return local_id_; }
  uint32_t peer_id() const { return peer_id_; }
  const sockaddr* peer_addr() const { return reinterpret_cast<const sockaddr*>(&peer_); }
  socklen_t peer_len() const { return peer_len_; }
  bool same_peer(const sockaddr* a, socklen_t len) const;

  // A DATA packet for this session (header checked): its packet number and
  // frames; ecn: the codepoint it arrived with (io::Datagram::ecn).
  void on_packet(std::string_view body, uint8_t ecn = 0);

  // io::ChannelOps for the session's connection (through the Endpoint).
  void attach(io::Channel& ch);
  void update(io::Channel& ch);
  void detach(io::Channel& ch);
  int shutdown_write(io::Channel& ch);
  bool send_unreliable(std::string_view message);
  // The Connection let go of its channel state without detaching (it was
  // destroyed with the loop): forget it.
  void forget_channel() { conn_ = nullptr; }

  Stats stats() const;
  bool open() const { return state_ == State::kOpen; }
  bool attached() const { return conn_ != nullptr; }
  // The endpoint is going away (server stop past its deadline): the
  // connection, if any, fails with `err`; a RESET goes out; done at once.
  void abort_now(int err, ResetCode code = ResetCode::kAborted);
  // The endpoint is closing: a draining session ends at its next timer.
  void cut_drain();

 private:
  enum class State : uint8_t {
    kOpen,      // the connection may be attached; both ways work
    kClosing,   // the connection let go after a FIN: finish sending, wait for the peer's
    kDraining,  // CLOSE or RESET sent or received: absorb late packets, then forget
    kDone,      // finished() called
  };

  struct SentPacket {
    Clock::time_point sent;
    uint64_t offset = 0;  // stream range carried (len 0: none)
    uint32_t len = 0;
    uint32_t bytes = 0;  // datagram size
    bool eliciting = false;
    bool fin = false;
    bool max_data = false;
    bool ect = false;  // sent ECN-capable (ECT(0)), for validation
    cc::DeliveryRate::PacketState rate;  // the delivery-rate state when it was sent
  };

  // session_recv.cc
  void on_ack(const std::vector<AckRange>& ranges, uint64_t delay_us,
              const EcnCounts* ecn);
  // RFC 9000 §13.4.2 and RFC 9002 §7.1 for an ACK that raised the largest
  // acknowledged: validates the counts, reacts to new CE marks.
  void process_ecn(const EcnCounts* ecn, uint64_t newly_ect, Clock::time_point largest_sent);
  void fail_ecn(const char* why);
  void on_stream(uint64_t offset, std::string_view data, bool fin);
  void on_unreliable(uint64_t seq, std::string_view data);
  void deliver();
  void store_out_of_order(uint64_t offset, std::string_view data);
  void maybe_open_window();
  void detect_lost();
  void declare_lost(std::map<uint64_t, SentPacket>::iterator it, bool by_time);
  // session_send.cc
  void send_packets();
  bool build_packet(std::string& d, bool probe);
  bool has_data() const;
  bool add_stream(std::string& d, size_t room, SentPacket& p);
  void add_ack(std::string& d, size_t room);
  void on_pto();
  void take_output();
  // session.cc
  void arm_timer();
  void on_timer();
  void schedule_flush();
  void protocol_error(const char* what);
  void fail(int err);  // tell the connection, then drain silently
  void start_draining(bool send_close, bool send_reset,
                      ResetCode code = ResetCode::kAborted);
  void maybe_finish_close();
  Duration pto_base() const;
  Duration drain_period() const;
  Duration idle_timeout() const;
  Clock::time_point pto_deadline() const;
  static constexpr Duration kMinDrain = std::chrono::seconds(1);
  EventLoop& loop();
  // The time for this operation: read once per packet received, flush or
  // timer run (OpScope), not per use; clock reads were 6% of an echo
  // server's CPU at 64-byte messages.
  Clock::time_point time();
  struct OpScope {
    explicit OpScope(Session& s);
    ~OpScope();
    Session& s;
    bool outer;
  };
  // Lets go of the connection's link first, leaving it our figures.
  void cut(Link& l) const;

  SessionHost& host_;
  const Options& opts_;
  uint32_t local_id_;
  uint32_t peer_id_;
  sockaddr_storage peer_{};
  socklen_t peer_len_;
  Params peer_params_;
  std::unique_ptr<cc::Controller> cc_;
  cc::DeliveryRate rate_;
  uint64_t last_delivery_rate_ = 0;  // the newest valid sample (stats)
  RttEstimator rtt_;
  io::Channel* conn_ = nullptr;
  State state_ = State::kOpen;
  TimerId timer_ = 0;
  bool flush_scheduled_ = false;
  Clock::time_point last_recv_;
  Clock::time_point last_send_;

  // --- sending (the stream we write) ---
  StreamBuffer sbuf_;      // bytes [sbase_, send_end_) taken from the connection
  uint64_t sbase_ = 0;     // everything below is acknowledged
  uint64_t send_end_ = 0;  // end of what was taken
  uint64_t next_new_ = 0;  // first byte never sent
  uint64_t peer_max_data_;
  RangeSet acked_;         // acknowledged stream bytes at or above sbase_
  RangeSet retx_;          // stream bytes declared lost (or probed), to send again
  std::optional<uint64_t> fin_at_;
  bool fin_sent_ = false;
  bool fin_acked_ = false;
  bool fin_resend_ = false;
  Clock::time_point fin_acked_at_;
  std::deque<std::string> unreliable_;
  uint64_t next_unreliable_ = 0;
  // Packets sent and in flight (ack-eliciting, neither acked nor lost).
  std::map<uint64_t, SentPacket> sent_;
  uint64_t next_pn_ = 0;
  uint64_t bytes_in_flight_ = 0;
  std::optional<uint64_t> largest_acked_;
  Clock::time_point largest_acked_sent_;
  RangeSet acked_pns_;  // for persistent congestion: was anything in between acked?
  // ECN: our packets are marked ECT(0) (the socket's) until validation
  // fails; the peer's counts as last reported.
  bool ecn_marking_ = false;
  EcnCounts peer_ecn_;
  // Declared lost, for spurious detection: packet number -> the largest
  // acknowledged then, and whether time (not the packet count) decided.
  struct LostInfo {
    uint64_t largest_acked;
    bool by_time;
  };
  std::map<uint64_t, LostInfo> lost_pns_;
  // Loss thresholds (RFC 9002 §6.1.1-2), raised when losses turn out
  // spurious (reordering beyond them): packets, and time in eighths of an RTT.
  uint64_t packet_threshold_ = 3;
  uint32_t time_threshold_eighths_ = 9;
  std::optional<Clock::time_point> loss_time_;
  uint32_t pto_count_ = 0;
  uint32_t probes_ = 0;  // packets a probe timeout allows past the window
  Clock::time_point last_eliciting_sent_;
  Clock::time_point next_send_at_;  // pacing
  bool ping_wanted_ = false;
  bool paced_out_ = false;   // data waits for the pacer (the timer wakes it)
  bool queue_full_ = false;  // the socket's queue was full (retry in 1 ms)
  bool close_wanted_ = false;
  bool reset_wanted_ = false;
  ResetCode reset_code_ = ResetCode::kAborted;
  bool sent_close_ = false;
  bool sent_reset_ = false;
  Clock::time_point drain_until_;
  Clock::time_point last_close_sent_;

  // --- receiving (the peer's stream) ---
  EcnCounts recv_ecn_;  // codepoints of the packets received (ACK_ECN once any)
  RangeSet recv_pns_;
  uint64_t recv_floor_ = 0;  // packet numbers below are no longer tracked: dropped as duplicates
  uint64_t largest_recv_ = 0;
  Clock::time_point largest_recv_at_;
  bool ack_needed_ = false;  // an ack-eliciting packet is not acknowledged yet
  bool ack_now_ = false;     // ... and it should be at once (gap, reorder, 2 packets)
  uint32_t unacked_eliciting_ = 0;
  Clock::time_point ack_due_;
  uint64_t rbase_ = 0;  // stream bytes handed to the connection
  Buffer rready_;       // in order, not yet handed over (reading paused)
  std::map<uint64_t, std::string> rooo_;  // out of order: offset -> bytes
  RangeSet rooo_ranges_;
  uint64_t max_data_sent_;  // the limit we advertised
  bool max_data_dirty_ = false;
  std::optional<uint64_t> peer_fin_at_;
  uint64_t recv_max_ = 0;  // highest stream offset the peer has sent (end of any frame)
  bool eof_delivered_ = false;
  bool peer_closed_ = false;
  uint64_t last_unreliable_ = 0;
  bool any_unreliable_ = false;
  bool delivering_ = false;
  std::vector<AckRange> ack_scratch_;  // parsing and writing ACK frames
  std::string packet_;                 // the datagram being built

  Stats stats_;
  Clock::time_point op_now_{};
  bool in_op_ = false;
  // Deferred tasks hold a weak reference: a session destroyed with its
  // endpoint (a Client torn down mid-loop) must not be touched after.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace sluice::rudp
