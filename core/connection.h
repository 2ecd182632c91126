// Connection: one accepted TCP stream, its buffers, its framing and its
// life cycle, identical on every back end.
//
// States (a graceful close is nginx's "lingering close"):
//
//   open --close()/frame error/stop--> closing --output handed over--> lingering
//     |                                 (flush what is owed; input      (shutdown(SHUT_WR):
//     |                                  read and discarded)             FIN after the last
//     |                                    |                             byte; input read and
//     |                    peer EOF seen --'                             discarded)
//     |                                    v                               |
//     |                                    |                            (on_close here)
//     '--abort()/socket error-------> detaching <--peer EOF / FIN acked ---'
//                                     (on_close      / linger_timeout / linger_max_bytes
//                                      unless it ran; / abort(), stop deadline
//                                      back end releases the channel)
//                                         |
//                                       closed (fd closed, object destroyed
//                                       at the end of the loop iteration)
//
// Why linger: close() on a socket with unread input makes Linux send a
// reset and discard its send queue, so a peer that sent anything after we
// stopped listening lost output we had already handed to the kernel, and
// saw ECONNRESET instead of EOF. Lingering, the FIN is queued behind the
// last byte and the peer's input keeps being drained until the peer
// closes too (EOF) or its kernel acknowledges our FIN (TCP_INFO: from then
// on a reset costs it nothing, it has read or will read every byte then
// EOF). A hostile peer cannot pin the connection: the linger ends at
// ConnectionLimits::linger_timeout (from the FIN) or after
// linger_max_bytes discarded, whichever comes first (then close(), and a
// reset if input is still unread). Flushing also discards at most
// linger_max_bytes, then pauses reading until the linger starts. A close
// after the peer's EOF does not linger: nothing more can arrive. Non-TCP
// sockets do not linger (no way to see the ACK). Milestones are counted
// through Owner::count_linger (Server::linger_stats()).
//
// on_close runs exactly once, when the handler's part ends: as the linger
// starts (right after the FIN is queued), or on entering detaching when
// there is no linger (abort, error, close after the peer's EOF). Not at
// the final close: the peer's kernel delays the ACK of a FIN (~40 ms) and
// a peer may hold its end open up to linger_timeout, and neither should
// delay the handler. While lingering the handler hears nothing (idle
// detection has ended, send() returns false as it has since close());
// Server::connection_count() drops only when the fd is closed. The linger
// timer is the idle timer's node, so lingering costs no memory.
//
// A half-close (shutdown()) keeps reading but sends FIN once everything
// owed is sent; a close() after it lingers the same way.
//
// Output is bounded twice (ConnectionLimits):
//  * Backpressure: after a flush attempt (when a handler's callback
//    returns, and at the end of the loop iteration), if more than
//    high_water bytes are still waiting -- not taken by the kernel (a
//    reactor) or queued behind the send in flight (io_uring, blocking) --
//    reading from this peer pauses and the handler hears on_high_water,
//    until what is owed falls to low_water (on_drain). A burst that the
//    kernel takes at once never looks slow. This bounds a peer that sends
//    requests and never reads the replies: high_water plus one read.
//  * A hard cap on what is owed at all (output_cap(): max_output, raised
//    to what backpressure already allows replies to owe, 2 x (high_water
//    + max_frame + one read buffer), if set lower): it bounds a server
//    that pushes (a broadcast) to a peer that never reads, which
//    backpressure cannot (pausing that peer's input does not stop the
//    pushing). A send() that would take pending_output() past the cap is
//    refused (returns false); with OutputPolicy::kClose (the default) the
//    connection is also aborted as too slow (on_close kTooSlow, at the end
//    of the callback, never inside send()). So a peer that never reads
//    costs at most output_cap() plus one read.
//
// Idle detection (set_idle): one loop timer per connection, re-armed
// lazily: reads and send progress only store a timestamp; when the timer
// fires it reports what is idle and re-arms itself (same node) for the
// remaining time. The timer is cancelled when the connection starts
// detaching, so no idle event follows on_close. Write progress is on_sent,
// plus (checked only when the timer fires) the peer acknowledging more
// bytes (TCP_INFO): a large send that drains steadily is never
// writer-idle, whatever granularity the back end reports progress at.
//
// Memory (docs/ARCHITECTURE.md, "Memory per connection"): input arrives
// as a view into the loop's read buffer (or an io_uring provided buffer);
// frames are decoded where they lie and only an incomplete frame's tail is
// copied into leftover_, which is released once it empties. Output storage
// exists while output is pending. A connection that holds no bytes holds
// no buffer; tests/connection_memory_test.cc keeps the per-connection
// structures' sizes in a budget.
//
// TLS (Shared::tls set; docs/TLS.md): the connection's bytes pass
// through a TlsEngine between the back end and the codec, so it works on
// every back end. The handler hears on_open only once the handshake is
// done, and nothing at all (no on_close either) from a connection whose
// handshake failed or timed out: those end with one rate-limited log line
// and Owner::tls_done. Plaintext queued by send() waits in the TLS state
// until the handshake is done and is encrypted at each flush; pending_
// counts queued plaintext plus ciphertext not yet handed to the kernel, so
// water marks and the output cap see what the connection really holds. A
// graceful close sends close_notify before the FIN; the peer's
// close_notify counts as its EOF. So does a TCP FIN without it, but that
// is a truncation (an attacker can cut a stream short with a forged FIN;
// a length-framed protocol notices, a read-to-EOF one must ask):
// tls_truncated() turns true before on_peer_shutdown, close_detail() says
// so, and it is counted (Owner::tls_done(kTruncated)). The TLS state is
// one pointer here, made at start() for TLS connections only.
//
// PROXY protocol (Shared::proxy not kOff; core/proxy_protocol.h,
// docs/OPERATIONS.md): a balancer's header comes first, before TLS and
// before the codec. Until it is parsed the connection is "proxy pending":
// its bytes are parsed where they lie (a split header waits in leftover_,
// the buffer an incomplete frame would use, so a pending connection costs
// one bit and that buffer), the handler has heard nothing, and the header
// deadline runs on the idle timer's node (idle detection starts with
// on_open). Once parsed, peer_addr() is the client the header names
// (LOCAL, UNKNOWN, UNSPEC or no header in kOptional: the socket's peer),
// the owner may refuse it (Owner::proxy_done: per-source limits), and the
// bytes after the header go on to TLS or the codec unchanged. A bad or
// missing (kRequired) header, a peer that closes first or one that is
// not done by Shared::proxy_timeout end with one rate-limited log line,
// and the handler never hears of the connection (no on_close either).
//
// Re-entrancy (what may call the handler back before returning):
//  * send(), send_raw(), set_reading(), set_idle(): never.
//  * close(), abort(), shutdown(): may run on_close before returning (the
//    connection had nothing left to send, or the peer had already closed).
//    The object stays valid until the end of the loop iteration.
//  * Everything else that reaches the handler comes from the loop.
//
// Thread rules: loop thread only (the loop the connection belongs to).
// From another thread, reach a connection through its server:
// Server::run_on(id, ...), for_each(), broadcast() (core/server.h).
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "codec/codec.h"
#include "core/handler.h"
#include "core/idle_state.h"
#include "core/net.h"
#include "core/proxy_protocol.h"
#include "core/state_slot.h"
#include "core/timer_queue.h"
#include "core/tls_context.h"
#include "io/backend.h"

