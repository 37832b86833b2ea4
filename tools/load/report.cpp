#include "tools/load/report.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <unistd.h>

namespace rg::load {

namespace {

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, format);
  const int n = std::vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  return std::string(buf, n < 0 ? 0 : std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
}

double ms(std::uint64_t us) { return static_cast<double>(us) / 1000.0; }

std::uint64_t failed_total(const StepStats& s) {
  std::uint64_t n = 0;
  for (std::size_t i = 1; i < outcome_count; ++i) n += s.outcomes[i];
  return n;
}

std::string other_detail_text(const OtherDetail& d, bool json) {
  std::string out;
  const auto add = [&](const std::string& key, std::uint64_t n) {
    if (n == 0) return;
    if (!out.empty()) out += json ? "," : ", ";
    out += json ? fmt("\"%s\":%llu", key.c_str(), static_cast<unsigned long long>(n))
                : fmt("%s: %llu", key.c_str(), static_cast<unsigned long long>(n));
  };
  for (std::size_t e = 0; e < d.by_errno.size(); ++e) {
    const char* name = strerrorname_np(static_cast<int>(e));
    add(fmt("errno %zu (%s)", e, name ? name : "?"), d.by_errno[e]);
  }
  for (std::size_t s = 0; s < d.by_status.size(); ++s) add(fmt("http %zu", s), d.by_status[s]);
  for (std::size_t o = 0; o < d.by_oddity.size(); ++o)
    add(std::string(oddity_name(static_cast<Oddity>(o))), d.by_oddity[o]);
  return out;
}

std::string percentiles_json(const Histogram& h, double scale) {
  return fmt("{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,\"count\":%llu}",
             static_cast<double>(h.percentile(50)) * scale, static_cast<double>(h.percentile(90)) * scale,
             static_cast<double>(h.percentile(99)) * scale, static_cast<double>(h.percentile(99.9)) * scale,
             static_cast<double>(h.max()) * scale, static_cast<unsigned long long>(h.count()));
}

std::string percentiles_text(const Histogram& h, double scale, const char* unit) {
  if (h.count() == 0) return "(none)";
  return fmt("p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f %s  (%llu samples)",
             static_cast<double>(h.percentile(50)) * scale, static_cast<double>(h.percentile(90)) * scale,
             static_cast<double>(h.percentile(99)) * scale, static_cast<double>(h.percentile(99.9)) * scale,
             static_cast<double>(h.max()) * scale, unit, static_cast<unsigned long long>(h.count()));
}

std::string cpu_text(const CpuWindow& w) {
  return fmt("client cpu %.2f s over %.2f s wall (%.0f%% of one core)", w.cpu_s, w.wall_s, w.utilisation() * 100);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt("\\u%04x", c);
      continue;
    }
    out += c;
  }
  return out;
}

double safe_div(double a, double b) { return b > 0 ? a / b : 0; }

// One line for people: the spread of attempts and upgrades over sources
// (the JSON has every row).
std::string by_source_text(const RunReport& r) {
  if (r.by_source.size() < 2) return "";
  const int family = r.target ? r.target->family : AF_INET;
  std::size_t att_lo = 0, att_hi = 0, up_lo = 0, up_hi = 0;
  for (std::size_t i = 1; i < r.by_source.size(); ++i) {
    const SourceCounts& c = r.by_source[i];
    if (c.attempted < r.by_source[att_lo].attempted) att_lo = i;
    if (c.attempted > r.by_source[att_hi].attempted) att_hi = i;
    if (c.outcomes[0] < r.by_source[up_lo].outcomes[0]) up_lo = i;
    if (c.outcomes[0] > r.by_source[up_hi].outcomes[0]) up_hi = i;
  }
  const auto name = [&](std::size_t i) {
    return source_name(r.sources, family, static_cast<std::uint32_t>(i));
  };
  return fmt("  by source (%zu): attempted %llu (%s) .. %llu (%s), upgraded %llu (%s) .. %llu (%s)\n",
             r.by_source.size(), static_cast<unsigned long long>(r.by_source[att_lo].attempted), name(att_lo).c_str(),
             static_cast<unsigned long long>(r.by_source[att_hi].attempted), name(att_hi).c_str(),
             static_cast<unsigned long long>(r.by_source[up_lo].outcomes[0]), name(up_lo).c_str(),
             static_cast<unsigned long long>(r.by_source[up_hi].outcomes[0]), name(up_hi).c_str());
}

std::uint64_t publishes_planned(const Options& o) { return std::uint64_t{o.channels} * o.messages; }

