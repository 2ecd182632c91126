// rudp's knobs, for servers (rudp::transport) and clients (rudp::Client).
// The defaults suit a LAN or the Internet alike; docs/RUDP.md explains each.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/source_limit.h"
#include "rudp/cc/controller.h"

namespace sluice::rudp {

struct Options {
  // Largest reliable message accepted from the peer (and sent to it: the
  // peer's own limit applies to what we send). Up to 1 GiB.
  size_t max_message = 1 << 20;
  // Flow control: stream bytes the peer may send beyond what our handler
  // has taken (the advertised window; RFC 9000 §4's MAX_DATA).
  size_t window = 4 << 20;
  // Bytes taken from the connection's output and not yet acknowledged, at
  // most (the socket send buffer's analogue). More waits in the
  // connection's output, where the water marks see it.
  size_t send_buffer = 4 << 20;
  // Largest datagram sent (headers of IP and UDP not counted): 1400 fits
  // a 1500-byte Ethernet MTU over IPv4 or IPv6.
  size_t max_datagram = 1400;
  // How long an ACK may wait for more packets to cover (RFC 9000
  // §13.2.1; QUIC's default). Long enough for a reply or the next message
  // to carry it: a pure ACK is a packet of its own, and on a jittery link
  // that keeps each flow in order, every extra packet delays the others.
  std::chrono::milliseconds max_ack_delay{25};
  // While at most this many stream bytes are unacknowledged, a packet
  // that carries new data carries them again ahead of it (as game
  // protocols since Quake 3 resend unacknowledged commands in every
  // packet). A lost small message is then recovered by the next packet
  // (one message interval later) instead of by loss detection and a
  // retransmission (more than a round trip later), and the messages behind
  // it are not held up. Costs bandwidth only while little is in flight:
  // never on a bulk transfer. 0: off.
  size_t redundant_bytes = 1024;
  // Nothing received for this long: the connection is dead (-ETIMEDOUT).
  std::chrono::milliseconds idle_timeout{30000};
  // Nothing sent or received for this long: send a PING, so a live but
  // quiet connection never reaches idle_timeout. 0: off.
  std::chrono::milliseconds keepalive{10000};
  // After our FIN is acknowledged, how long to wait for the peer's before
  // giving up with a reset (TCP's FIN_WAIT_2 timeout, shortened).
  std::chrono::milliseconds close_timeout{3000};
  // RTT assumed before the first sample (RFC 9002 §6.2.2).
  std::chrono::milliseconds initial_rtt{333};
  // Unreliable messages waiting to be sent, at most (the oldest is dropped).
  size_t unreliable_queue = 64;
  // Congestion controller (rudp/cc/registry.h: cubic, newreno, bbr, vegas,
  // fixed) and its settings; docs/CONGESTION.md compares them.
  std::string cc = "cubic";
  cc::Config cc_config{};
  // Client: connect attempts (INITIAL) are resent after 250 ms, doubling,
  // until this passes (six attempts in 10 s; TCP's SYN retries go on for
  // about two minutes).
  std::chrono::milliseconds connect_timeout{10000};
  // Server: datagrams queued for the socket at most (UdpEndpoint).
  size_t max_queued = 16384;
  // Server: bind with SO_REUSEPORT even with one loop, so that several
  // processes share the port (servers' --workers). With more loops it is
  // always set. The kernel keeps a peer on one socket only while the set of
  // sockets stays the same: a process that leaves or joins moves peers to
  // sockets that do not know them (their connections then time out).
  bool reuse_port = false;
  // ECN (RFC 3168, used as QUIC does): mark every datagram ECT(0) and
  // react to the peer's CE counts as to a loss (docs/RUDP.md, "ECN").
  // Received codepoints are counted and reported either way.
  bool ecn = true;
  // Server: a token bucket per source address on handshake packets
  // (INITIAL), checked before any MAC is computed or RETRY sent
  // (core/source_limit.h; max_conns does not apply here: see
  // ServerOptions::per_source). One source's flood then costs a table
  // lookup per datagram and gets no answers, so it can neither burn the
  // server's CPU on MACs nor aim our RETRYs at a victim. Spoofed floods
  // from many addresses meet the table's shared overflow bucket. Off by
  // default.
  SourceLimitOptions handshake_limit{};
};

}  // namespace sluice::rudp
