// chat_server: a chat room over lines of text, on any IO back end.
//   bazel run //examples:chat_server -- --port 7200    then: nc 127.0.0.1 7200
//
// Protocol: the server asks for a nickname; the client's first valid line
// is it ("* NAME joined" to all). Then each line goes to every member as
// "NAME: text", except the commands /who (the members, to the sender
// alone), /nick NEW and /quit. "* NAME left" when a member goes; "!"
// starts an error. Only members hear the room. Lines: at most 4 KiB.
// Threads: no shared state, no locks. A nickname lives in its connection
// (conn.state<Member>()), touched only on that connection's loop;
// broadcast() and gather() read each loop's members on that loop.
#include <algorithm>
#include <cstdio>
#include <utility>

#include <CLI/CLI.hpp>

#include "codec/factory.h"
#include "core/server.h"
#include "servers/common.h"

struct Member { std::string nick; };  // present once the client has joined

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t");
  return b == s.npos ? std::string_view() : s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// One word (it is one in every line it appears in) that cannot pass for a
// command.
bool valid_nick(std::string_view n) {
  return !n.empty() && n.size() <= 16 && n[0] != '/' &&
         std::ranges::none_of(n, [](unsigned char ch) { return ch <= ' ' || ch == 0x7f; });
}

class Chat final : public sluice::Handler {
 public:
  sluice::Server* server = nullptr;  // set before start()

  void on_open(sluice::Connection& c) override { c.send("* welcome! your nickname?"); }

  void on_message(sluice::Connection& c, std::string_view raw) override {
    const std::string_view line = trim(raw);
    const std::string_view cmd = line.substr(0, line.find(' '));
    const std::string_view arg = trim(line.substr(cmd.size()));
    Member* me = c.find_state<Member>();
    if (!me || cmd == "/nick") {  // a nickname: the first line, or /nick's
      const std::string nick(me ? arg : line);
      const char* bad = "! nickname: 1-16 characters, no spaces, no leading '/'";
      if (!valid_nick(nick)) return void(c.send(bad));
      if (me) return say("* " + std::exchange(me->nick, nick) + " is now " + nick);
      c.state<Member>().nick = nick;
      say("* " + nick + " joined");
    } else if (cmd == "/who") {
      who(c.id());
    } else if (cmd == "/quit") {
      c.send("* bye");
      c.close();  // graceful: "bye" is flushed first; on_close tells the others
    } else if (cmd.starts_with('/')) {
      c.send("! commands: /who, /nick NEW, /quit");
    } else if (!line.empty()) {
      say(me->nick + ": " + std::string(line));
    }
  }

  void on_close(sluice::Connection& c, sluice::CloseReason, int) override {
    if (Member* me = c.find_state<Member>()) say("* " + me->nick + " left");
  }

 private:
  void say(const std::string& text) {
    server->broadcast(text, [](sluice::Connection& c) { return c.find_state<Member>() != nullptr; });
  }

  // Each loop lists its members; the loop that finishes last replies.
  void who(uint64_t asker) {
    server->gather<std::string>(
        [](sluice::Connection& c) -> std::optional<std::string> {
          if (Member* m = c.find_state<Member>()) return m->nick;
          return std::nullopt;
        },
        [this, asker](std::vector<std::string> nicks) {
          std::ranges::sort(nicks);
          std::string list = "* online (" + std::to_string(nicks.size()) + "):";
          for (size_t i = 0; i < nicks.size(); ++i) list += (i ? ", " : " ") + nicks[i];
          server->send_to(asker, std::move(list));
        });
  }
};

int main(int argc, char** argv) {
  CLI::App app{"sluice chat room (try: nc 127.0.0.1 7200)"};
  sluice::ServerOptions opts{.port = 7200, .threads = 2};
  std::string log_level = "info", error;
  sluice::servers::add_server_flags(app, opts, log_level);
  CLI11_PARSE(app, argc, argv);
  if (int rc = sluice::servers::prepare_server(opts, log_level)) return rc;
  Chat chat;
  sluice::Server server(opts, chat, sluice::codec::make_codec({.name = "line", .max_frame = 4096}));
  chat.server = &server;
  if (server.start(&error) < 0) return std::fprintf(stderr, "chat_server: %s\n", error.c_str()), 1;
  sluice::servers::serve_until_signal(server, opts);  // then ~Server stops gracefully
}