// "http_503":2,"connect":1,...: only the causes that happened.
std::string publish_failures_text(const PublishResult& p, bool json) {
  std::string out;
  const auto add = [&](const std::string& key, std::uint64_t n) {
    if (n == 0) return;
    if (!out.empty()) out += json ? "," : " ";
    out += json ? fmt("\"%s\":%llu", key.c_str(), static_cast<unsigned long long>(n))
                : fmt("%s %llu", key.c_str(), static_cast<unsigned long long>(n));
  };
  for (std::size_t s = 0; s < p.failed_by_status.size(); ++s) add(fmt("http_%zu", s), p.failed_by_status[s]);
  add("connect", p.connect_errors);
  add("io", p.io_errors);
  add("bad_answer", p.bad_answers);
  return out;
}

std::string fanout_table(const RunReport& r) {
  const Options& o = *r.options;
  const FanoutReport& f = r.fanout;
  const fanout::Counts& c = r.total.fanout;
  const fanout::Tally& t = f.tally;
  const auto u = [](std::uint64_t n) { return static_cast<unsigned long long>(n); };
  std::string out;
  out += fmt("  fanout: %llu subscribers over %u channels: ready %llu (subscribed notices %llu, %llu messages to "
             "subscribers not ready in time)\n",
             u(o.connections), o.channels, u(f.subscribers_ready), u(c.subscribed), u(c.untracked));
  if (o.stall_percent > 0)
    out += fmt("  stalled (--stall-percent %u): %llu of the ready stopped reading, not checked (%llu checked); read %llu "
               "messages before they stopped, %llu when drained at close; closed by the server %llu, by the tool "
               "%llu\n",
               o.stall_percent, u(c.stalled), u(f.subscribers_ready - std::min(c.stalled, f.subscribers_ready)),
               u(c.stalled_received), u(c.stalled_drained), u(c.stalled_closed_by_server),
               u(c.stalled_closed_by_tool));
  const std::uint64_t answered = t.publishes_ok + t.publishes_failed;
  out += fmt("  publishes: %llu planned (%llu per channel), ok %llu  failed %llu  unsent %llu  at %.0f/s (target "
             "%s)  recipients answered %llu\n",
             u(publishes_planned(o)), u(o.messages), u(t.publishes_ok), u(t.publishes_failed), u(t.publishes_unsent),
             f.publish.rate_per_s(answered),
             o.publish_rate_per_s > 0 ? fmt("%.0f/s", o.publish_rate_per_s).c_str() : "as fast as answered",
             u(f.publish.recipients));
  const std::string failures = publish_failures_text(f.publish, false);
  if (!failures.empty()) out += "  publish failures: " + failures + (f.publish.gave_up ? " (gave up)" : "") + "\n";
  out += "  publish rtt (request -> answer): " + percentiles_text(f.publish.rtt_us, 1.0, "us") + "\n";
  out += fmt("  deliveries: received %llu  expected %llu  delivered %llu  lost %llu  duplicated %llu  out of order "
             "%llu (gaps %llu)  misrouted %llu  malformed %llu\n",
             u(c.received), u(t.expected), u(t.delivered), u(t.lost), u(c.duplicated), u(c.out_of_order), u(c.gaps),
             u(c.misrouted), u(c.malformed));
  if (t.delivered_failed > 0)
    out += fmt("  deliveries of publishes answered with an error: %llu\n", u(t.delivered_failed));
  out += fmt("  settle: %s after %.3f s\n", f.settled ? "every expected delivery arrived" : "gave up waiting",
             f.settle_s);
  out += "  latency (publish -> subscriber): " + percentiles_text(c.latency_us, 1.0, "us") + "\n";
  out += "  last delivery (publish -> its last subscriber): " + percentiles_text(t.last_delivery_us, 1.0, "us") + "\n";
  const std::vector<std::string> failed = fanout_failures(r);
  std::string why;
  for (const std::string& w : failed) why += (why.empty() ? "" : ", ") + w;
  out += failed.empty() ? "  check: PASSED\n" : "  check: FAILED (" + why + ")\n";
  return out;
}