namespace sluice {

class EventLoop;
struct LoopStats;

// What a connection does when a send() would take its output past
// ConnectionLimits::max_output.
enum class OutputPolicy : uint8_t {
  kClose,   // refuse the send and abort the connection as too slow (kTooSlow)
  kRefuse,  // refuse the send (false); the handler decides
};

struct ConnectionLimits {
  // Backpressure (see "Output is bounded twice" above).
  size_t high_water = 4 << 20;
  size_t low_water = 1 << 20;
  // Hard cap on bytes owed (queued, not yet taken by the kernel); 0: none.
  // Counted in payload bytes before framing (a codec's header or delimiter
  // is not counted). Never below 2 x (high_water + the codec's max_frame +
  // 64 KiB) (Connection::output_cap()): a server that only answers
  // requests is bounded by backpressure and never meets the cap; it is
  // there for pushes (broadcasts, streams) to a peer that does not read.
  // With the defaults the floor is about 10 MiB for 1 MiB frames.
  size_t max_output = 16 << 20;
  OutputPolicy output_policy = OutputPolicy::kClose;
  // Lingering close (see "Closing" above): how long, and how many bytes of
  // the peer's input to read and discard, while waiting for the peer to
  // take our FIN. A zero linger_timeout turns lingering off (close at once
  // once output is handed over: the peer may then see a reset).
  // The byte bound must exceed what a peer that merely stopped reading can
  // have in flight when we start to discard: our receive buffer plus its
  // send buffer, up to ~10 MiB with Linux's default tcp_rmem/tcp_wmem
  // maxima. At 4 MiB, a client that kept sending during a SIGTERM drain
  // was reset in about 1 run of 3 (poll back end) before it had read all
  // it was owed.
  std::chrono::milliseconds linger_timeout{3000};
  size_t linger_max_bytes = 16 << 20;
};

// How lingering closes went, summed over a server's connections.
struct LingerStats {
  uint64_t started = 0;       // FIN sent, lingering for the peer
  uint64_t peer_eof = 0;      // ended: the peer closed too (orderly)
  uint64_t fin_acked = 0;     // ended: the peer's kernel took our FIN
  uint64_t cut_by_time = 0;   // ended: linger_timeout passed
  uint64_t cut_by_bytes = 0;  // ended: linger_max_bytes discarded
};

// One lingering close's milestones, as reported to Connection::Owner.
enum class LingerEvent { kStarted, kPeerEof, kFinAcked, kTimeLimit, kByteLimit };

class Connection final : public io::Channel {
 public:
  // Called once the connection is fully released (on the loop thread); the
  // owner must then hand the object to loop.destroy_later().
  class Owner;

