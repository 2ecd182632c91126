// loadgen's rudp mode: rudp::Client connections on one sluice EventLoop per
// worker thread (see loadgen_rudp.h for why this mode, alone in loadgen,
// uses sluice's own code). Each connection keeps `pipeline` messages in
// flight; rudp delivers messages whole and in order, so every echo must be
// exactly the oldest message outstanding on its connection, byte for byte:
// a different, reordered, duplicated or truncated echo is a verify error
// (the connection is then aborted, as TCP's path closes it), and a message
// not back by the end of the drain is `stalled` (an error per connection).
#include "perf/loadgen_rudp.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>

#include "core/connection.h"
#include "core/event_loop.h"
#include "core/handler.h"
#include "core/log.h"
#include "io/registry.h"
#include "rudp/rudp.h"
#include "servers/rudp_flags.h"

namespace sluice::perf::loadgen {

void RudpTotals::add(const RudpTotals& o) {
  if (o.conns > 0) min_rtt_ns = conns ? std::min(min_rtt_ns, o.min_rtt_ns) : o.min_rtt_ns;
  conns += o.conns;
  packets_sent += o.packets_sent;
  packets_received += o.packets_received;
  retransmitted += o.retransmitted;
  lost += o.lost;
  spurious += o.spurious;
  pto += o.pto;
  srtt_ns += o.srtt_ns;
}

namespace {

using namespace std::chrono_literals;

class Load;  // a worker thread (not loadgen's epoll Worker)

// One rudp connection and its ring of in-flight messages (TCP's FIFO: the
// echoes must come back in the order sent).
struct Peer final : public Handler {
  Peer(Load& w, uint32_t id) : w(w), id(id) {}
  void on_message(Connection& conn, std::string_view data) override;
  void on_close(Connection& conn, CloseReason reason, int err) override;

  Load& w;
  uint32_t id;
  std::unique_ptr<rudp::Client> client;
  bool alive = false;
  std::vector<Slot> slots;
  size_t head = 0;
  size_t inflight = 0;
  uint64_t next_seq = 0;
};

class Load final : public RudpWorker {  // one thread's connections on one loop
 public:
  Load(const Options& o, const Wire& w, const std::string& io, const rudp::Options& ro,
         std::vector<uint32_t> ids)
      : o_(o), w_(w), io_(io), ro_(ro), hist_(2) {
    for (uint32_t id : ids) {
      peers_.push_back(std::make_unique<Peer>(*this, id));
      peers_.back()->slots.resize(o.pipeline);
    }
    tx_.resize(w.wire_len);
  }

  void run() override;
  const Histogram& hist() const override { return hist_; }
  const Totals& totals() const override { return t_; }
  const RudpTotals& rudp() const override { return r_; }

  void on_echo(Peer& p, Connection& conn, std::string_view data);
  void on_closed(Peer& p, CloseReason reason, int err);

 private:
  void connect_all();
  void connected();
  void measure();
  void send_one(Peer& p, Connection& conn, uint64_t now);
  void check_end();
  void finish();
  void fail(Peer& p, uint64_t& kind) {
    ++kind;
    ++t_.errors;
    p.alive = false;
    if (Connection* c = p.client->connection()) c->abort();
  }
  bool sending(uint64_t now) const { return now < end_; }