std::string fanout_json(const RunReport& r) {
  const Options& o = *r.options;
  const FanoutReport& f = r.fanout;
  const fanout::Counts& c = r.total.fanout;
  const fanout::Tally& t = f.tally;
  const auto u = [](std::uint64_t n) { return static_cast<unsigned long long>(n); };
  std::string j;
  j += fmt(",\"channels\":%u,\"messages_per_channel\":%llu,\"publish_rate_target\":%.1f", o.channels,
           u(o.messages), o.publish_rate_per_s);
  j += fmt(",\"subscribers_ready\":%llu,\"subscribed\":%llu,\"untracked\":%llu", u(f.subscribers_ready),
           u(c.subscribed), u(c.untracked));
  j += fmt(",\"stall_percent\":%u,\"stalled\":%llu,\"subscribers_checked\":%llu,\"stalled_received\":%llu,"
           "\"stalled_drained\":%llu,\"stalled_closed_by_server\":%llu,\"stalled_closed_by_tool\":%llu",
           o.stall_percent, u(c.stalled), u(f.subscribers_ready - std::min(c.stalled, f.subscribers_ready)),
           u(c.stalled_received), u(c.stalled_drained), u(c.stalled_closed_by_server), u(c.stalled_closed_by_tool));
  j += fmt(",\"publishes\":%llu,\"publishes_ok\":%llu,\"publishes_failed\":%llu,\"publishes_unsent\":%llu",
           u(publishes_planned(o)), u(t.publishes_ok), u(t.publishes_failed), u(t.publishes_unsent));
  j += ",\"publish_failures\":{" + publish_failures_text(f.publish, true) + "}";
  j += fmt(",\"publish_gave_up\":%s", f.publish.gave_up ? "true" : "false");
  j += fmt(",\"publishes_late\":%llu", u(f.publish.late));
  j += fmt(",\"publish_rate\":%.1f", f.publish.rate_per_s(t.publishes_ok + t.publishes_failed));
  j += ",\"publish_rtt_us\":" + percentiles_json(f.publish.rtt_us, 1.0);
  j += fmt(",\"recipients\":%llu,\"expected_deliveries\":%llu,\"deliveries\":%llu,\"delivered\":%llu",
           u(f.publish.recipients), u(t.expected), u(c.received), u(t.delivered));
  j += fmt(",\"lost\":%llu,\"duplicated\":%llu,\"out_of_order\":%llu,\"gaps\":%llu,\"misrouted\":%llu,"
           "\"malformed\":%llu,\"delivered_failed_publishes\":%llu",
           u(t.lost), u(c.duplicated), u(c.out_of_order), u(c.gaps), u(c.misrouted), u(c.malformed),
           u(t.delivered_failed));
  j += ",\"latency_us\":" + percentiles_json(c.latency_us, 1.0);
  j += ",\"last_delivery_us\":" + percentiles_json(t.last_delivery_us, 1.0);
  j += fmt(",\"settled\":%s,\"settle_s\":%.3f", f.settled ? "true" : "false", f.settle_s);
  const std::vector<std::string> failed = fanout_failures(r);
  j += fmt(",\"passed\":%s,\"failed_checks\":[", failed.empty() ? "true" : "false");
  for (std::size_t i = 0; i < failed.size(); ++i) j += (i ? ",\"" : "\"") + json_escape(failed[i]) + "\"";
  return j + "]";
}

// wss://: the handshake failures by reason, "verify_untrusted":N,... (every
// reason, zero or not).
std::string tls_failures_json(const tls::TlsStats& t) {
  std::string j = "{";
  for (std::size_t i = 0; i < tls::failure_count; ++i)
    j += fmt("%s\"%s\":%llu", i ? "," : "", std::string(tls::failure_name(static_cast<tls::Failure>(i))).c_str(),
             static_cast<unsigned long long>(t.failures[i]));
  return j + "}";
}

std::string alert_key(std::size_t code) {
  const std::string_view name = tls::alert_name(static_cast<std::uint8_t>(code));
  return name.empty() ? fmt("%zu", code) : std::string(name);
}

// The fatal alerts the server sent, by name ("internal_error":N): only those seen.
std::string tls_alerts_json(const tls::TlsStats& t) {
  std::string j = "{";
  for (std::size_t a = 0; a < t.alerts.size(); ++a)
    if (t.alerts[a])
      j += fmt("%s\"%s\":%llu", j.size() > 1 ? "," : "", alert_key(a).c_str(),
               static_cast<unsigned long long>(t.alerts[a]));
  return j + "}";
}

