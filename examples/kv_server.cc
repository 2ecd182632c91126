// kv_server: an in-memory key-value store, sharded over the event loops.
// Frames: a 4-byte big-endian length, then the payload. Commands: "SET key
// ttl_ms value" (ttl_ms 0: no expiry; the value is the rest of the frame,
// any bytes), "GET key", "DEL key". One reply frame each, in command order:
// OK, VALUE <value>, NOT_FOUND, DELETED, ERR <reason>.
// Threads, shared-nothing: shard i (a map, its expiry timers) belongs to
// loop i and only loop i's thread touches it. A command is posted to its
// key's shard (hash % loops), its reply back to the connection's loop.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>
#include <unordered_map>

#include <CLI/CLI.hpp>

#include "codec/factory.h"
#include "core/server.h"
#include "servers/common.h"

struct Entry { std::string value; sluice::TimerId expiry = 0; };  // 0: none
// Shards answer at their own pace: a reply that overtook an earlier one waits.
struct Replies { uint64_t asked = 0, sent = 0; std::map<uint64_t, std::string> held; };

void deliver(sluice::Connection& c, uint64_t seq, std::string reply) {
  Replies& r = c.state<Replies>();
  r.held.emplace(seq, std::move(reply));
  for (auto n = r.held.extract(r.sent); !n.empty(); n = r.held.extract(++r.sent)) c.send(n.mapped());
}

class Kv final : public sluice::Handler {
 public:
  sluice::Server* server = nullptr;  // set before start()
  std::vector<std::unordered_map<std::string, Entry>> shards;  // [i]: loop i's

  void on_message(sluice::Connection& c, std::string_view f) override {
    const uint64_t seq = c.state<Replies>().asked++;
    auto word = [&f] {  // cuts the first word off f
      const std::string_view w = f.substr(0, f.find(' '));
      f.remove_prefix(std::min(w.size() + 1, f.size()));
      return w;
    };
    const std::string_view op = word(), key = word(), ttl = op == "SET" ? word() : "0";
    if (key.empty() || (op != "SET" && ((op != "GET" && op != "DEL") || !f.empty()))) {
      return deliver(c, seq, "ERR usage: SET key ttl_ms value | GET key | DEL key");
    }
    uint32_t ms = 0;
    const auto [end, ec] = std::from_chars(ttl.data(), ttl.data() + ttl.size(), ms);
    if (ec != std::errc() || end != ttl.data() + ttl.size()) return deliver(c, seq, "ERR bad ttl_ms");
    const size_t i = std::hash<std::string_view>{}(key) % server->loop_count();
    server->post(i, [this, i, seq, ms, op = op[0], id = c.id(), key = std::string(key),
                     value = std::string(f)]() mutable {
      std::string reply = apply(i, op, key, ms, std::move(value));
      server->run_on(id, [seq, reply](sluice::Connection* c) { if (c) deliver(*c, seq, reply); });
    });
  }

  // On loop i, against shard i.
  std::string apply(size_t i, char op, const std::string& key, uint32_t ms, std::string value) {
    auto& shard = shards[i];
    auto it = shard.find(key);
    if (op == 'G') return it == shard.end() ? "NOT_FOUND" : "VALUE " + it->second.value;
    if (it != shard.end()) server->loop(i).cancel(it->second.expiry);  // overwritten or deleted
    if (op == 'D') return shard.erase(key) ? "DELETED" : "NOT_FOUND";
    Entry& e = shard.insert_or_assign(key, Entry{std::move(value)}).first->second;
    auto expire = [&shard, key] { shard.erase(key); };  // only its own entry: see cancel above
    if (ms) e.expiry = server->loop(i).run_after(std::chrono::milliseconds(ms), expire);
    return "OK";
  }
};

int main(int argc, char** argv) {
  CLI::App app{"sluice key-value store (length-prefixed frames)"};
  sluice::ServerOptions opts{.port = 7300, .threads = 2};
  std::string log_level = "info", error;
  sluice::servers::add_server_flags(app, opts, log_level);
  CLI11_PARSE(app, argc, argv);
  if (int rc = sluice::servers::prepare_server(opts, log_level)) return rc;
  Kv kv;
  sluice::Server server(opts, kv, sluice::codec::make_codec({.name = "length"}));
  kv.server = &server;
  kv.shards.resize(server.loop_count());  // one shard per loop
  if (server.start(&error) < 0) return std::fprintf(stderr, "kv_server: %s\n", error.c_str()), 1;
  sluice::servers::serve_until_signal(server, opts);  // then ~Server stops gracefully
}
