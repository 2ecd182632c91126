// The heartbeat client's rudp session: an rudp::Client (its own UDP
// socket; each PING and PONG one rudp message, no codec: rudp frames
// messages itself) under the session logic shared with TCP
// (heartbeat_pinger_stream.h).
#include "rudp/rudp.h"
#include "servers/heartbeat_pinger_stream.h"

namespace sluice::servers::pinger_detail {

std::unique_ptr<Session> make_rudp_session(Pinger::Impl& p, size_t index) {
  rudp::ClientOptions c;
  c.host = p.server_host;  // resolved by Pinger::run
  c.port = p.opts.port;
  c.rudp = p.opts.rudp;
  c.rudp.connect_timeout = p.opts.connect_timeout;
  c.idle.reader = p.opts.interval * p.opts.misses;
  return std::make_unique<StreamSession<rudp::Client>>(p, index, [&p, c](Handler& h) {
    return std::make_unique<rudp::Client>(*p.loop, h, c);
  });
}

}  // namespace sluice::servers::pinger_detail
