// The heartbeat client's TCP session: a sluice::Client (through the
// pinger's Connector, with heartbeat's length-prefix codec, TLS when
// PingerOptions::tls is set) under the
// session logic shared with rudp (heartbeat_pinger_stream.h).
#include "core/client.h"
#include "servers/heartbeat_pinger_stream.h"

namespace sluice::servers::pinger_detail {

std::unique_ptr<Session> make_tcp_session(Pinger::Impl& p, size_t index) {
  ClientOptions c;
  c.host = p.opts.host;
  c.port = p.opts.port;
  c.connect_timeout = p.opts.connect_timeout;
  c.idle.reader = p.opts.interval * p.opts.misses;
  c.tls = p.opts.tls;
  return std::make_unique<StreamSession<Client>>(p, index, [&p, c](Handler& h) {
    return std::make_unique<Client>(*p.loop, *p.connector, h, p.codec.get(), c);
  });
}

}  // namespace sluice::servers::pinger_detail
