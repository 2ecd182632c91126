// libevent_echo: libevent's idiomatic echo (Debian's libevent-dev): an
// evconnlistener, a bufferevent per connection, and a read callback that
// moves the whole input evbuffer onto the output evbuffer (no copy of the
// data: evbuffer_add_buffer moves chains). Exits on SIGTERM/SIGINT.
//
//   libevent_echo --port 7000
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <csignal>
#include <cstdio>

#include "perf/peers/peer_util.h"

namespace {

void on_read(bufferevent* bev, void*) {
  evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

void on_event(bufferevent* bev, short what, void*) {
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev);
}

void on_accept(evconnlistener* l, evutil_socket_t fd, sockaddr*, int, void*) {
  peers::set_nodelay(fd);
  bufferevent* bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    evutil_closesocket(fd);
    return;
  }
  bufferevent_setcb(bev, on_read, nullptr, on_event, nullptr);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

void on_signal(evutil_socket_t, short, void* base) { event_base_loopbreak(static_cast<event_base*>(base)); }

}  // namespace

int main(int argc, char** argv) {
  peers::Args args = peers::parse_args(argc, argv, "libevent_echo");
  if (args.proto != "tcp") {
    std::fprintf(stderr, "libevent_echo: TCP only\n");
    return 2;
  }
  event_base* base = event_base_new();
  if (!base) {
    std::fprintf(stderr, "libevent_echo: event_base_new failed\n");
    return 1;
  }
  unsigned port = 0;
  int lfd = peers::bind_socket(args, false, true, &port);
  evconnlistener* listener =
      evconnlistener_new(base, on_accept, nullptr, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1, lfd);
  if (!listener) {
    std::fprintf(stderr, "libevent_echo: evconnlistener_new failed\n");
    return 1;
  }
  event* sigterm = evsignal_new(base, SIGTERM, on_signal, base);
  event* sigint = evsignal_new(base, SIGINT, on_signal, base);
  event_add(sigterm, nullptr);
  event_add(sigint, nullptr);
  peers::print_listening(args, port, "libevent");
  event_base_dispatch(base);
  evconnlistener_free(listener);
  event_free(sigterm);
  event_free(sigint);
  event_base_free(base);
  return 0;
}
