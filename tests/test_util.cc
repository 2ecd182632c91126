#include "tests/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "core/net.h"
#include "tests/test_thread.h"

namespace sluice::testing {

static size_t count_dir(const char* path) {
  size_t n = 0;
  if (DIR* d = ::opendir(path)) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
  }
  return n;
}

size_t count_fds() { return count_dir("/proc/self/fd") - 1; }  // minus opendir's
size_t thread_count() { return count_dir("/proc/self/task"); }

size_t rss_bytes() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<size_t>(resident) * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    for (int k = 0; k < 8; ++k) s[i + k] = static_cast<char>(v >> (8 * k));
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

int connect_local(uint16_t port) { return connect_tcp("127.0.0.1", port); }

void set_recv_timeout(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

bool write_chunked(int fd, std::string_view data, std::mt19937_64& rng) {
  size_t off = 0;
  while (off < data.size()) {
    // Mostly small pieces (split frames), sometimes big ones (coalesced).
    size_t max = (rng() % 4 == 0) ? 65536 : 64;
    size_t n = std::min(data.size() - off, 1 + static_cast<size_t>(rng() % max));
    ssize_t w = ::send(fd, data.data() + off, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(w);
  }
  return true;
}

std::string read_n(int fd, size_t n) {
  std::string out;
  out.reserve(n);
  char buf[65536];
  while (out.size() < n) {
    ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (r > 0) {
      out.append(buf, static_cast<size_t>(r));
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  return out;
}

bool wait_closed(int fd, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[65536];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r == 0) return true;
    if (r < 0 && errno != EAGAIN && errno != EINTR) return true;
  }
  return false;
}

std::string echo_through(int fd, const std::string& data, uint64_t seed) {
  TestThread writer([fd, &data, seed](std::stop_token st) {
    UnblockOnStop unblock(st, fd);
    std::mt19937_64 rng(seed);
    write_chunked(fd, data, rng);
  });
  std::string got = read_n(fd, data.size());
  // A short echo (timeout, reset): the writer may be stuck in send() on a
  // server that stopped reading. Shutting the socket down ends it (the
  // test fails anyway); a full echo means it is done or about to be.
  if (got.size() < data.size()) writer.request_stop();
  writer.join();
  return got;
}

ConcurrentResult concurrent_echo(uint16_t port, size_t conns, size_t bytes,
                                 int timeout_ms) {
  struct Peer {
    int fd = -1;
    std::string data;
    size_t sent = 0, got = 0;
    bool done = false;
  };
  ConcurrentResult res;
  std::vector<Peer> peers(conns);
  for (size_t i = 0; i < conns; ++i) {
    int fd = connect_local(port);
    if (fd < 0) {
      ++res.connect_failed;
      peers[i].done = true;
      continue;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    peers[i].fd = fd;
    peers[i].data = random_bytes(bytes, 1000 + i);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<pollfd> pfds;
  std::vector<size_t> idx;
  char buf[65536];
  for (;;) {
    pfds.clear();
    idx.clear();
    for (size_t i = 0; i < conns; ++i) {
      Peer& p = peers[i];
      if (p.done) continue;
      short ev = POLLIN;
      if (p.sent < p.data.size()) ev |= POLLOUT;
      pfds.push_back({p.fd, ev, 0});
      idx.push_back(i);
    }
    if (pfds.empty() || std::chrono::steady_clock::now() > deadline) break;
    if (::poll(pfds.data(), pfds.size(), 100) < 0) break;
    for (size_t k = 0; k < pfds.size(); ++k) {
      Peer& p = peers[idx[k]];
      if (pfds[k].revents & POLLOUT) {
        ssize_t w = ::send(p.fd, p.data.data() + p.sent, p.data.size() - p.sent, MSG_NOSIGNAL);
        if (w > 0) p.sent += static_cast<size_t>(w);
      }
      if (pfds[k].revents & (POLLIN | POLLERR | POLLHUP)) {
        ssize_t r = ::recv(p.fd, buf, sizeof buf, 0);
        if (r > 0) {
          if (p.data.compare(p.got, static_cast<size_t>(r), buf, static_cast<size_t>(r)) != 0) {
            ++res.corrupt;
            p.done = true;
            continue;
          }
          p.got += static_cast<size_t>(r);
          if (p.got == p.data.size()) {
            ++res.ok;
            p.done = true;
          }
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          if (p.got == 0) ++res.refused; else ++res.corrupt;
          p.done = true;
        }
      }
    }
  }
  for (Peer& p : peers) {
    if (!p.done) ++res.corrupt;  // timed out
    if (p.fd >= 0) ::close(p.fd);
  }
  return res;
}

std::string frame(std::string_view payload) {
  std::string f(4, '\0');
  const uint32_t n = static_cast<uint32_t>(payload.size());
  f[0] = static_cast<char>(n >> 24);
  f[1] = static_cast<char>(n >> 16);
  f[2] = static_cast<char>(n >> 8);
  f[3] = static_cast<char>(n);
  f.append(payload);
  return f;
}

}  // namespace sluice::testing
