// ringgate-load: start-up, the plan, the phase machine that steers the
// engine threads, progress lines and the report.
//
// The main thread owns no sockets.  It decides when a phase ends (all
// attempts resolved, the hold elapsed, every slot released) from the threads'
// relaxed counters, polled every few milliseconds, and moves every thread on
// with one atomic command word.

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tools/load/engine.h"
#include "tools/load/fanout.h"
#include "tools/load/plan.h"
#include "tools/load/publisher.h"
#include "tools/load/report.h"
#include "tools/load/tls_client.h"

namespace rg::load {
namespace {

constexpr int exit_usage = 2;
constexpr int exit_start_failed = 1;
constexpr int exit_fanout_failed = 3;  // fanout: the delivery check failed
// How often the main thread looks at the counters: the precision of phase
// ends (a hold of D seconds lasts D plus at most this).
constexpr auto poll_interval = std::chrono::milliseconds(5);
constexpr std::uint64_t progress_interval_ns = 1'000'000'000;
// Slack on top of the computed bound of each phase, for a loaded machine.
constexpr std::uint64_t phase_slack_ns = 5'000'000'000;
// A thread looks at its command every loop turn (at most idle_wait_us
// apart); far longer means it is stuck, and the run goes on without it.
constexpr std::uint64_t command_ack_bound_ns = 2'000'000'000;
// The publisher's last request may wait this long for its answer (its
// socket timeout, 5 s) after the publishing deadline.
constexpr std::uint64_t publisher_stop_bound_ns = 6'000'000'000;

std::atomic<bool> interrupted{false};
extern "C" void on_signal(int) { interrupted.store(true); }

struct Totals {
  std::uint64_t attempted = 0, upgraded = 0, failed = 0, open = 0, slots = 0, disconnects = 0, echo_msgs = 0,
                verifying = 0, errors = 0;
  std::uint64_t subscribed = 0, awaiting = 0, ready = 0, stalled = 0, fanout_received = 0, fanout_delivered = 0;
  std::uint64_t tls_handshakes = 0, tls_resumed = 0;
};

class Runner {
 public:
  // `api` and `board` are used by fanout only, `tls` by wss:// only.
  Runner(const Options& o, const Target& t, const SourcePlan& sp, std::uint32_t threads, std::uint32_t slots,
         const std::vector<Target>& apis, fanout::Board& board, const tls::Context* tls)
      : o_(o), t_(t), sp_(sp), threads_(threads), slots_(slots), live_(threads), apis_(apis), board_(board), tls_(tls) {}

  int run();

 private:
  Totals totals() const {
    Totals s;
    for (const auto& l : live_) {
      s.attempted += l.attempted.load(std::memory_order_relaxed);
      s.upgraded += l.upgraded.load(std::memory_order_relaxed);
      s.failed += l.failed.load(std::memory_order_relaxed);
      s.open += l.open.load(std::memory_order_relaxed);
      s.slots += l.slots_in_use.load(std::memory_order_relaxed);
      s.disconnects += l.disconnects.load(std::memory_order_relaxed);
      s.echo_msgs += l.echo_msgs.load(std::memory_order_relaxed);
      s.verifying += l.verifying.load(std::memory_order_relaxed);
      s.errors += l.errors.load(std::memory_order_relaxed);
      s.subscribed += l.subscribed.load(std::memory_order_relaxed);
      s.awaiting += l.awaiting.load(std::memory_order_relaxed);
      s.ready += l.ready.load(std::memory_order_relaxed);
      s.stalled += l.stalled.load(std::memory_order_relaxed);
      s.fanout_received += l.fanout_received.load(std::memory_order_relaxed);
      s.fanout_delivered += l.fanout_delivered.load(std::memory_order_relaxed);
      s.tls_handshakes += l.tls_handshakes.load(std::memory_order_relaxed);
      s.tls_resumed += l.tls_resumed.load(std::memory_order_relaxed);
    }
    return s;
  }
  double elapsed_s() const { return static_cast<double>(monotonic_ns() - epoch_ns_) / 1e9; }