  // What every connection of one owner shares (one pointer per connection
  // instead of four). Must outlive the connections: Server keeps one per
  // loop, Client one.
  struct Shared {
    Handler& handler;
    Owner& owner;
    const codec::Codec* codec;  // nullptr: raw bytes
    const ConnectionLimits& limits;
    // Close a connection once it has been idle (after on_idle, if the
    // handler left it open): ServerOptions::idle_close.
    bool close_idle = false;
    // Who serves the channels: null for the loop's back end (a kernel
    // socket), else a transport of the owner's (rudp: the connections
    // then have no descriptor, fd() is -1, and the transport's messages
    // are framed by `codec`, so send_raw() frames like send()).
    io::ChannelOps* ops = nullptr;
    // TLS on every connection (null: none). Server: a server context;
    // Client: a client context, whose certificate must name tls_host
    // (unless TlsOptions::server_name says otherwise).
    const TlsContext* tls = nullptr;
    std::string tls_host{};
    // Where this loop's connections count bytes, messages, frame errors
    // and idle events (core/loop_stats.h); null: not counted (Client).
    // Written by the loop thread only.
    LoopStats* stats = nullptr;
    // PROXY protocol header on every connection (see "PROXY protocol"
    // above): the mode, how long a peer has to send it, and the largest
    // v2 header accepted (ServerOptions::proxy_*). Sockets only.
    ProxyProtocol proxy = ProxyProtocol::kOff;
    std::chrono::milliseconds proxy_timeout{5000};
    size_t proxy_max_header = 4096;
  };

