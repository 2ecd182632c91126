#include "core/resolver.h"

#include <algorithm>
#include <utility>

#include "core/event_loop.h"

namespace sluice {

Resolver::~Resolver() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t Resolver::resolve(EventLoop& loop, std::string host, uint16_t port, int socktype,
                           Done done) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Started on first use, so numeric-only programs never pay for it.
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    id = next_id_++;
    Request& r = reqs_[id];
    r.loop = &loop;
    r.host = std::move(host);
    r.port = port;
    r.socktype = socktype;
    r.done = std::move(done);
  }
  cv_.notify_all();
  return id;
}

bool Resolver::cancel(uint64_t id) {
  Done dropped;  // destroyed outside the lock, on the caller's thread
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = reqs_.find(id);
    if (it == reqs_.end()) return false;
    // A lookup in progress finds its request gone and drops the result; a
    // queued deliver() finds nothing.
    dropped = std::move(it->second.done);
    reqs_.erase(it);
  }
  return true;
}

size_t Resolver::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reqs_.size();
}

bool Resolver::started() const {
  std::lock_guard<std::mutex> lock(mu_);
  return thread_.joinable();
}

void Resolver::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto next = reqs_.end();
    cv_.wait(lock, [&] {
      if (stop_) return true;
      next = std::find_if(reqs_.begin(), reqs_.end(),
                          [](const auto& kv) { return !kv.second.looked_up; });
      return next != reqs_.end();
    });
    if (stop_) return;
    const uint64_t id = next->first;
    const std::string host = next->second.host;
    const uint16_t port = next->second.port;
    const int socktype = next->second.socktype;
    lock.unlock();
    Result result;
    result.err = resolve_host(host, port, socktype, &result.addresses, &result.error);
    lock.lock();
    auto it = reqs_.find(id);
    if (it == reqs_.end()) continue;  // cancelled meanwhile
    it->second.result = std::move(result);
    it->second.looked_up = true;
    // `this` outlives the task (see Lifetime in the header). Posted under
    // the lock so a concurrent cancel() either removed the request already
    // or will make deliver() find nothing.
    it->second.loop->post([this, id] { deliver(id); });
  }
}

void Resolver::deliver(uint64_t id) {
  Done done;
  Result result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = reqs_.find(id);
    if (it == reqs_.end()) return;  // cancelled
    done = std::move(it->second.done);
    result = std::move(it->second.result);
    reqs_.erase(it);
  }
  if (done) done(std::move(result));
}

}  // namespace sluice