  const Options& o_;
  const Wire& w_;
  const std::string& io_;
  const rudp::Options& ro_;
  std::unique_ptr<EventLoop> loop_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::string tx_;
  uint64_t warm_end_ = 0, end_ = 0, drain_deadline_ = 0;
  size_t pending_ = 0;  // connects not answered yet
  bool finishing_ = false;
  TimerId check_timer_ = 0;
  Histogram hist_;
  Totals t_;
  RudpTotals r_;
};

void Peer::on_message(Connection& conn, std::string_view data) { w.on_echo(*this, conn, data); }
void Peer::on_close(Connection&, CloseReason reason, int err) { w.on_closed(*this, reason, err); }

// One run of the loop (an EventLoop runs once): connect everything, report
// ready, keep serving (ACKs, keepalives) until main says go, measure,
// drain, close.
void Load::run() {
  std::string error;
  loop_ = EventLoop::create(io_, {}, &error);
  if (!loop_) {
    std::fprintf(stderr, "loadgen: %s\n", error.c_str());
    t_.errors += peers_.size();
    t_.connect_errors += peers_.size();
    g_ready.fetch_add(1);
    return;
  }
  loop_->run([this] { connect_all(); });
  // The loop has stopped: the clients (their sockets released) go first.
  peers_.clear();
  loop_.reset();
}

void Load::connected() {
  g_ready.fetch_add(1);
  check_timer_ = loop_->run_every(1ms, [this] {
    if (!g_go.load(std::memory_order_acquire)) return;
    loop_->cancel(check_timer_);
    warm_end_ = g_warm_end.load();
    end_ = g_end.load();
    drain_deadline_ = end_ + static_cast<uint64_t>(o_.drain_s * 1e9);
    measure();
  });
}

void Load::connect_all() {
  rudp::ClientOptions co;
  co.host = o_.target;
  co.port = o_.port;
  co.rudp = ro_;
  co.rudp.connect_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(o_.connect_timeout_s * 1000));
  pending_ = peers_.size();
  for (auto& up : peers_) {
    Peer& p = *up;
    p.client = std::make_unique<rudp::Client>(*loop_, p, co);
    p.client->connect([this, &p](int rc) {
      if (rc < 0) {
        ++t_.errors;
        ++t_.connect_errors;
      } else {
        p.alive = true;
      }
      if (--pending_ == 0) connected();
    });
  }
  if (peers_.empty()) connected();
}

void Load::send_one(Peer& p, Connection& conn, uint64_t now) {
  Slot& s = p.slots[(p.head + p.inflight) % p.slots.size()];
  s.seq = p.next_seq++;
  s.ts = now;
  s.used = true;
  char full[16];
  std::memcpy(full, &s.seq, 8);
  std::memcpy(full + 8, &s.ts, 8);
  std::memcpy(s.hdr, full, w_.hdr_len);
  std::memcpy(tx_.data(), s.hdr, w_.hdr_len);
  std::memcpy(tx_.data() + w_.hdr_len, w_.payload(s.seq), w_.wire_len - w_.hdr_len);
  ++p.inflight;
  // One send() is one rudp message. Refused: over the connection's output
  // cap, which `pipeline` messages never reach on a healthy connection.
  if (!conn.send(tx_)) fail(p, t_.reset_errors);
}

void Load::on_echo(Peer& p, Connection& conn, std::string_view data) {
  if (!p.alive) return;
  const uint64_t now = now_ns();
  if (p.inflight == 0 || data.size() != w_.wire_len) {  // unasked for, or cut/merged
    fail(p, t_.verify_errors);
    return;
  }
  Slot& s = p.slots[p.head];
  if (std::memcmp(data.data(), s.hdr, w_.hdr_len) != 0 ||
      std::memcmp(data.data() + w_.hdr_len, w_.payload(s.seq), w_.wire_len - w_.hdr_len) != 0) {
    fail(p, t_.verify_errors);  // another message (order, duplicate) or corrupt
    return;
  }
  if (now >= warm_end_ && now < end_) {
    ++t_.msgs;
    hist_.record(now - s.ts);
  }
  s.used = false;
  p.head = (p.head + 1) % p.slots.size();
  --p.inflight;
  if (sending(now)) send_one(p, conn, now);
}

void Load::on_closed(Peer& p, CloseReason reason, int) {
  if (finishing_ || !p.alive) return;  // our own close, or already counted
  // The server (or rudp: timeout, reset) ended a connection mid-run.
  (void)reason;
  p.alive = false;
  ++t_.reset_errors;
  ++t_.errors;
}

void Load::measure() {
  const uint64_t now = now_ns();
  for (auto& up : peers_) {
    Peer& p = *up;
    Connection* c = p.client ? p.client->connection() : nullptr;
    if (!p.alive || !c || p.id >= o_.conns) continue;  // idle connections never send
    for (size_t i = 0; i < o_.pipeline && p.alive; ++i) send_one(p, *c, now);
  }
  check_timer_ = loop_->run_every(1ms, [this] { check_end(); });
}

void Load::check_end() {
  if (finishing_) return;
  const uint64_t now = now_ns();
  if (now < end_) return;
  size_t inflight = 0;
  for (auto& p : peers_) inflight += p->alive ? p->inflight : 0;
  if (inflight > 0 && now < drain_deadline_) return;
  finish();
}

void Load::finish() {
  finishing_ = true;
  for (auto& up : peers_) {
    Peer& p = *up;
    Connection* c = p.client ? p.client->connection() : nullptr;
    if (p.alive && p.inflight > 0) {  // did not come back in time
      t_.stalled += p.inflight;
      ++t_.errors;
    }
    if (!c) continue;
    if (std::optional<rudp::Stats> s = rudp::stats(*c)) {
      RudpTotals one;
      one.conns = 1;
      one.packets_sent = s->packets_sent;
      one.packets_received = s->packets_received;
      one.retransmitted = s->retransmitted;
      one.lost = s->packets_lost;
      one.spurious = s->spurious;
      one.pto = s->pto_count;
      one.srtt_ns = static_cast<uint64_t>(s->srtt.count());
      one.min_rtt_ns = static_cast<uint64_t>(s->min_rtt.count());
      r_.add(one);
    }
    c->close();  // orderly: the server sees the peer close
  }
  // Once every connection is released, let go of the sockets; then stop.
  // Bounded: connections still closing after 2 s are aborted, sockets
  // still held 1 s later are left to the loop's end.
  const uint64_t conns_deadline = now_ns() + 2000000000ull;
  const uint64_t sockets_deadline = conns_deadline + 1000000000ull;
  bool releasing = false;
  loop_->cancel(check_timer_);
  check_timer_ = loop_->run_every(1ms, [this, conns_deadline, sockets_deadline,
                                        releasing]() mutable {
    const uint64_t now = now_ns();
    if (!releasing) {
      bool conns_done = true;
      for (auto& p : peers_) conns_done = conns_done && (!p->client || p->client->live() == 0);
      if (!conns_done && now < conns_deadline) return;
      releasing = true;
      for (auto& p : peers_) {
        if (!p->client) continue;
        if (!p->client->connecting()) p->client->abort();
        p->client->release_socket(nullptr);  // ends a pending handshake too
      }
    }
    bool sockets_done = true;
    for (auto& p : peers_) sockets_done = sockets_done && (!p->client || p->client->socket_released());
    if (sockets_done || now >= sockets_deadline) loop_->quit();
  });
}

}  // namespace

