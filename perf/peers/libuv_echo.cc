// libuv_echo: an idiomatic, good-faith fast libuv echo server (Debian's
// libuv1-dev). One default loop; each read is written back with
// uv_try_write and only the part the kernel did not take is copied into a
// uv_write request (libuv keeps writes in order: uv_try_write refuses while
// a request is queued). Reads land in one shared 64 KiB buffer, which is
// safe because the loop is single-threaded and nothing keeps it.
// Exits on SIGTERM/SIGINT.
//
//   libuv_echo --port 7000
#include <uv.h>

#include <cstdlib>
#include <cstring>

#include "perf/peers/peer_util.h"

namespace {

char g_buf[64 * 1024];

struct WriteReq {
  uv_write_t req;
  uv_buf_t buf;
};

void on_close(uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); }

void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
  buf->base = g_buf;
  buf->len = sizeof g_buf;
}

void on_written(uv_write_t* req, int status) {
  auto* w = reinterpret_cast<WriteReq*>(req);
  if (status < 0 && !uv_is_closing(reinterpret_cast<uv_handle_t*>(req->handle))) {
    uv_close(reinterpret_cast<uv_handle_t*>(req->handle), on_close);
  }
  std::free(w->buf.base);
  delete w;
}

void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  if (nread < 0) {  // UV_EOF or an error
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(s))) uv_close(reinterpret_cast<uv_handle_t*>(s), on_close);
    return;
  }
  if (nread == 0) return;
  uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(nread));
  int w = uv_try_write(s, &out, 1);
  if (w == UV_EAGAIN) w = 0;
  if (w < 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(s), on_close);
    return;
  }
  if (w < nread) {
    auto* req = new WriteReq;
    size_t rest = static_cast<size_t>(nread) - static_cast<size_t>(w);
    req->buf = uv_buf_init(static_cast<char*>(std::malloc(rest)), static_cast<unsigned>(rest));
    std::memcpy(req->buf.base, buf->base + w, rest);
    uv_write(&req->req, s, &req->buf, 1, on_written);
  }
}

void on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* client = new uv_tcp_t;
  uv_tcp_init(server->loop, client);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(client)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), on_close);
    return;
  }
  uv_tcp_nodelay(client, 1);
  uv_read_start(reinterpret_cast<uv_stream_t*>(client), on_alloc, on_read);
}

void on_signal(uv_signal_t* h, int) { uv_stop(h->loop); }

}  // namespace

int main(int argc, char** argv) {
  peers::Args args = peers::parse_args(argc, argv, "libuv_echo");
  if (args.proto != "tcp") {
    std::fprintf(stderr, "libuv_echo: TCP only\n");
    return 2;
  }
  uv_loop_t* loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  sockaddr_in addr;
  uv_ip4_addr(args.host.c_str(), static_cast<int>(args.port), &addr);
  int r = uv_tcp_bind(&server, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(&server), 4096, on_connection);
  if (r != 0) {
    std::fprintf(stderr, "libuv_echo: %s\n", uv_strerror(r));
    return 1;
  }
  sockaddr_in bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&server, reinterpret_cast<sockaddr*>(&bound), &len);

  uv_signal_t sigterm, sigint;
  uv_signal_init(loop, &sigterm);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);

  peers::print_listening(args, ntohs(bound.sin_port), "libuv");
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