  class Owner {
   public:
    virtual void release(Connection& conn) = 0;
    // A lingering close reached a milestone (for counters); optional. On
    // the connection's loop thread, like release().
    virtual void count_linger(LingerEvent event) { (void)event; }
    // A TLS handshake ended (after on_open when it succeeded; the handler
    // hears nothing of one that failed), or, later, kTruncated: the peer's
    // FIN came without close_notify. Optional; loop thread.
    virtual void tls_done(Connection& conn, TlsEvent event) {
      (void)conn;
      (void)event;
    }
    // The PROXY header was read: peer_addr() is now the client it named
    // (or the socket's peer, see "PROXY protocol"). False refuses the
    // connection: it is aborted (the owner may set SO_LINGER for a reset
    // first), still proxy_pending(), and the handler never hears of it.
    // Optional; loop thread.
    virtual bool proxy_done(Connection& conn) {
      (void)conn;
      return true;
    }

   protected:
    ~Owner() = default;
  };

  // `shared` is referenced, not copied: it must outlive the connection.
  Connection(EventLoop& loop, int fd, uint64_t id, const Shared& shared);
  // The same for a socket whose peer the caller already asked for (once
  // the peer resets, getpeername() fails: the accept path's answer is kept).
  Connection(EventLoop& loop, int fd, const PeerAddr& peer, uint64_t id, const Shared& shared);
  // A connection of a transport (shared.ops set): no descriptor; `peer`
  // is where the transport's datagrams go.
  Connection(EventLoop& loop, const PeerAddr& peer, uint64_t id, const Shared& shared);
  ~Connection() override;

  // Attaches to the loop's back end and calls on_open. Returns 0 or -errno
  // (the connection is then closed with kRefused).
  int start();

  uint64_t id() const { return id_; }
  EventLoop& loop() { return loop_; }
  // "host:port" of the peer (formatted on each call; "?" if unknown).
  std::string peer() const { return peer_.str(); }
  const PeerAddr& peer_addr() const { return peer_; }
  bool is_open() const { return state_ == State::kOpen; }
  // PROXY protocol: the header is still awaited, or was bad or refused
  // (the handler has not heard on_open). False without the protocol.
  bool proxy_pending() const { return proxy_pending_; }
  // Whether the handler may still hear from this connection: on_close has
  // not run (it is open, or closing and flushing what it owes).
  bool alive() const { return state_ < State::kDetaching; }
  // Bytes queued for sending and not yet handed to the kernel.
  size_t pending_output() const { return pending_; }
  // The hard cap in force: ConnectionLimits::max_output, but never below
  // 2 x (high_water + the codec's max_frame + kReadReserve), so replies
  // that backpressure allows are never refused. SIZE_MAX when off.
  size_t output_cap() const;
  static constexpr size_t kReadReserve = 64 << 10;
  // Per-connection state of the handler's own type, created on first use
  // (see core/state_slot.h): conn.state<Member>().nick = "alice".
  template <class T>
  T& state() { return state_slot_.get<T>(); }
  template <class T>
  T* find_state() { return state_slot_.find<T>(); }  // nullptr if none
  StateSlot& state_slot() { return state_slot_; }

