// The bundled examples end to end, as subprocesses on every back end, with
// two loops: examples/chat_server (joining, chat lines to members only,
// /who gathered across loops, /nick, /quit, departures, bad nicknames) and
// examples/kv_server (SET/GET/DEL across connections and shards, binary
// values, TTL expiry and its cancellation, errors, a bad frame closing
// only its own connection). Both must exit 0 on SIGTERM and log no
// warnings or errors meanwhile.
//
// Waits are deadlines (a read gives up after kWait), never sleeps standing
// in for synchronisation. Where absence must be shown (nothing reached a
// client that has not joined; an expiry that was cancelled did not
// happen), the test first waits for something that the protocol orders
// after it.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "io/registry.h"
#include "tests/backend_params.h"
#include "tests/subprocess.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using Clock = std::chrono::steady_clock;
using testing::count_lines;
using testing::Proc;

constexpr std::chrono::milliseconds kWait = 5s;  // how long a reply may take at most

// A client socket read through poll() against deadlines: lines for the
// chat, length-prefixed frames for the key-value store.
class Peer {
 public:
  explicit Peer(uint16_t port) : fd_(testing::connect_local(port)) {}
  ~Peer() { close(); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool ok() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // The next line without its "\n"; "<eof>" or "<timeout>" if none came.
  std::string line(std::chrono::milliseconds limit = kWait) {
    const Clock::time_point end = Clock::now() + limit;
    size_t nl;
    while ((nl = buf_.find('\n')) == std::string::npos) {
      if (!fill(end)) return eof_ ? "<eof>" : "<timeout>";
    }
    std::string l = buf_.substr(0, nl);
    buf_.erase(0, nl + 1);
    return l;
  }
  // The next frame's payload (4-byte big-endian length prefix).
  std::optional<std::string> frame(std::chrono::milliseconds limit = kWait) {
    const Clock::time_point end = Clock::now() + limit;
    while (buf_.size() < 4 || buf_.size() < 4 + announced()) {
      if (!fill(end)) return std::nullopt;
    }
    std::string payload = buf_.substr(4, announced());
    buf_.erase(0, 4 + payload.size());
    return payload;
  }
  // Whatever arrives within `limit` (to show that nothing does).
  std::string pending(std::chrono::milliseconds limit) {
    const Clock::time_point end = Clock::now() + limit;
    while (fill(end)) {
    }
    return std::exchange(buf_, {});
  }
  // True once the server has closed the connection (EOF or reset), what
  // it still sent discarded.
  bool closed(std::chrono::milliseconds limit = kWait) {
    pending(limit);
    return eof_;
  }

 private:
  size_t announced() const {
    size_t n = 0;
    for (int i = 0; i < 4; ++i) n = n << 8 | static_cast<unsigned char>(buf_[i]);
    return n;
  }
  // Appends what one recv() brings, waiting until `end`; false on
  // timeout, EOF or error.
  bool fill(Clock::time_point end) {
    if (eof_ || fd_ < 0) return false;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      char b[16384];
      const ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = true;
        return false;
      }
      buf_.append(b, static_cast<size_t>(n));
      return true;
    }
  }

  int fd_;
  std::string buf_;
  bool eof_ = false;
};

std::string binary(const std::string& name) { return testing::server_binary(name, "examples"); }

// Warnings and errors in a server's log (spdlog's "[warn]", "[error]" ...).
size_t noisy_lines(const std::string& log) {
  return count_lines(log, "[warn") + count_lines(log, "[error") + count_lines(log, "[critical");
}

class Examples : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
  }
  // Starts an example on this back end with two loops; 0 if it failed.
  uint16_t start(const std::string& name) {
    server_.emplace(std::vector<std::string>{binary(name), "--io", GetParam(), "--port", "0",
                                             "--threads", "2"},
                    name);
    const uint16_t port = server_->port();
    EXPECT_NE(server_->out().find(" io=" + GetParam()), std::string::npos) << server_->out();
    return port;
  }
  // SIGTERM: a clean exit, and no warning or error logged in the whole run.
  void expect_clean_stop() {
    server_->signal(SIGTERM);
    EXPECT_EQ(server_->wait(10s), 0) << server_->err();
    EXPECT_EQ(noisy_lines(server_->err()), 0u) << server_->err();
  }
  std::optional<Proc> server_;
};

// ---- chat_server ----

constexpr const char* kGreeting = "* welcome! your nickname?";

// Reads `peer`'s lines up to its own join notice. Before it may come the
// notice of someone who joined just before: whether this client hears it
// depends on whether its loop ran that broadcast before or after this join.
void expect_joined(Peer& peer, const std::string& nick) {
  for (std::string l = peer.line(); l != "* " + nick + " joined"; l = peer.line()) {
    ASSERT_TRUE(l.starts_with("* ") && l.ends_with(" joined")) << nick << " got: " << l;
  }
}