// " verify_untrusted 20 alert_internal_error 3": the reasons seen, alerts by name.
std::string tls_failures_text(const tls::TlsStats& t) {
  std::string out;
  for (std::size_t i = 0; i < tls::failure_count; ++i) {
    if (t.failures[i] == 0) continue;
    const auto why = static_cast<tls::Failure>(i);
    if (why == tls::Failure::alert) {
      for (std::size_t a = 0; a < t.alerts.size(); ++a)
        if (t.alerts[a])
          out += fmt(" alert_%s %llu", alert_key(a).c_str(), static_cast<unsigned long long>(t.alerts[a]));
      continue;
    }
    out += fmt(" %s %llu", std::string(tls::failure_name(why)).c_str(), static_cast<unsigned long long>(t.failures[i]));
  }
  return out;
}

std::string tls_setup_text(const Options& o) {
  const std::string verify = o.tls_insecure ? "certificate NOT verified (--tls-insecure)"
                                            : "certificate verified against " + o.tls_ca_file;
  return verify + ", TLS 1.2.." + std::string(tls::version_name(o.tls_max_version)) + ", " +
         (o.tls_resume ? "sessions resumed (per thread)" : "no resumption");
}

// Client CPU over the opening phase per completed handshake, in us (the
// upgrade that follows each handshake included).
double per_handshake_us(const RunReport& r) {
  const std::uint64_t n = r.total.tls.completed();
  return n ? r.opening.cpu_s / static_cast<double>(n) * 1e6 : 0;
}

std::string tls_table(const RunReport& r) {
  const Options& o = *r.options;
  const tls::TlsStats& t = r.total.tls;
  const auto u = [](std::uint64_t n) { return static_cast<unsigned long long>(n); };
  std::string out;
  out += "  tls: " + tls_setup_text(o) + "\n";
  out += fmt("  tls handshakes: %llu done: full %llu, resumed %llu (TLS 1.3 %llu, TLS 1.2 %llu); failed %llu\n",
             u(t.completed()), u(t.full()), u(t.resumed()), u(t.handshakes[1][0] + t.handshakes[1][1]),
             u(t.handshakes[0][0] + t.handshakes[0][1]), u(t.failed()));
  out += "  tls handshake, full (TCP connected -> done): " + percentiles_text(t.full_us, 0.001, "ms") + "\n";
  if (o.tls_resume || t.resumed() > 0)
    out += "  tls handshake, resumed: " + percentiles_text(t.resumed_us, 0.001, "ms") + "\n";
  if (r.opening.wall_s > 0 && t.completed() > 0)
    out += fmt("  tls rate: %.0f handshakes/s over the opening %.2f s; client cpu %.0f us per handshake (%.0f%% of "
               "one core)\n",
               safe_div(static_cast<double>(t.completed()), r.opening.wall_s), r.opening.wall_s, per_handshake_us(r),
               r.opening.utilisation() * 100);
  if (t.failed() > 0) out += "  tls failures:" + tls_failures_text(t) + "\n";
  if (t.errors_after_handshake > 0) out += fmt("  tls errors after the handshake: %llu\n", u(t.errors_after_handshake));
  if (!t.first_failure.empty()) out += "  tls first failure: " + t.first_failure + "\n";
  return out;
}

std::string tls_json(const RunReport& r) {
  const Options& o = *r.options;
  const tls::TlsStats& t = r.total.tls;
  const auto u = [](std::uint64_t n) { return static_cast<unsigned long long>(n); };
  Histogram all = t.full_us;
  all.merge(t.resumed_us);
  std::string j = ",\"tls\":{";
  j += fmt("\"verify\":%s,\"ca_file\":\"%s\",\"max_version\":\"%s\",\"resume\":%s", o.tls_insecure ? "false" : "true",
           json_escape(o.tls_ca_file).c_str(), std::string(tls::version_name(o.tls_max_version)).c_str(),
           o.tls_resume ? "true" : "false");
  j += fmt(",\"handshakes\":%llu,\"full\":%llu,\"resumed\":%llu,\"tls13\":%llu,\"tls12\":%llu,\"failed\":%llu",
           u(t.completed()), u(t.full()), u(t.resumed()), u(t.handshakes[1][0] + t.handshakes[1][1]),
           u(t.handshakes[0][0] + t.handshakes[0][1]), u(t.failed()));
  j += ",\"handshake_ms\":" + percentiles_json(all, 0.001);
  j += ",\"full_ms\":" + percentiles_json(t.full_us, 0.001);
  j += ",\"resumed_ms\":" + percentiles_json(t.resumed_us, 0.001);
  j += fmt(",\"handshakes_per_s\":%.1f,\"client_cpu_us_per_handshake\":%.1f",
           safe_div(static_cast<double>(t.completed()), r.opening.wall_s), per_handshake_us(r));
  j += ",\"failures\":" + tls_failures_json(t) + ",\"alerts\":" + tls_alerts_json(t);
  j += fmt(",\"errors_after_handshake\":%llu,\"close_notify_received\":%llu,\"record_buffers_high_water\":%llu",
           u(t.errors_after_handshake), u(t.close_notify_received), u(t.record_buffers_high_water));
  j += ",\"first_failure\":" +
       (t.first_failure.empty() ? std::string("null") : "\"" + json_escape(t.first_failure) + "\"");
  return j + "}";
}

}  // namespace