  // Sends one message, framed by the codec if there is one. Returns false
  // if the connection is closing, the codec cannot frame the payload, or
  // it would take the output past max_output (see "Output is bounded
  // twice"). Never calls the handler back: it queues, and the flush (and
  // the high-water check) follows when the current callback returns.
  bool send(std::string_view payload);
  // Sends bytes as they are, bypassing the codec. Bytes of the view
  // on_message was given, sent with nothing else owed, are not copied:
  // they go out from the read buffer when the handler returns
  // (Backend::send_now), and only what the kernel does not take is queued
  // (zero-copy echo).
  bool send_raw(std::string_view bytes);
  // A message transport only (rudp): one message that may be lost but is
  // never duplicated nor delivered after a later one (game state). It
  // reaches the peer's on_message like any other. False: not a message
  // transport, over its unreliable size limit, or closing.
  bool send_unreliable(std::string_view payload);
  // Half-close: FIN after everything queued is sent; reading continues.
  void shutdown();
  // Graceful close: send what is queued, FIN, linger (see States), close.
  void close() { close_with(CloseReason::kLocal, 0, false); }
  // Close now, dropping queued output (no linger; a lingering connection
  // is closed at once).
  void abort() { close_with(CloseReason::kLocal, 0, true); }
  // Pause or resume reading (in addition to automatic backpressure).
  // Frames already read when it pauses are still delivered: at most one
  // read's worth (the rest of the bytes the current on_input holds).
  // Takes effect for the next read.
  void set_reading(bool on);
  // Idle detection; all-zero options turn it off. Before start() or any
  // time after (the idle clocks then restart from now).
  void set_idle(const IdleOptions& options);
  const IdleState& idle() const { return idle_; }
  // Why the connection is closing, in words, when the core decided it
  // (e.g. the codec's complaint for kFrameError); empty otherwise.
  const std::string& close_detail() const;
  // Bytes of an incomplete frame kept between reads (0 almost always).
  size_t buffered_input() const { return leftover_.readable(); }
  // Whether the connection holds buffer storage now (tests, benchmarks).
  bool holds_buffers() const;
  // TLS: the handshake is done (the handler heard on_open); false without TLS.
  bool tls_established() const;
  // TLS: the peer ended its stream with a TCP FIN and no close_notify
  // while we were open (see "TLS" above); false without TLS.
  bool tls_truncated() const;
  // TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256 alpn=x resumed" style summary, or "".
  std::string tls_summary() const;

  // Used by Server on shutdown. Dropping output still owed (the stop
  // deadline passed) is reported to the handler as -ETIMEDOUT: without it
  // on_close(kServerStop, 0) read the same whether the peer got all it was
  // sent or not (found by the simulation, tests/sim_stream_scenarios.cc,
  // suite stop_deadline).
  void close_for_stop(bool drop_output) {
    close_with(CloseReason::kServerStop, drop_output && pending_ > 0 ? -ETIMEDOUT : 0,
               drop_output);
  }

 private:
  // Life order is open, closing, lingering, detaching, closed; kLingering
  // is declared after kDetaching so that `state_ < kDetaching` keeps
  // meaning "the handler may still hear from this connection" (on_close
  // has not run; the idle timer code relies on it). served(): the back end
  // still serves the channel (reading goes on while lingering).
  enum class State : uint8_t { kOpen, kClosing, kDetaching, kLingering, kClosed };
  bool served() const {
    return state_ < State::kDetaching || state_ == State::kLingering;
  }

  struct Tls;  // core/connection_tls.cc

  // io::Channel events.
  void on_input(std::string_view data) override;
  // Input after TLS (or all of it without): decoding and the handler.
  void plain_input(std::string_view data);
  void on_sent(size_t n) override;
  void on_eof() override;
  void on_error(int err) override;
  void on_detached() override;
  // A message transport's unreliable message: one message, no codec.
  void on_datagram(const io::Datagram& d) override;

