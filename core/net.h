// Small socket helpers shared by servers and clients. Thread-safe (they
// touch only their arguments). Errors are returned as -errno.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

// Resolves a numeric host ("127.0.0.1", "::1", "0.0.0.0", "localhost") and
// port into addr. Returns 0 or -EINVAL.
int make_address(const std::string& host, uint16_t port, sockaddr_storage* addr,
                 socklen_t* len);

// The listening socket: SO_REUSEADDR (rebind while old connections sit in
// TIME_WAIT), SO_REUSEPORT (several sockets share a port; the kernel
// spreads connections), and the accept backlog.
struct ListenOptions {
  int backlog = 1024;
  bool reuse_addr = true;
  bool reuse_port = false;
  // TCP_DEFER_ACCEPT: the kernel completes the handshake but queues the
  // connection for accept() only once data arrives (or, after this many
  // seconds, once its SYN-ACK retries end; Linux then still hands it over).
  // A connect-and-say-nothing flood then costs no accept, no descriptor
  // and no wakeup. 0: off. Not for protocols where the server speaks first.
  int defer_accept_s = 0;
};

// socket + bind + listen, close-on-exec. Returns the fd or -errno.
int listen_tcp(const std::string& host, uint16_t port, const ListenOptions& opts);

// What the network namespace's settings do to a listener with `opts`, as
// warning lines for a server's log: SYN cookies off (a SYN flood fills the
// SYN queue and real clients time out, docs/ROBUSTNESS.md), a backlog the
// kernel caps at net.core.somaxconn. Reads /proc/sys; a setting it cannot
// read is not warned about. The pure part takes the values (-1: unknown).
std::vector<std::string> listen_warnings(const ListenOptions& opts);
std::vector<std::string> listen_warnings(const ListenOptions& opts, int syncookies,
                                         int somaxconn, int max_syn_backlog);

// A free port for several SO_REUSEPORT sockets to share (worker processes
// given port 0): binds a socket of `type` (SOCK_STREAM or SOCK_DGRAM) to
// host:0 with SO_REUSEADDR and SO_REUSEPORT and stores its port. Returns
// the socket, or -errno. Keep a TCP one open while the port is in use: it
// holds the port and, never listening, takes no connections. Close a UDP
// one before serving: a bound UDP socket would get its share of datagrams.
int reserve_port(const std::string& host, int type, uint16_t* port);

// Per-connection TCP options, applied to accepted sockets (Server) and to
// connecting ones before connect() (Connector/Client). Zero means "leave
// the system default".
struct TcpOptions {
  bool no_delay = true;     // TCP_NODELAY: no Nagle delay for small writes
  bool keep_alive = false;  // SO_KEEPALIVE: kernel probes on idle links
  int keep_idle_s = 0;      // TCP_KEEPIDLE: idle time before the first probe
  int keep_interval_s = 0;  // TCP_KEEPINTVL: between probes
  int keep_count = 0;       // TCP_KEEPCNT: unanswered probes before reset
  // TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before
  // the kernel resets the connection (bounds a dead peer's cost even when
  // the application keeps writing).
  std::chrono::milliseconds user_timeout{0};
};

// Applies every option that asks for something (all are attempted).
// Returns 0, or the first failure as -errno.
int apply_tcp_options(int fd, const TcpOptions& opts);

// The port a bound socket got (for port 0), or 0 on error.
uint16_t local_port(int fd);

// "host:port" of the peer ("[::1]:port" for IPv6), or "?" on error.
std::string peer_name(int fd);

// A peer's IPv4 or IPv6 address and port in 20 bytes, formatted only when
// asked (a connection keeps one; a std::string would cost 32 bytes, and
// more for IPv6). Other families (AF_UNIX ...) format as "?".
struct PeerAddr {
  uint8_t family = 0;  // AF_INET, AF_INET6, or 0: unknown
  uint16_t port = 0;   // host order
  unsigned char addr[16] = {};

  // getpeername() of a connected socket.
  static PeerAddr of(int fd);
  // From a socket address (a datagram's source).
  static PeerAddr from(const sockaddr* addr, socklen_t len);
  std::string str() const;
};

// Raises the soft descriptor limit to the hard limit, so a process can
// hold as many sockets as the machine allows. Returns the new soft limit.
size_t raise_fd_limit();

// Blocking connect with close-on-exec and TCP_NODELAY; returns fd or
// -errno. For tests and simple clients (event-loop code uses Client).
int connect_tcp(const std::string& host, uint16_t port);

// What the kernel knows of a TCP connection's progress (TCP_INFO), whatever
// the IO back end has reported so far. Idle detection asks it before it
// calls a peer idle: input may be queued in the socket but not read yet
// (the loop stalled), and a large send keeps draining while the back end
// reports progress at its own granularity.
struct TcpProgress {
  uint64_t bytes_acked = 0;  // our output the peer acknowledged so far
  // How long ago the last data segment arrived from the peer, and the last
  // ACK (milliseconds, jiffies granularity).
  std::chrono::milliseconds since_data_recv{0};
  std::chrono::milliseconds since_ack_recv{0};
};
// 0, or -errno when unavailable (not TCP, kernel < 4.1).
int tcp_progress(int fd, TcpProgress* out);

// Whether the peer's kernel has acknowledged our FIN (and so every byte
// before it): after shutdown(SHUT_WR), TCP_INFO's state left FIN_WAIT1.
// From then on closing cannot cost the peer any of our data or its orderly
// EOF, even if unread input makes Linux answer with a reset. 1 yes, 0 not
// yet, -errno when unknown (not TCP).
int tcp_fin_acked(int fd);

// The kernel's smoothed RTT estimate for a TCP connection (TCP_INFO
// tcpi_rtt, microseconds), or -errno (not TCP).
int64_t tcp_rtt_us(int fd);

// Whether the socket's receive queue holds input not read yet (FIONREAD:
// TCP bytes, or a UDP datagram). Idle detection asks it too: input the
// kernel holds means the peer was not idle, however far behind the reader.
bool input_queued(int fd);

// A bound UDP socket (close-on-exec): SO_REUSEADDR/SO_REUSEPORT as asked,
// SO_RCVBUF/SO_SNDBUF when > 0. Returns the fd or -errno.
struct UdpSocketOptions {
  bool reuse_addr = false;
  bool reuse_port = false;
  int rcvbuf = 0;
  int sndbuf = 0;
};
int bind_udp(const std::string& host, uint16_t port, const UdpSocketOptions& opts);

// ECN on a UDP socket (RFC 3168): receive_codepoints turns IP_RECVTOS (and,
// on an IPv6 socket, IPV6_RECVTCLASS) on, so each received datagram's
// codepoint reaches io::Datagram::ecn; the low two bits of IP_TOS /
// IPV6_TCLASS become `send_codepoint` (0 Not-ECT, 2 ECT(0) ...), the mark
// on everything the socket sends from now on (the rest of the byte is
// kept). Returns 0 or -errno (the first failure; an IPv6 socket's IPv4
// options are best effort).
int set_udp_ecn(int fd, bool receive_codepoints, uint8_t send_codepoint);

// "host:port" ("[v6]:port") of a socket address, or "?".
std::string address_name(const sockaddr* addr, socklen_t len);

}  // namespace sluice
