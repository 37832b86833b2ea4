// The end-of-run report: a table for people on stdout, and with --json one
// JSON object as the last stdout line for scripts.  Client CPU time is
// printed next to every figure it qualifies: a load generator that saturates
// its own cores measures itself, not the server.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/load/engine.h"
#include "tools/load/fanout.h"
#include "tools/load/plan.h"
#include "tools/load/publisher.h"

namespace rg::load {

struct CpuWindow {
  double wall_s = 0;
  double cpu_s = 0;  // getrusage(RUSAGE_SELF) user + sys, all threads
  [[nodiscard]] double utilisation() const noexcept { return wall_s > 0 ? cpu_s / wall_s : 0; }
};

struct StepReport {
  double rate_per_s = 0;
  std::uint64_t held = 0;  // open at the end of the hold
  StepStats stats;
  CpuWindow window;        // the whole step, open to closed
};

// fanout: what the publisher and the board say (the subscribers' own
// figures are in RunReport::total.fanout).
struct FanoutReport {
  std::uint64_t subscribers_ready = 0;  // subscribed when publishing began
  fanout::Tally tally;
  PublishResult publish;
  bool settled = false;  // every expected delivery arrived within --settle
  double settle_s = 0;   // last answer -> settled (or --settle)
};

struct RunReport {
  const Options* options = nullptr;
  const Target* target = nullptr;
  SourcePlan sources;
  std::uint32_t threads = 0;
  std::uint32_t slots_per_thread = 0;
  StepStats total;
  std::vector<SourceCounts> by_source;  // one row per source of the plan, whole run
  std::vector<StepReport> steps;  // ramp only
  std::uint64_t held = 0;         // hold/echo: open at the end of the hold
  std::uint64_t slots_left = 0;   // slots still in use when the run ended (0 after a clean close)
  bool interrupted = false;
  CpuWindow run;                  // the whole run
  CpuWindow measured;             // echo: the measured window
  CpuWindow opening;              // hold, echo, flood, fanout: from the first attempt to the last one resolved
  // The tool's own resident memory (/proc/self/statm) once every thread is
  // set up and before any connection, and at the end of the hold (the
  // measured window in echo, the watch in flood, the deliveries in fanout).
  std::uint64_t rss_start_bytes = 0;
  std::uint64_t rss_held_bytes = 0;
  FanoutReport fanout;            // fanout only
};

// The tool's resident set size now, in bytes (0 if unreadable).
[[nodiscard]] std::uint64_t rss_bytes_now() noexcept;

// (rss_held - rss_start) / held: what each held connection costs the tool,
// or 0 when nothing was held.
[[nodiscard]] double rss_per_connection(const RunReport& report) noexcept;

// wss://: the reason keys of the tls report ("verify_untrusted", ...), and
// one line for stderr when handshakes failed: how many, and the first in
// words with a hint ("" when none failed).
[[nodiscard]] std::string tls_failure_line(const RunReport& report);

// fanout: the checks that failed ("lost 1", "subscribers ready 48 of 50",
// ...), empty when the run passed.  Publishes the API refused are not a
// failure by themselves; publishes never sent are.
[[nodiscard]] std::vector<std::string> fanout_failures(const RunReport& report);

[[nodiscard]] double cpu_seconds_now() noexcept;

std::string format_table(const RunReport& report);
std::string format_json(const RunReport& report);

// The JSON list of by_source: [{"source":"127.0.0.2","attempted":N,
// "upgraded":N, ...}, ...], one object per row, in source order, with
// attempted always and only the outcome classes that are not zero.
std::string by_source_json(const std::vector<SourceCounts>& rows, const SourcePlan& plan, int family);

}  // namespace rg::load