  // Polls until `done` holds, the deadline passes or a signal arrives;
  // prints a progress line every second meanwhile.  True when `done` held.
  // With `interruptible` false a signal does not cut the wait short (the
  // close phase is bounded by --close-timeout and must run to the end).
  template <typename Done>
  bool wait_until(Done&& done, std::uint64_t deadline_ns, const char* phase, bool interruptible = true) {
    for (;;) {
      const Totals s = totals();
      if (done(s)) return true;
      const std::uint64_t now = monotonic_ns();
      if (now >= next_progress_ns_) {
        progress(s, phase, now);
        next_progress_ns_ = now + progress_interval_ns;
      }
      if (now >= deadline_ns || (interruptible && interrupted.load())) return false;
      std::this_thread::sleep_for(poll_interval);
    }
  }
  void progress(const Totals& s, const char* phase, std::uint64_t now);
  // Gives every thread a command and waits until each has acted on it, so
  // the next command cannot replace it unseen (a SIGINT used to turn close
  // into stop before any thread had closed a connection).
  void command(Phase phase, std::uint32_t step) {
    control_.set(phase, step);
    const std::uint64_t want = Control::pack(phase, step);
    const std::uint64_t deadline = monotonic_ns() + command_ack_bound_ns;
    for (const LiveCounters& l : live_)
      while (l.command_seen.load(std::memory_order_acquire) != want && monotonic_ns() < deadline)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  std::uint64_t open_bound_ns(double rate) const;
  // Opens this run's connections (the open command) and waits until every
  // attempt resolved, `ready` holds too, or the bound passed; the opening
  // window (wall and CPU) goes into the report.  True when all resolved.
  template <typename Ready>
  bool open_all(const char* phase, Ready&& ready);
  // The held connections' figures: count and the tool's RSS.
  void note_held() {
    report_.held = totals().open;
    report_.rss_held_bytes = rss_bytes_now();
  }
  // Closes every connection of the step and waits for every slot to free.
  void close_all(std::uint32_t step);

  void run_hold();
  void run_ramp();
  void run_flood();
  void run_echo();
  void run_fanout();
  void publish_all();

  const Options& o_;
  const Target& t_;
  const SourcePlan& sp_;
  std::uint32_t threads_;
  std::uint32_t slots_;
  Control control_;
  std::vector<LiveCounters> live_;
  std::uint64_t epoch_ns_ = 0;
  std::uint64_t next_progress_ns_ = 0;
  Totals last_progress_;
  std::uint64_t last_progress_ns_ = 0;
  double last_progress_cpu_ = 0;
  RunReport report_;
  std::vector<double> step_cpu_;
  const std::vector<Target>& apis_;
  fanout::Board& board_;
  PublishLive publish_live_;
  std::uint64_t last_progress_answered_ = 0;  // publishes answered at the last progress line
  const tls::Context* tls_;
};

void Runner::progress(const Totals& s, const char* phase, std::uint64_t now) {
  const double dt = last_progress_ns_ ? static_cast<double>(now - last_progress_ns_) / 1e9 : elapsed_s();
  const double cpu = cpu_seconds_now();
  const double conn_rate = dt > 0 ? static_cast<double>(s.attempted - last_progress_.attempted) / dt : 0;
  char buf[256];
  // snprintf, not "[" + std::string&&: GCC 12 at -O3 raises a false -Wrestrict on that idiom.
  std::snprintf(buf, sizeof buf, "[%ds] %s", static_cast<int>(std::lround(elapsed_s())), phase);
  std::string line = buf;
  std::snprintf(buf, sizeof buf, "  open %llu  attempts/s %.0f  upgraded %llu  errors %llu",
                static_cast<unsigned long long>(s.open), conn_rate, static_cast<unsigned long long>(s.upgraded),
                static_cast<unsigned long long>(s.errors));
  line += buf;
  if (o_.mode == Mode::echo) {
    std::snprintf(buf, sizeof buf, "  msgs/s %.0f",
                  dt > 0 ? static_cast<double>(s.echo_msgs - last_progress_.echo_msgs) / dt : 0);
    line += buf;
  }
  if (o_.mode == Mode::fanout) {
    const std::uint64_t answered = publish_live_.answered.load(std::memory_order_relaxed);
    std::snprintf(buf, sizeof buf, "  subscribed %llu  publishes %llu (%.0f/s)  deliveries %llu (%.0f/s)",
                  static_cast<unsigned long long>(s.subscribed), static_cast<unsigned long long>(answered),
                  dt > 0 ? static_cast<double>(answered - last_progress_answered_) / dt : 0,
                  static_cast<unsigned long long>(s.fanout_received),
                  dt > 0 ? static_cast<double>(s.fanout_received - last_progress_.fanout_received) / dt : 0);
    line += buf;
    last_progress_answered_ = answered;
  }
  if (o_.tls) {
    std::snprintf(buf, sizeof buf, "  tls %llu (resumed %llu, %.0f/s)",
                  static_cast<unsigned long long>(s.tls_handshakes), static_cast<unsigned long long>(s.tls_resumed),
                  dt > 0 ? static_cast<double>(s.tls_handshakes - last_progress_.tls_handshakes) / dt : 0);
    line += buf;
  }
  std::snprintf(buf, sizeof buf, "  client cpu %.0f%%", dt > 0 ? (cpu - last_progress_cpu_) / dt * 100 : 0);
  line += buf;
  std::fprintf(stderr, "%s\n", line.c_str());
  last_progress_ = s;
  last_progress_ns_ = now;
  last_progress_cpu_ = cpu;
}

std::uint64_t Runner::open_bound_ns(double rate) const {
  // Opening takes connections / rate; each attempt then resolves within the
  // handshake timeout.  Unpaced attempts start as fast as slots allow.
  const double open_s = rate > 0 ? static_cast<double>(o_.connections) / rate * 1.2 : 0;
  return static_cast<std::uint64_t>(open_s * 1e9) + o_.handshake_timeout_ms * 1'000'000 + phase_slack_ns;
}

template <typename Ready>
bool Runner::open_all(const char* phase, Ready&& ready) {
  const double cpu0 = cpu_seconds_now();
  const std::uint64_t t0 = monotonic_ns();
  command(Phase::open, 0);
  const std::uint64_t target = o_.connections;
  const bool all = wait_until([&](const Totals& s) { return s.upgraded + s.failed >= target && ready(s); },
                              monotonic_ns() + open_bound_ns(o_.rate_per_s), phase);
  report_.opening = {static_cast<double>(monotonic_ns() - t0) / 1e9, cpu_seconds_now() - cpu0};
  return all;
}

void Runner::close_all(std::uint32_t step) {
  command(Phase::close, step);
  // Each connection gets --close-timeout for the server's answer; a cancel
  // and a close_direct follow.  In echo mode the echoes in flight get
  // another --close-timeout before the close goes out; so do stalled fanout
  // subscribers while they are drained (plus a quiet period, well inside
  // the slack).
  const std::uint64_t rounds = o_.mode == Mode::echo || (o_.mode == Mode::fanout && o_.stall_percent > 0) ? 2 : 1;
  const std::uint64_t bound = monotonic_ns() + rounds * o_.close_timeout_ms * 1'000'000 + phase_slack_ns;
  if (!wait_until([](const Totals& s) { return s.slots == 0; }, bound, "closing", false))
    std::fprintf(stderr, "ringgate-load: %llu connections still not released after the close bound\n",
                 static_cast<unsigned long long>(totals().slots));
}

void Runner::run_hold() {
  if (!open_all("opening", [](const Totals&) { return true; }))
    std::fprintf(stderr, "ringgate-load: not every attempt resolved in time; holding what is open\n");
  command(Phase::hold, 0);
  wait_until([](const Totals&) { return false; }, monotonic_ns() + o_.duration_ms * 1'000'000, "holding");
  note_held();
  close_all(0);
}

void Runner::run_ramp() {
  for (std::uint32_t step = 0; step < o_.rates_per_s.size() && !interrupted.load(); ++step) {
    const double rate = o_.rates_per_s[step];
    const double cpu0 = cpu_seconds_now();
    const std::uint64_t t0 = monotonic_ns();
    const Totals before = totals();
    std::fprintf(stderr, "ringgate-load: step %u: %llu connections at %.0f/s\n", step + 1,
                 static_cast<unsigned long long>(o_.connections), rate);
    command(Phase::open, step);
    const std::uint64_t target = before.upgraded + before.failed + o_.connections;
    wait_until([&](const Totals& s) { return s.upgraded + s.failed >= target; },
               monotonic_ns() + open_bound_ns(rate), "opening");
    command(Phase::hold, step);
    wait_until([](const Totals&) { return false; }, monotonic_ns() + o_.hold_ms * 1'000'000, "holding");
    StepReport sr;
    sr.rate_per_s = rate;
    sr.held = totals().open;
    close_all(step);
    sr.window = {static_cast<double>(monotonic_ns() - t0) / 1e9, cpu_seconds_now() - cpu0};
    report_.steps.push_back(sr);
  }
}

void Runner::run_flood() {
  const double cpu0 = cpu_seconds_now();
  const std::uint64_t t0 = monotonic_ns();
  command(Phase::open, 0);
  const std::uint64_t target = o_.connections;
  const std::uint64_t end = monotonic_ns() + o_.duration_ms * 1'000'000;
  wait_until([&](const Totals& s) { return s.attempted >= target && s.upgraded + s.failed >= s.attempted; }, end,
             "flooding");
  // Stop starting attempts; let those in flight resolve (each within the
  // handshake timeout).  Connections stay open: a plain flood never closes
  // them (they go with the ring at exit); --verify-echo closes them below.
  command(Phase::settle, 0);
  wait_until([&](const Totals& s) { return s.upgraded + s.failed >= s.attempted; },
             monotonic_ns() + o_.handshake_timeout_ms * 1'000'000 + phase_slack_ns, "settling");
  report_.opening = {static_cast<double>(monotonic_ns() - t0) / 1e9, cpu_seconds_now() - cpu0};
  // A server turns connections away after the upgrade too (close 1013):
  // watch the held connections for --hold before counting.
  wait_until([](const Totals&) { return false; }, monotonic_ns() + o_.hold_ms * 1'000'000, "observing");
  note_held();
  if (!o_.verify_echo) return;
  // What was admitted must also work: one echo per connection still open.
  // Each check ends within --close-timeout (a timer per connection).  After
  // a signal there is nothing to verify, but the close still runs.
  if (!interrupted.load()) {
    command(Phase::verify, 0);
    if (!wait_until([](const Totals& s) { return s.verifying == 0; },
                    monotonic_ns() + o_.close_timeout_ms * 1'000'000 + phase_slack_ns, "verifying"))
      std::fprintf(stderr, "ringgate-load: %llu echo checks still pending; closing anyway\n",
                   static_cast<unsigned long long>(totals().verifying));
  }
  close_all(0);
}

void Runner::run_echo() {
  if (!open_all("opening", [](const Totals&) { return true; }))
    std::fprintf(stderr, "ringgate-load: not every attempt resolved in time; measuring what is open\n");
  const double cpu0 = cpu_seconds_now();
  const std::uint64_t t0 = monotonic_ns();
  command(Phase::hold, 0);
  wait_until([](const Totals&) { return false; }, t0 + o_.duration_ms * 1'000'000, "echoing");
  note_held();
  command(Phase::close, 0);
  report_.measured = {static_cast<double>(monotonic_ns() - t0) / 1e9, cpu_seconds_now() - cpu0};
  close_all(0);
}

void Runner::run_fanout() {
  // Ready: every attempt resolved, and every upgraded subscriber still open
  // has its subscribed notice.
  if (!open_all("subscribing", [](const Totals& s) { return s.awaiting == 0; }))
    std::fprintf(stderr, "ringgate-load: not every subscriber was ready in time; publishing to the ready ones\n");
  // From here on the engines check the ready subscribers' messages.
  command(Phase::hold, 0);
  report_.fanout.subscribers_ready = totals().ready;
  if (!interrupted.load()) publish_all();
  note_held();
  close_all(0);
}

// Runs the publisher thread to its end, then waits (up to --settle) for the
// deliveries: every ok publish's tracked subscribers, and as many as the
// server said it had recipients.
void Runner::publish_all() {
  Publisher publisher(o_, apis_, board_, publish_live_);
  std::atomic<bool> stop{false};
  const std::uint64_t deadline = monotonic_ns() + o_.duration_ms * 1'000'000;
  std::thread thread([&] { publisher.run(deadline, stop); });
  wait_until([&](const Totals&) { return publish_live_.done.load(std::memory_order_acquire); },
             deadline + publisher_stop_bound_ns, "publishing");
  stop.store(true);
  thread.join();
  report_.fanout.publish = publisher.result();
  if (report_.fanout.publish.gave_up)
    std::fprintf(stderr, "ringgate-load: no connection to the publish API %s, repeatedly; gave up publishing\n",
                 o_.api_url.c_str());
  // The server counts stalled subscribers among its recipients, but they do
  // not read: with any stalled, only the checked subscribers are waited for.
  const std::uint64_t want = totals().stalled > 0
                                 ? publish_live_.expected.load()
                                 : std::max(publish_live_.expected.load(), publish_live_.recipients.load());
  const std::uint64_t t0 = monotonic_ns();
  report_.fanout.settled = wait_until([&](const Totals& s) { return s.fanout_delivered >= want; },
                                      t0 + o_.settle_ms * 1'000'000, "settling");
  report_.fanout.settle_s = static_cast<double>(monotonic_ns() - t0) / 1e9;
}

int Runner::run() {
  const std::uint64_t seed = o_.seed != 0 ? o_.seed : (monotonic_ns() ^ (static_cast<std::uint64_t>(getpid()) << 32));
  epoch_ns_ = monotonic_ns();
  const double cpu_start = cpu_seconds_now();
  SourcePlan sources = sp_;
  std::vector<std::unique_ptr<EngineHandle>> engines;
  std::vector<std::thread> workers;
  std::vector<std::string> errors(threads_);
  std::vector<std::atomic<int>> ready(threads_);
  for (std::uint32_t i = 0; i < threads_; ++i) {
    EngineSetup setup;
    setup.options = &o_;
    setup.target = &t_;
    setup.sources = &sp_;
    setup.index = i;
    setup.threads = threads_;
    setup.slots = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, share_of(o_.connections, threads_, i)));
    setup.seed = seed;
    setup.epoch_ns = epoch_ns_;
    setup.control = &control_;
    setup.live = &live_[i];
    setup.board = o_.mode == Mode::fanout ? &board_ : nullptr;
    setup.tls = tls_;
    engines.push_back(std::make_unique<EngineHandle>(setup));
  }
  for (std::uint32_t i = 0; i < threads_; ++i) {
    // The ring is created on its own thread: SINGLE_ISSUER|DEFER_TASKRUN
    // rings accept SQEs only from the thread that made them.
    workers.emplace_back([&, i] {
      if (!engines[i]->start(errors[i])) {
        ready[i].store(-1);
        return;
      }
      ready[i].store(1);
      engines[i]->run();
    });
  }
  bool ok = true;
  for (std::uint32_t i = 0; i < threads_; ++i) {
    while (ready[i].load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (ready[i].load() < 0) ok = false;
  }
  if (!ok) {
    control_.set(Phase::stop, 0);  // not every thread runs: no acknowledgements to wait for
    for (auto& w : workers) w.join();
    for (std::uint32_t i = 0; i < threads_; ++i)
      if (!errors[i].empty()) std::fprintf(stderr, "ringgate-load: thread %u: %s\n", i, errors[i].c_str());
    return exit_start_failed;
  }
  next_progress_ns_ = monotonic_ns() + progress_interval_ns;
  report_.rss_start_bytes = rss_bytes_now();
  switch (o_.mode) {
    case Mode::hold: run_hold(); break;
    case Mode::ramp: run_ramp(); break;
    case Mode::flood: run_flood(); break;
    case Mode::echo: run_echo(); break;
    case Mode::fanout: run_fanout(); break;
  }
  report_.slots_left = totals().slots;
  command(Phase::stop, 0);
  for (auto& w : workers) w.join();

  report_.options = &o_;
  report_.target = &t_;
  report_.sources = sources;
  report_.threads = threads_;
  report_.slots_per_thread = slots_;
  report_.interrupted = interrupted.load();
  report_.run = {static_cast<double>(monotonic_ns() - epoch_ns_) / 1e9, cpu_seconds_now() - cpu_start};
  for (std::uint32_t i = 0; i < threads_; ++i) {
    const auto& rows = engines[i]->by_source();
    if (report_.by_source.size() < rows.size()) report_.by_source.resize(rows.size());
    for (std::size_t s = 0; s < rows.size(); ++s) report_.by_source[s].merge(rows[s]);
    const auto& steps = engines[i]->steps();
    for (std::size_t s = 0; s < steps.size(); ++s) {
      report_.total.merge(steps[s]);
      if (s < report_.steps.size()) report_.steps[s].stats.merge(steps[s]);
    }
  }
  if (o_.mode == Mode::fanout) report_.fanout.tally = fanout::tally(board_);
  const std::string table = format_table(report_);
  std::fwrite(table.data(), 1, table.size(), stdout);
  if (o_.json) std::printf("%s\n", format_json(report_).c_str());
  std::fflush(stdout);
  if (const std::string line = tls_failure_line(report_); !line.empty())
    std::fprintf(stderr, "ringgate-load: %s\n", line.c_str());
  if (o_.mode == Mode::fanout && !fanout_failures(report_).empty()) return exit_fanout_failed;
  return 0;
}

// RLIMIT_NOFILE caps each ring's direct-descriptor table; raise the soft
// limit to the hard one (no privilege needed).  Returns the soft limit.
std::uint64_t raise_nofile() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 1024;
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur == RLIM_INFINITY ? (1u << 20) : r.rlim_cur;
}

int main_impl(int argc, char** argv) {
  Options o;
  std::string error;
  switch (parse_options(argc, argv, o, error)) {
    case ParseResult::help: std::fputs(help_text().c_str(), stdout); return 0;
    case ParseResult::error: std::fprintf(stderr, "ringgate-load: %s\n", error.c_str()); return exit_usage;
    case ParseResult::run: break;
  }
  Target t;
  if (!parse_target(o.url, t, error)) {
    std::fprintf(stderr, "ringgate-load: %s\n", error.c_str());
    return exit_usage;
  }
  if (!target_allowed(t, current_net_namespace(), current_default_route(), error)) {
    std::fprintf(stderr, "ringgate-load: %s\n", error.c_str());
    return exit_usage;
  }
  PortRange range;
  if (!read_port_range(range, error)) {
    std::fprintf(stderr, "ringgate-load: %s\n", error.c_str());
    return exit_start_failed;
  }
  SourcePlan sources;
  if (!plan_sources(concurrent_connections(o), range, o.sources, t, sources, error)) {
    std::fprintf(stderr, "ringgate-load: %s\n", error.c_str());
    return exit_usage;
  }
  // The kernel's own cap per table is 1,048,576 slots (IORING_MAX_FIXED_FILES).
  const std::uint64_t nofile = std::min<std::uint64_t>(raise_nofile(), 1u << 20);
  // A few descriptors stay for stdio and the rings themselves; the tables
  // are checked against the limit per ring, so each may use all of it.
  const std::uint32_t slots_limit = static_cast<std::uint32_t>(nofile);
  const std::uint32_t threads = plan_threads(concurrent_connections(o), slots_limit, o.threads);
  if (threads > threads_max) {
    std::fprintf(stderr,
                 "ringgate-load: plan needs %u threads (%llu connections / %u slots per ring, RLIMIT_NOFILE); "
                 "at most %u are supported\n",
                 threads, static_cast<unsigned long long>(concurrent_connections(o)), slots_limit, threads_max);
    return exit_usage;
  }
  const std::uint32_t slots = static_cast<std::uint32_t>(share_of(concurrent_connections(o), threads, 0));

  // fanout: the publish API must be as local as the target, and the board
  // (9 bytes per publish) is allocated before any socket exists.
  std::vector<Target> apis;
  fanout::Board board;
  if (o.mode == Mode::fanout) {
    bool allowed = parse_apis(o.api_url, apis, error);
    for (const Target& api : apis)
      allowed = allowed && target_allowed(api, current_net_namespace(), current_default_route(), error);
    if (!allowed) {
      std::fprintf(stderr, "ringgate-load: %s\n", error.c_str());
      return exit_usage;
    }
    if (!board.init(o.channels, o.messages, error)) {
      std::fprintf(stderr, "ringgate-load: %s\n", error.c_str());
      return exit_start_failed;
    }
  }

  // wss://: the TLS configuration (and the CA file) before any thread or socket.
  std::unique_ptr<tls::Context> tls;
  if (o.tls) {
    tls = std::make_unique<tls::Context>();
    if (!tls->init(o, t, error)) {
      std::fprintf(stderr, "ringgate-load: %s\n", error.c_str());
      return exit_usage;
    }
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Runner runner(o, t, sources, threads, slots, apis, board, tls.get());
  return runner.run();
}

}  // namespace
}  // namespace rg::load

int main(int argc, char** argv) { return rg::load::main_impl(argc, argv); }