struct RudpMode::Impl {
  std::string io;
  std::string log_level = "warn";
  servers::RudpFlags flags;
  rudp::Options options;
};

RudpMode::RudpMode() : impl_(std::make_unique<Impl>()) {}
RudpMode::~RudpMode() = default;

void RudpMode::add_flags(CLI::App& app) {
  app.add_option("--io", impl_->io,
                 "rudp: the client loops' IO back end (default: the best available)");
  app.add_option("--log-level", impl_->log_level,
                 "rudp: sluice's log level (trace|debug|info|warn|error|off), on stderr")
      ->capture_default_str();
  servers::add_rudp_flags(app, impl_->flags);
}

bool RudpMode::prepare(const Options& o, std::string* error) {
  // sluice logs to stdout until told otherwise: stdout is the JSON line's.
  if (!init_logging(impl_->log_level, error)) return false;
  if (o.codec != "raw") {
    *error = servers::rudp_codec_error("loadgen", o.codec);
    return false;
  }
  if (!servers::rudp_options(impl_->flags, &impl_->options, error)) return false;
  if (o.size > impl_->options.max_message) {
    *error = "--size " + std::to_string(o.size) + " is over --rudp-max-message " +
             std::to_string(impl_->options.max_message);
    return false;
  }
  if (impl_->io.empty()) impl_->io = io::default_backend();
  io::BackendInfo info = io::probe(impl_->io);
  if (!info.available) {
    *error = "IO back end '" + impl_->io + "' is unavailable here: " + info.reason;
    return false;
  }
  return true;
}

const std::string& RudpMode::io() const { return impl_->io; }

std::unique_ptr<RudpWorker> RudpMode::worker(const Options& o, const Wire& w,
                                             std::vector<uint32_t> ids) {
  return std::make_unique<Load>(o, w, impl_->io, impl_->options, std::move(ids));
}

}  // namespace sluice::perf::loadgen
