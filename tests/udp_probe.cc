#include "tests/udp_probe.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>

#include "core/net.h"
#include "io/backend.h"
#include "io/registry.h"

namespace sluice::testing {
namespace {

class ProbeChannel final : public io::Channel {
 public:
  explicit ProbeChannel(int fd) : io::Channel(fd, Kind::kDatagram) {}
  void on_datagram(const io::Datagram& d) override {
    (void)d;
    got_datagram = true;
  }
  void on_input(std::string_view data) override {
    (void)data;
    got_input = true;
  }
  void on_detached() override { detached = true; }
  bool got_datagram = false;
  bool got_input = false;
  bool detached = false;
};

std::string probe(const std::string& name) {
  std::string err;
  std::unique_ptr<io::Backend> backend = io::create(name, {}, &err);
  if (!backend) return {};  // unavailable: the caller skips for that reason
  int fd = bind_udp("127.0.0.1", 0, {});
  if (fd < 0) return {};
  auto ch = std::make_unique<ProbeChannel>(fd);
  int rc = backend->attach(*ch);
  if (rc == -EOPNOTSUPP) {
    ::close(fd);
    return name + ": attach() refuses kDatagram channels (EOPNOTSUPP): UDP not yet supported";
  }
  if (rc < 0) {
    ::close(fd);
    return {};
  }
  int tx = bind_udp("127.0.0.1", 0, {});
  sockaddr_storage to;
  socklen_t len;
  make_address("127.0.0.1", local_port(fd), &to, &len);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (int i = 0; !ch->got_datagram && !ch->got_input && std::chrono::steady_clock::now() < end;
       ++i) {
    if (i % 10 == 0) {
      ::sendto(tx, "probe", 5, 0, reinterpret_cast<sockaddr*>(&to), len);
    }
    backend->wait(std::chrono::milliseconds(10));
  }
  ::close(tx);
  const bool stream_only = ch->got_input && !ch->got_datagram;
  backend->detach(*ch);
  for (int i = 0; i < 200 && !ch->detached; ++i) backend->wait(std::chrono::milliseconds(10));
  if (!ch->detached) {
    // The back end may still refer to them: leak rather than free.
    (void)ch.release();
    (void)backend.release();
    return {};
  }
  ::close(fd);
  if (stream_only) {
    return name + ": delivers datagrams as stream bytes (on_input): UDP not yet supported";
  }
  return {};
}

}  // namespace

std::string udp_unsupported_reason(const std::string& backend) {
  static std::mutex mu;
  static std::map<std::string, std::string> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(backend);
  if (it != cache.end()) return it->second;
  return cache[backend] = probe(backend);
}

std::string udp_skip_reason(const std::string& backend) {
  const io::BackendInfo info = io::probe(backend);
  if (!info.available) return backend + " unavailable here: " + info.reason;
  const std::string why = udp_unsupported_reason(backend);
  return why.empty() ? why : why + " (not yet supported)";
}

}  // namespace sluice::testing
