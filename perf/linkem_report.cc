#include "perf/linkem_report.h"

#include <cstdio>
#include <cstring>

#include <fmt/format.h>

namespace sluice::perf::linkem {

void print_report(const RunReport& r) {
  for (const DirectionReport* d : {&r.up, &r.down}) {
    const LinkStats& s = d->stats;
    fmt::print(stderr,
               "linkem: {:<4} ({}): in {} pkts ({} B), delivered {} pkts ({} B), in flight at exit {}, "
               "dropped by the kernel before linkem read them {}\n",
               d->name, d->route, s.packets_in, s.bytes_in, s.delivered, s.bytes_delivered, d->in_flight,
               d->tun_drops);
    fmt::print(stderr,
               "linkem:      lost {} (random {}, GE {}), duplicated {}, reordered {} (delivered out of "
               "order {}), queue drops {} ({} B), max queue {} pkts / {} B{}\n",
               s.lost_random + s.lost_ge, s.lost_random, s.lost_ge, s.duplicated, s.reordered, s.out_of_order,
               s.queue_drops, s.queue_drop_bytes, s.max_queue_packets, s.max_queue_bytes,
               d->write_errors ? fmt::format(", TUN write errors {} (last: {})", d->write_errors,
                                             std::strerror(d->last_write_errno))
                               : "");
    const DelaySummary& dl = d->delay;
    fmt::print(stderr,
               "linkem:      one-way delay of {} delivered pkts: mean {:.2f} ms, p50 {:.2f}, p95 {:.2f}, "
               "p99 {:.2f}, max {:.2f} ms\n",
               dl.count, dl.mean_ms, dl.p50_ms, dl.p95_ms, dl.p99_ms, dl.max_ms);
  }
}

std::string report_json(const RunReport& r) {
  std::string json = fmt::format(
      "{{\n  \"near_ns\": \"{}\", \"far_ns\": \"{}\",\n  \"near_addr\": \"{}\", \"far_addr\": \"{}\",\n"
      "  \"seed\": {}, \"mtu\": {}, \"seconds\": {:.3f}, \"exit_status\": {}",
      r.near_ns, r.far_ns, r.near_addr, r.far_addr, r.seed, r.mtu, r.seconds, r.exit_status);
  for (const DirectionReport* d : {&r.up, &r.down}) {
    const LinkStats& s = d->stats;
    const LinkParams& p = d->params;
    json += fmt::format(
        ",\n  \"{}\": {{\"params\": {{\"delay_ms\": {}, \"jitter_ms\": {}, \"loss\": {}, \"ge_p\": {}, "
        "\"ge_r\": {}, \"ge_loss_bad\": {}, \"ge_loss_good\": {}, \"dup\": {}, \"reorder\": {}, "
        "\"reorder_ms\": {}, \"order\": \"{}\", \"rate_bps\": {}, \"queue_packets\": {}, \"queue_bytes\": {}}},\n"
        "    \"packets_in\": {}, \"bytes_in\": {}, \"delivered\": {}, \"bytes_delivered\": {}, "
        "\"lost_random\": {}, \"lost_ge\": {}, \"duplicated\": {}, \"reordered\": {}, "
        "\"out_of_order\": {}, \"queue_drops\": {}, \"queue_drop_bytes\": {}, "
        "\"max_queue_packets\": {}, \"max_queue_bytes\": {}, \"in_flight_at_exit\": {}, "
        "\"write_errors\": {}, \"tun_drops\": {},\n"
        "    \"delay_ms\": {{\"count\": {}, \"mean\": {:.3f}, \"p50\": {:.3f}, \"p95\": {:.3f}, "
        "\"p99\": {:.3f}, \"max\": {:.3f}}}}}",
        d->name, p.delay_ns / 1e6, p.jitter_ns / 1e6, p.loss, p.ge_p, p.ge_r, p.ge_loss_bad, p.ge_loss_good,
        p.dup, p.reorder, p.reorder_ns / 1e6, p.order_per_flow ? "flow" : "link", p.rate_bps, p.queue_packets, p.queue_bytes, s.packets_in,
        s.bytes_in, s.delivered, s.bytes_delivered, s.lost_random, s.lost_ge, s.duplicated, s.reordered,
        s.out_of_order, s.queue_drops, s.queue_drop_bytes, s.max_queue_packets, s.max_queue_bytes,
        d->in_flight, d->write_errors, d->tun_drops, d->delay.count, d->delay.mean_ms, d->delay.p50_ms,
        d->delay.p95_ms, d->delay.p99_ms, d->delay.max_ms);
  }
  return json + "\n}\n";
}

}  // namespace sluice::perf::linkem