  size_t consume_input(std::string_view data);
  void flush_span();
  void progress(size_t n);
  // Server::broadcast's send: one message per connection per task, so when
  // nothing is owed it goes to the kernel straight from the caller's
  // storage (Backend::send_now), and only what the kernel did not take is
  // copied and queued. Otherwise (something owed, inside on_input, a
  // proactor) exactly send_raw(). Never calls the handler.
  friend class Server;
  bool send_raw_now(std::string_view bytes);
  bool admit(size_t n);
  void queued(size_t n);
  void check_high_water();
  void flush_now();
  void close_idle(IdleKind kind);
  void schedule_flush();
  void update_reading();
  void close_with(CloseReason reason, int err, bool drop_output);
  void maybe_finish();
  void discard_input(size_t n);
  bool lingers() const { return limits().linger_timeout.count() > 0; }
  void start_linger();
  void arm_linger(Clock::time_point now);
  void on_linger_timer();
  void end_linger(LingerEvent how);
  void detach_now();
  // TLS (core/connection_tls.cc).
  int tls_start();
  void tls_input(std::string_view data);
  void tls_open();
  void tls_fail(const std::string& why, TlsEvent event, bool drop_output);
  void tls_check_truncation();
  void tls_wrote(size_t before);
  void tls_encrypt();
  bool tls_notify();
  void on_tls_deadline();
  // PROXY protocol (core/connection_proxy.cc).
  void proxy_input(std::string_view data);
  bool proxy_accept(const ProxyHeader* header);
  void proxy_open();
  void proxy_fail(const std::string& why, bool quiet, bool drop_output);
  void on_proxy_deadline();
  // Whether the handler has heard on_open (always, without TLS or PROXY).
  bool handler_open() const;
  // Where send() queues: the TLS plaintext queue, or output().
  Buffer& send_queue();
  void arm_idle();
  void on_idle_timer();
  void stop_idle();

  const Handler& handler() const { return shared_.handler; }
  Handler& handler() { return shared_.handler; }
  const codec::Codec* codec() const { return shared_.codec; }
  io::ChannelOps& ops() { return shared_.ops ? *shared_.ops : loop_backend(); }
  io::ChannelOps& loop_backend();
  int shut_write();
  const ConnectionLimits& limits() const { return shared_.limits; }

  // Flags are bit-fields: one 16-bit word instead of 12 bytes.
  // Member order is for the cache: what every message touches (state,
  // flags, byte counts, the shared handler/codec, the decoder, the idle
  // clocks) comes first, right after Channel's, and what only opening and
  // closing touch comes last, so a message touches fewer cache lines. With
  // 1000 busy connections these first loads are cache misses (perf record
  // of the epoll back end; see docs/PERFORMANCE.md).
  State state_ = State::kOpen;
  bool attached_ : 1 = false;
  bool idle_on_ : 1 = false;
  bool flush_scheduled_ : 1 = false;
  // Inside on_input: output queued meanwhile is flushed when it returns
  // (flush_after_input_), not in a deferred task (see on_input).
  bool in_input_ : 1 = false;
  bool flush_after_input_ : 1 = false;
  bool user_paused_ : 1 = false;
  bool backpressured_ : 1 = false;
  bool peer_shut_ : 1 = false;        // EOF seen
  bool shutdown_wanted_ : 1 = false;  // FIN after flush
  bool write_shut_ : 1 = false;       // FIN sent
  // A send() went over max_output: sends are refused from now on (and,
  // with OutputPolicy::kClose, an abort is on its way).
  bool overflowed_ : 1 = false;
  // PROXY protocol: the header is not accepted yet (see proxy_pending()).
  bool proxy_pending_ : 1 = false;
  CloseReason reason_ = CloseReason::kPeerClosed;  // 1 byte, in what was padding
  // Peer input discarded in this closing phase (flushing, then lingering;
  // saturating). Sits in what was padding, so lingering costs no
  // per-connection memory.
  uint32_t discarded_ = 0;
  size_t pending_ = 0;
  EventLoop& loop_;
  const Shared& shared_;
  // Made with the first input (a connection that never sends costs none).
  std::unique_ptr<codec::Decoder> decoder_;
  // An incomplete frame's bytes between reads; no storage when empty.
  Buffer leftover_;
  IdleState idle_;
  TimerId idle_timer_ = 0;  // 0: none armed; while lingering, the linger timer
  uint64_t acked_ = 0;      // TcpProgress::bytes_acked at the last idle check
  uint64_t id_;
  PeerAddr peer_;  // 20 bytes; formatted only when asked
  int error_ = 0;  // beside peer_: together they fill 24 bytes
  StateSlot state_slot_;  // one pointer; nothing allocated until asked
  std::unique_ptr<std::string> close_detail_;  // only once there is one
  std::unique_ptr<Tls> tls_;  // TLS connections only
};

}  // namespace sluice