TEST_P(Examples, ChatRoom) {
  const uint16_t port = start("chat_server");
  ASSERT_NE(port, 0) << server_->err();
  // Accepted round-robin: alice and carol on one loop, bob and dave on
  // the other, so every broadcast and /who crosses loops.
  Peer alice(port), bob(port), carol(port), dave(port);
  for (Peer* p : {&alice, &bob, &carol, &dave}) {
    ASSERT_TRUE(p->ok());
    ASSERT_EQ(p->line(), kGreeting);
  }

  alice.send("alice\n");
  ASSERT_EQ(alice.line(), "* alice joined");
  bob.send("  bob \r\n");  // trimmed; CRLF is a line end too
  ASSERT_NO_FATAL_FAILURE(expect_joined(bob, "bob"));
  EXPECT_EQ(alice.line(), "* bob joined");
  carol.send("carol\n");
  ASSERT_NO_FATAL_FAILURE(expect_joined(carol, "carol"));
  EXPECT_EQ(alice.line(), "* carol joined");
  EXPECT_EQ(bob.line(), "* carol joined");

  // Bad nicknames are refused, and the client may try again (dave does,
  // much later).
  const std::string bad = "! nickname: 1-16 characters, no spaces, no leading '/'";
  dave.send("dave smith\n\n   \n" + std::string(17, 'd') + "\n/who\n");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(dave.line(), bad) << i;

  alice.send("hello, everyone\n");
  for (Peer* p : {&alice, &bob, &carol}) EXPECT_EQ(p->line(), "alice: hello, everyone");

  bob.send("/who\n");
  EXPECT_EQ(bob.line(), "* online (3): alice, bob, carol");  // dave has not joined

  carol.send("/nick caroline\n");
  for (Peer* p : {&alice, &bob, &carol}) EXPECT_EQ(p->line(), "* carol is now caroline");
  carol.send("/nick two words\n/dance\n");
  EXPECT_EQ(carol.line(), bad);
  EXPECT_EQ(carol.line(), "! commands: /who, /nick NEW, /quit");

  // /quit: a goodbye, then the server closes; the others hear it.
  bob.send("/quit\n");
  EXPECT_EQ(bob.line(), "* bye");
  EXPECT_TRUE(bob.closed());
  for (Peer* p : {&alice, &carol}) EXPECT_EQ(p->line(), "* bob left");
  // A client that just disconnects leaves too.
  carol.close();
  EXPECT_EQ(alice.line(), "* caroline left");

  // /who visits every loop after the departures' broadcasts (each loop
  // runs its tasks in order), so by its answer every chat line has been
  // handed out on dave's loop too.
  alice.send("/who\n");
  EXPECT_EQ(alice.line(), "* online (1): alice");
  EXPECT_EQ(dave.pending(100ms), "") << "a client that has not joined heard the room";
  dave.send("dave\n");
  EXPECT_EQ(dave.line(), "* dave joined");  // the first thing dave hears since the greeting
  EXPECT_EQ(alice.line(), "* dave joined");
  dave.send("hi alice\n");
  for (Peer* p : {&alice, &dave}) EXPECT_EQ(p->line(), "dave: hi alice");

  expect_clean_stop();
  EXPECT_TRUE(alice.closed());
  EXPECT_TRUE(dave.closed());
}

// ---- kv_server ----

std::string framed(std::string_view payload) {
  const size_t n = payload.size();
  std::string f{static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                static_cast<char>(n)};
  return f.append(payload);
}

// Sends every command in one write (pipelined) and reads one reply each;
// "<none>" for a reply that did not come.
std::vector<std::string> pipeline(Peer& peer, const std::vector<std::string>& commands) {
  std::string out;
  for (const std::string& c : commands) out += framed(c);
  EXPECT_TRUE(peer.send(out));
  std::vector<std::string> replies;
  for (size_t i = 0; i < commands.size(); ++i) replies.push_back(peer.frame().value_or("<none>"));
  return replies;
}
std::string ask(Peer& peer, const std::string& command) { return pipeline(peer, {command})[0]; }

// kv_server's shard of a key with two loops (its own function; the same
// standard library).
size_t shard_of(std::string_view key) { return std::hash<std::string_view>{}(key) % 2; }