std::uint64_t rss_bytes_now() noexcept {
  std::ifstream f("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

double rss_per_connection(const RunReport& r) noexcept {
  if (r.held == 0 || r.rss_held_bytes == 0 || r.rss_start_bytes == 0) return 0;
  return (static_cast<double>(r.rss_held_bytes) - static_cast<double>(r.rss_start_bytes)) / static_cast<double>(r.held);
}

std::string tls_failure_line(const RunReport& r) {
  const tls::TlsStats& t = r.total.tls;
  if (t.failed() == 0) return "";
  std::string hint;
  if (t.failures[static_cast<std::size_t>(tls::Failure::verify_untrusted)] > 0)
    hint = " (is --tls-ca the CA that issued the server's certificate?)";
  else if (t.failures[static_cast<std::size_t>(tls::Failure::verify_name)] > 0)
    hint = " (--tls-server-name sets the name checked)";
  return fmt("%llu of %llu TLS handshakes failed (", static_cast<unsigned long long>(t.failed()),
             static_cast<unsigned long long>(t.failed() + t.completed())) +
         tls_failures_text(t).substr(1) + "); the first: " + t.first_failure + hint;
}

std::vector<std::string> fanout_failures(const RunReport& r) {
  const Options& o = *r.options;
  const fanout::Counts& c = r.total.fanout;
  const fanout::Tally& t = r.fanout.tally;
  std::vector<std::string> failed;
  const auto check = [&](const char* what, std::uint64_t n) {
    if (n > 0) failed.push_back(fmt("%s %llu", what, static_cast<unsigned long long>(n)));
  };
  if (r.fanout.subscribers_ready < o.connections)
    failed.push_back(fmt("subscribers ready %llu of %llu", static_cast<unsigned long long>(r.fanout.subscribers_ready),
                         static_cast<unsigned long long>(o.connections)));
  check("lost", t.lost);
  check("duplicated", c.duplicated);
  check("out_of_order", c.out_of_order);
  check("misrouted", c.misrouted);
  check("malformed", c.malformed);
  check("unsent", t.publishes_unsent);
  if (t.publishes_ok == 0) failed.push_back("no publish answered 200 or 202");
  if (r.interrupted) failed.push_back("interrupted");
  return failed;
}

std::string by_source_json(const std::vector<SourceCounts>& rows, const SourcePlan& plan, int family) {
  std::string j = "[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const SourceCounts& c = rows[i];
    // Addresses and outcome names: nothing to escape.
    j += fmt("%s{\"source\":\"%s\",\"attempted\":%llu", i ? "," : "",
             source_name(plan, family, static_cast<std::uint32_t>(i)).c_str(),
             static_cast<unsigned long long>(c.attempted));
    for (std::size_t o = 0; o < outcome_count; ++o)
      if (c.outcomes[o])
        j += fmt(",\"%s\":%llu", std::string(outcome_name(static_cast<Outcome>(o))).c_str(),
                 static_cast<unsigned long long>(c.outcomes[o]));
    j += "}";
  }
  return j + "]";
}

double cpu_seconds_now() noexcept {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::string format_table(const RunReport& r) {
  const Options& o = *r.options;
  const StepStats& t = r.total;
  std::string out;
  out += fmt("ringgate-load %s %s\n", std::string(mode_name(o.mode)).c_str(), o.url.c_str());
  out += fmt("  plan: %llu connections%s, %u threads x %u slots, %u source address%s (%u ports per pair)\n",
             static_cast<unsigned long long>(o.connections), o.mode == Mode::ramp ? " per step" : "", r.threads,
             r.slots_per_thread, r.sources.sources, r.sources.sources == 1 ? "" : "es", r.sources.ports_per_pair);
  if (r.interrupted) out += "  INTERRUPTED: figures cover the run up to the signal\n";

  if (o.mode == Mode::ramp) {
    out += "\n  rate/s | attempted | upgraded | success % | disconnects after success | handshake p50 ms | "
           "handshake p99 ms | client cpu s | cpu %\n";
    out += "  -------+-----------+----------+-----------+---------------------------+------------------+"
           "------------------+--------------+------\n";
    for (const StepReport& s : r.steps) {
      const std::uint64_t up = s.stats.outcomes[0];
      out += fmt("  %6.0f | %9llu | %8llu | %8.2f%% | %25llu | %16.3f | %16.3f | %12.2f | %4.0f%%\n", s.rate_per_s,
                 static_cast<unsigned long long>(s.stats.attempted), static_cast<unsigned long long>(up),
                 safe_div(100.0 * static_cast<double>(up), static_cast<double>(s.stats.attempted)),
                 static_cast<unsigned long long>(s.stats.disconnects_after_success),
                 ms(s.stats.handshake_us.percentile(50)), ms(s.stats.handshake_us.percentile(99)), s.window.cpu_s,
                 s.window.utilisation() * 100);
    }
    out += "\n";
  }

  out += fmt("  attempted %llu  upgraded %llu  failed %llu", static_cast<unsigned long long>(t.attempted),
             static_cast<unsigned long long>(t.outcomes[0]), static_cast<unsigned long long>(failed_total(t)));
  if (o.mode == Mode::hold || o.mode == Mode::echo || o.mode == Mode::fanout)
    out += fmt("  held %llu", static_cast<unsigned long long>(r.held));
  out += "\n";
  out += "  handshake (connect start -> 101): " + percentiles_text(t.handshake_us, 0.001, "ms") + "\n";
  if (o.mode == Mode::flood || t.refused_us.count() > 0)
    out += "  refused (connect start -> 4xx/5xx or close 1013): " + percentiles_text(t.refused_us, 0.001, "ms") + "\n";
  if (failed_total(t) > 0) {
    out += "  failures:";
    for (std::size_t i = 1; i < outcome_count; ++i)
      if (t.outcomes[i]) out += fmt(" %s %llu", std::string(outcome_name(static_cast<Outcome>(i))).c_str(),
                                    static_cast<unsigned long long>(t.outcomes[i]));
    out += "\n";
    const std::string detail = other_detail_text(t.other, false);
    if (!detail.empty()) out += "  other: " + detail + "\n";
  }
  out += by_source_text(r);
  if (o.tls) out += tls_table(r);
  if (o.mode == Mode::flood) {
    if (t.first_failure.attempt == UINT64_MAX) {
      out += "  breaking point: none (every attempt upgraded)\n";
    } else {
      out += fmt("  breaking point: attempt %llu (started at %.3f s, %s at %.3f s)\n",
                 static_cast<unsigned long long>(t.first_failure.attempt + 1),
                 static_cast<double>(t.first_failure.started_ns) / 1e9,
                 std::string(outcome_name(t.first_failure.outcome)).c_str(),
                 static_cast<double>(t.first_failure.resolved_ns) / 1e9);
    }
  }
  out += fmt("  disconnects after success %llu  protocol errors %llu  pings answered %llu\n",
             static_cast<unsigned long long>(t.disconnects_after_success),
             static_cast<unsigned long long>(t.protocol_errors), static_cast<unsigned long long>(t.pings));
  if (o.verify_echo)
    out += fmt("  verify echo: checked %llu  echoed %llu  failed %llu (no echo within --close-timeout, wrong, or "
               "closed)\n",
               static_cast<unsigned long long>(t.held_checked), static_cast<unsigned long long>(t.held_echoed),
               static_cast<unsigned long long>(t.held_echo_failed));
  if (o.mode != Mode::flood || o.verify_echo)
    out += fmt("  close: clean %llu  eof %llu  timed out %llu  errors %llu  slots left %llu\n",
               static_cast<unsigned long long>(t.closed_clean), static_cast<unsigned long long>(t.closed_eof),
               static_cast<unsigned long long>(t.close_timeouts), static_cast<unsigned long long>(t.close_errors),
               static_cast<unsigned long long>(r.slots_left));
  if (o.mode == Mode::echo) {
    const double msgs_s = safe_div(static_cast<double>(t.echo_msgs), r.measured.wall_s);
    out += fmt("  echo: %llu msgs in %.2f s = %.0f msgs/s, %.0f bytes/s (%u x %u B %s in flight per connection)\n",
               static_cast<unsigned long long>(t.echo_msgs), r.measured.wall_s, msgs_s,
               safe_div(static_cast<double>(t.echo_bytes), r.measured.wall_s), o.inflight, o.size_bytes,
               o.payload == PayloadKind::text ? "text" : "binary");
    out += fmt("  echo: %s; %.0f msgs per client cpu second\n", cpu_text(r.measured).c_str(),
               safe_div(static_cast<double>(t.echo_msgs), r.measured.cpu_s));
    out += "  rtt: " + percentiles_text(t.rtt_us, 1.0, "us") + "\n";
    out += fmt("  checked %llu echoes: mismatches %llu  out of order %llu  lost %llu  duplicates %llu  "
               "unanswered %llu\n",
               static_cast<unsigned long long>(t.echo_total), static_cast<unsigned long long>(t.mismatches),
               static_cast<unsigned long long>(t.out_of_order), static_cast<unsigned long long>(t.lost),
               static_cast<unsigned long long>(t.duplicates), static_cast<unsigned long long>(t.unanswered));
  }
  if (o.mode == Mode::fanout) out += fanout_table(r);
  if (r.rss_held_bytes > 0)
    out += fmt("  client memory: RSS %.1f MiB before connecting, %.1f MiB with %llu held: %.0f B per connection\n",
               static_cast<double>(r.rss_start_bytes) / 1048576.0, static_cast<double>(r.rss_held_bytes) / 1048576.0,
               static_cast<unsigned long long>(r.held), rss_per_connection(r));
  out += "  run: " + cpu_text(r.run) + "\n";
  return out;
}

std::string format_json(const RunReport& r) {
  const Options& o = *r.options;
  const StepStats& t = r.total;
  std::string j = "{";
  j += fmt("\"mode\":\"%s\",\"target\":\"%s\"", std::string(mode_name(o.mode)).c_str(), json_escape(o.url).c_str());
  j += fmt(",\"connections\":%llu,\"threads\":%u,\"slots_per_thread\":%u,\"sources\":%u,\"ports_per_pair\":%u",
           static_cast<unsigned long long>(o.connections), r.threads, r.slots_per_thread, r.sources.sources,
           r.sources.ports_per_pair);
  j += fmt(",\"interrupted\":%s", r.interrupted ? "true" : "false");
  j += fmt(",\"attempted\":%llu,\"upgraded\":%llu,\"failed_total\":%llu", static_cast<unsigned long long>(t.attempted),
           static_cast<unsigned long long>(t.outcomes[0]), static_cast<unsigned long long>(failed_total(t)));
  j += ",\"failed\":{";
  for (std::size_t i = 1; i < outcome_count; ++i)
    j += fmt("%s\"%s\":%llu", i > 1 ? "," : "", std::string(outcome_name(static_cast<Outcome>(i))).c_str(),
             static_cast<unsigned long long>(t.outcomes[i]));
  // Keys are built from errno names, numbers and fixed words: nothing to escape.
  j += "},\"other_detail\":{" + other_detail_text(t.other, true) + "}";
  j += ",\"handshake_ms\":" + percentiles_json(t.handshake_us, 0.001);
  j += ",\"refused_ms\":" + percentiles_json(t.refused_us, 0.001);
  j += ",\"by_source\":" + by_source_json(r.by_source, r.sources, r.target ? r.target->family : AF_INET);
  if (o.tls) j += tls_json(r);
  j += fmt(",\"open_s\":%.3f,\"open_cpu_seconds\":%.3f", r.opening.wall_s, r.opening.cpu_s);
  j += fmt(",\"client_rss_start_bytes\":%llu,\"client_rss_held_bytes\":%llu,\"client_rss_per_connection\":%.0f",
           static_cast<unsigned long long>(r.rss_start_bytes), static_cast<unsigned long long>(r.rss_held_bytes),
           rss_per_connection(r));
  j += fmt(",\"held\":%llu", static_cast<unsigned long long>(r.held));
  j += fmt(",\"disconnects_after_success\":%llu,\"protocol_errors\":%llu,\"pings\":%llu",
           static_cast<unsigned long long>(t.disconnects_after_success),
           static_cast<unsigned long long>(t.protocol_errors), static_cast<unsigned long long>(t.pings));
  j += fmt(",\"closed_clean\":%llu,\"closed_eof\":%llu,\"close_timeouts\":%llu,\"close_errors\":%llu,\"slots_left\":%llu",
           static_cast<unsigned long long>(t.closed_clean), static_cast<unsigned long long>(t.closed_eof),
           static_cast<unsigned long long>(t.close_timeouts), static_cast<unsigned long long>(t.close_errors),
           static_cast<unsigned long long>(r.slots_left));
  if (o.mode == Mode::flood) {
    if (t.first_failure.attempt == UINT64_MAX) {
      j += ",\"breaking_point\":null";
    } else {
      j += fmt(",\"breaking_point\":{\"attempt\":%llu,\"started_s\":%.6f,\"elapsed_s\":%.6f,\"class\":\"%s\"}",
               static_cast<unsigned long long>(t.first_failure.attempt + 1),
               static_cast<double>(t.first_failure.started_ns) / 1e9,
               static_cast<double>(t.first_failure.resolved_ns) / 1e9,
               std::string(outcome_name(t.first_failure.outcome)).c_str());
    }
  }
  if (o.verify_echo)
    j += fmt(",\"held_checked\":%llu,\"held_echoed\":%llu,\"held_echo_failed\":%llu",
             static_cast<unsigned long long>(t.held_checked), static_cast<unsigned long long>(t.held_echoed),
             static_cast<unsigned long long>(t.held_echo_failed));
  if (o.mode == Mode::echo) {
    j += fmt(",\"inflight\":%u,\"size\":%u,\"payload\":\"%s\"", o.inflight, o.size_bytes,
             o.payload == PayloadKind::text ? "text" : "binary");
    j += fmt(",\"msgs\":%llu,\"window_s\":%.6f,\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f",
             static_cast<unsigned long long>(t.echo_msgs), r.measured.wall_s,
             safe_div(static_cast<double>(t.echo_msgs), r.measured.wall_s),
             safe_div(static_cast<double>(t.echo_bytes), r.measured.wall_s));
    j += ",\"rtt_us\":" + percentiles_json(t.rtt_us, 1.0);
    j += fmt(",\"echoes_checked\":%llu,\"mismatches\":%llu,\"out_of_order\":%llu,\"lost\":%llu,"
             "\"duplicates\":%llu,\"unanswered\":%llu",
             static_cast<unsigned long long>(t.echo_total), static_cast<unsigned long long>(t.mismatches),
             static_cast<unsigned long long>(t.out_of_order), static_cast<unsigned long long>(t.lost),
             static_cast<unsigned long long>(t.duplicates), static_cast<unsigned long long>(t.unanswered));
    j += fmt(",\"window_cpu_seconds\":%.3f,\"window_cpu_utilisation\":%.3f,\"msgs_per_cpu_second\":%.1f",
             r.measured.cpu_s, r.measured.utilisation(), safe_div(static_cast<double>(t.echo_msgs), r.measured.cpu_s));
  }
  if (o.mode == Mode::fanout) j += fanout_json(r);
  if (o.mode == Mode::ramp) {
    j += ",\"steps\":[";
    for (std::size_t i = 0; i < r.steps.size(); ++i) {
      const StepReport& s = r.steps[i];
      const std::uint64_t up = s.stats.outcomes[0];
      j += fmt("%s{\"rate\":%.1f,\"attempted\":%llu,\"upgraded\":%llu,\"success_pct\":%.3f,"
               "\"disconnects_after_success\":%llu,\"held\":%llu,\"failed_total\":%llu",
               i ? "," : "", s.rate_per_s, static_cast<unsigned long long>(s.stats.attempted),
               static_cast<unsigned long long>(up),
               safe_div(100.0 * static_cast<double>(up), static_cast<double>(s.stats.attempted)),
               static_cast<unsigned long long>(s.stats.disconnects_after_success),
               static_cast<unsigned long long>(s.held), static_cast<unsigned long long>(failed_total(s.stats)));
      j += ",\"handshake_ms\":" + percentiles_json(s.stats.handshake_us, 0.001);
      j += ",\"refused_ms\":" + percentiles_json(s.stats.refused_us, 0.001);
      if (o.tls)
        j += fmt(",\"tls_full\":%llu,\"tls_resumed\":%llu,\"tls_failed\":%llu",
                 static_cast<unsigned long long>(s.stats.tls.full()),
                 static_cast<unsigned long long>(s.stats.tls.resumed()),
                 static_cast<unsigned long long>(s.stats.tls.failed()));
      j += fmt(",\"cpu_seconds\":%.3f,\"cpu_utilisation\":%.3f,\"wall_s\":%.3f}", s.window.cpu_s,
               s.window.utilisation(), s.window.wall_s);
    }
    j += "]";
  }
  j += fmt(",\"elapsed_s\":%.3f,\"cpu_seconds\":%.3f,\"cpu_utilisation\":%.3f}", r.run.wall_s, r.run.cpu_s,
           r.run.utilisation());
  return j;
}

}  // namespace rg::load