TEST_P(Examples, KeyValueStore) {
  const uint16_t port = start("kv_server");
  ASSERT_NE(port, 0) << server_->err();
  Peer a(port), b(port);  // one on each loop
  ASSERT_TRUE(a.ok() && b.ok());

  // Set on one connection, read on the other, pipelined: the replies come
  // back in command order although the keys live on both shards.
  std::vector<std::string> sets, gets, oks, values;
  std::set<size_t> shards;
  for (int i = 0; i < 16; ++i) {
    const std::string key = "key" + std::to_string(i), value = "value" + std::to_string(i);
    sets.push_back("SET " + key + " 0 " + value);
    gets.push_back("GET " + key);
    oks.push_back("OK");
    values.push_back("VALUE " + value);
    shards.insert(shard_of(key));
  }
  ASSERT_EQ(shards.size(), 2u) << "the keys should cover both shards";
  EXPECT_EQ(pipeline(a, sets), oks);
  EXPECT_EQ(pipeline(b, gets), values);

  EXPECT_EQ(ask(b, "DEL key3"), "DELETED");
  EXPECT_EQ(pipeline(a, {"GET key3", "DEL key3", "GET key4"}),
            (std::vector<std::string>{"NOT_FOUND", "NOT_FOUND", "VALUE value4"}));

  // A value is the rest of the frame: spaces, NULs, newlines, any byte.
  const std::string odd = "two  spaces\0nul\n\xff\x80 end "s;
  EXPECT_EQ(ask(a, "SET odd 0 " + odd), "OK");
  EXPECT_EQ(ask(b, "GET odd"), "VALUE " + odd);
  EXPECT_EQ(ask(b, "SET empty 0 "), "OK");
  EXPECT_EQ(ask(a, "GET empty"), "VALUE ");

  // Malformed commands are answered in turn, and the connection stays.
  const std::vector<std::string> replies =
      pipeline(a, {"GET key0", "FOO x", "GET", "GET a b", "DEL", "", "SET k", "SET k x v",
                   "SET k -1 v", "SET k 4294967296 v", "GET key1"});
  ASSERT_EQ(replies.size(), 11u);
  EXPECT_EQ(replies.front(), "VALUE value0");
  for (size_t i = 1; i + 1 < replies.size(); ++i) {
    EXPECT_TRUE(replies[i].starts_with("ERR ")) << i << ": " << replies[i];
  }
  EXPECT_EQ(replies.back(), "VALUE value1");

  // Expiry. GET right after SET finds the value, unless the round trip
  // itself took the whole TTL (then either answer is right); it is gone
  // once the TTL has passed (polled below, with the probes).
  const Clock::time_point set_at = Clock::now();
  const std::vector<std::string> r = pipeline(a, {"SET brief 150 soon gone", "GET brief"});
  const bool quick = Clock::now() - set_at < 150ms;
  EXPECT_EQ(r[0], "OK");
  if (quick) {
    EXPECT_EQ(r[1], "VALUE soon gone");
  }
  // Overwriting or deleting an entry cancels its expiry.
  EXPECT_EQ(pipeline(b, {"SET kept 150 old", "SET kept 0 new", "SET gone 150 x", "DEL gone",
                         "SET gone 0 back", "SET renewed 150 a", "SET renewed 60000 b"}),
            (std::vector<std::string>{"OK", "OK", "OK", "DELETED", "OK", "OK", "OK"}));
  // Probes with the same TTL, set after those, on both shards: once every
  // probe has expired, any timer those overwrites failed to cancel has
  // fired too (a loop runs its timers in deadline order).
  std::vector<std::string> probe_sets, probe_gets, all_gone(17, "NOT_FOUND");
  for (int i = 0; i < 16; ++i) {
    probe_sets.push_back("SET probe" + std::to_string(i) + " 150 p");
    probe_gets.push_back("GET probe" + std::to_string(i));
  }
  probe_gets.push_back("GET brief");
  EXPECT_EQ(pipeline(b, probe_sets), std::vector<std::string>(16, "OK"));
  const Clock::time_point deadline = Clock::now() + kWait;
  while (pipeline(a, probe_gets) != all_gone && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);  // polling pace, not synchronisation
  }
  EXPECT_EQ(pipeline(a, probe_gets), all_gone) << "entries with a TTL did not expire";
  EXPECT_EQ(pipeline(a, {"GET kept", "GET gone", "GET renewed"}),
            (std::vector<std::string>{"VALUE new", "VALUE back", "VALUE b"}));

  // A frame over the limit (1 MiB) or a garbage length closes only its
  // own connection.
  for (const std::string& bad : {framed(std::string(2 << 20, 'x')), "\xff\xff\xff\xffjunk"s}) {
    Peer c(port);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(ask(c, "GET key0"), "VALUE value0");
    c.send(bad);
    EXPECT_TRUE(c.closed()) << "a bad frame did not close the connection";
  }
  EXPECT_EQ(ask(a, "GET key0"), "VALUE value0");
  EXPECT_EQ(ask(b, "GET key1"), "VALUE value1");

  expect_clean_stop();
  EXPECT_TRUE(a.closed());
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Examples, ::testing::ValuesIn(testing::all_backends()),
                         testing::BackendName());

}  // namespace
}  // namespace sluice
