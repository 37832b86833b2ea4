// One load-generating thread: one io_uring, one direct-descriptor table, one
// provided-buffer ring, and the connections it owns from connect to close.
// Threads share nothing on the data path; the main thread steers them with a
// single atomic command word and reads their progress from relaxed atomic
// counters (one writer each).  The detailed results (StepStats) are read only
// after the thread has been joined.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tools/load/fanout.h"
#include "tools/load/histogram.h"
#include "tools/load/plan.h"
#include "tools/load/tls_client.h"

namespace rg::load {

// How one connection attempt ended; each attempt lands in exactly one.
enum class Outcome : std::uint8_t {
  upgraded,
  http_503_retry_after,
  http_503_no_retry_after,
  http_429_retry_after,     // rate limited, with a time to come back
  http_429_no_retry_after,  // rate limited, no hint: a client can only guess
  close_1013,  // upgraded, then the server closed with 1013 (try again later)
  reset,       // ECONNRESET / EPIPE before the upgrade completed
  refused,     // ECONNREFUSED
  timed_out,   // no 101 within --handshake-timeout (or the kernel's SYN timeout)
  tls_failed,  // wss://: the TLS handshake failed (verification, an alert, a TLS error: TlsStats says why)
  other,       // see OtherDetail
};
inline constexpr std::size_t outcome_count = 11;
static_assert(static_cast<std::size_t>(Outcome::other) + 1 == outcome_count, "every outcome has a counter");
[[nodiscard]] std::string_view outcome_name(Outcome outcome) noexcept;

// The class of a complete HTTP answer other than 101.  503 and 429 split on
// Retry-After: a refusal without it leaves clients to guess when to retry,
// which is exactly what admission-control tests must catch.  Any other
// status is `other` (the engine keeps the status in OtherDetail::by_status).
[[nodiscard]] Outcome http_outcome(std::uint16_t status, bool retry_after) noexcept;

// Why an attempt is `other` when neither an errno nor an HTTP status says it.
enum class Oddity : std::uint8_t {
  malformed_response,   // not HTTP/1.x, or headers beyond 4 KiB
  bad_accept,           // 101 without the right Sec-WebSocket-Accept
  no_upgrade_header,    // 101 without Upgrade: websocket
  eof_before_response,  // the server closed before answering
  aborted,              // the run ended (SIGINT) before the attempt resolved
  no_sqe,               // the ring refused SQEs
};
inline constexpr std::size_t oddity_count = 6;
[[nodiscard]] std::string_view oddity_name(Oddity oddity) noexcept;

struct OtherDetail {
  static constexpr std::size_t errno_max = 256;
  static constexpr std::size_t status_max = 600;
  std::array<std::uint64_t, errno_max> by_errno{};
  std::array<std::uint64_t, status_max> by_status{};
  std::array<std::uint64_t, oddity_count> by_oddity{};
  void merge(const OtherDetail& o) noexcept;
};

struct FirstFailure {
  std::uint64_t attempt = UINT64_MAX;  // global attempt number (0-based)
  std::uint64_t started_ns = 0;        // since the run's epoch
  std::uint64_t resolved_ns = 0;
  Outcome outcome = Outcome::other;
};

// Figures for one step (ramp) or the whole run (other modes).
struct StepStats {
  std::uint64_t attempted = 0;
  std::array<std::uint64_t, outcome_count> outcomes{};
  std::uint64_t disconnects_after_success = 0;  // upgraded, then closed/reset by the server before we closed
  std::uint64_t closed_clean = 0;     // our close 1000 answered by the server's close frame
  std::uint64_t closed_eof = 0;       // our close answered by EOF without a close frame
  std::uint64_t close_timeouts = 0;   // no answer within --close-timeout
  std::uint64_t close_errors = 0;     // reset while closing
  std::uint64_t protocol_errors = 0;  // bad frames from the server after the upgrade
  std::uint64_t pings = 0;
  std::uint64_t unexpected_messages = 0;  // data frames in hold/ramp/flood
  std::uint64_t echo_msgs = 0;   // echoes received inside the measured window
  std::uint64_t echo_bytes = 0;  // their payload bytes
  std::uint64_t echo_total = 0;  // all echoes, window or not
  std::uint64_t mismatches = 0;    // echoes whose payload is corrupt (or never sent)
  std::uint64_t out_of_order = 0;  // echoes not answering the oldest message in flight
  std::uint64_t lost = 0;          // messages skipped by a later echo: never answered
  std::uint64_t duplicates = 0;    // intact echoes of a message already answered or lost
  std::uint64_t unanswered = 0;    // messages still in flight when the connection went
  // flood --verify-echo: connections still open at the end that were sent
  // one message, and how that went (checked = echoed + echo_failed).
  std::uint64_t held_checked = 0;
  std::uint64_t held_echoed = 0;       // the echo came back byte for byte
  std::uint64_t held_echo_failed = 0;  // no echo within --close-timeout, a wrong one, or the connection went
  Histogram handshake_us;
  // Connect start -> the refusal is known: the headers of an HTTP 4xx/5xx
  // answer (its body is not waited for), or the server's close 1013 after a
  // 101.  How fast a server says no is what a client pays per refusal.
  Histogram refused_us;
  Histogram rtt_us;
  fanout::Counts fanout;  // fanout mode: what the subscribers saw
  tls::TlsStats tls;      // wss:// only
  OtherDetail other;
  FirstFailure first_failure;
  void merge(const StepStats& o) noexcept;
};

// What the attempts from one source address came to (attempt k uses source
// source_of(k, N)), so a test can bound what one client address got, e.g.
// "no source was upgraded more than 600 times".  Whole-run figures, one row
// per source of the plan, sized at start.
struct SourceCounts {
  std::uint64_t attempted = 0;
  std::array<std::uint64_t, outcome_count> outcomes{};  // a close 1013 moves the attempt from upgraded
  void merge(const SourceCounts& o) noexcept;
};

// What the main thread asks for.  Phases only move forward within a step.
enum class Phase : std::uint8_t {
  idle,
  open,    // open this step's share at this step's rate
  settle,  // stop opening; let pending handshakes resolve (flood --duration)
  hold,    // keep connections; echo mode pumps messages; fanout tracks the subscribed
  verify,  // flood --verify-echo: one echo per open connection
  close,   // close every connection (close 1000), release every slot
  stop,    // leave the loop now
};

struct Control {
  std::atomic<std::uint64_t> command{0};
  [[nodiscard]] static constexpr std::uint64_t pack(Phase phase, std::uint32_t step) noexcept {
    return (std::uint64_t{step} << 8) | static_cast<std::uint8_t>(phase);
  }
  void set(Phase phase, std::uint32_t step) noexcept { command.store(pack(phase, step), std::memory_order_release); }
};

// Progress a thread publishes once per loop turn (relaxed; one writer each).
struct alignas(64) LiveCounters {
  std::atomic<std::uint64_t> attempted{0};
  std::atomic<std::uint64_t> upgraded{0};  // minus later close_1013 reclassifications
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> open{0};          // upgraded and not yet closing
  std::atomic<std::uint64_t> slots_in_use{0};  // from chain submit to close completion
  std::atomic<std::uint64_t> disconnects{0};
  std::atomic<std::uint64_t> echo_msgs{0};
  std::atomic<std::uint64_t> verifying{0};  // --verify-echo messages not yet answered (nor failed)
  std::atomic<std::uint64_t> errors{0};  // failed attempts + disconnects + protocol errors + close problems
  // fanout
  std::atomic<std::uint64_t> subscribed{0};  // subscribed notices received
  std::atomic<std::uint64_t> awaiting{0};    // open, not yet subscribed
  std::atomic<std::uint64_t> ready{0};       // ready subscribers (from the hold command on), stalled included
  std::atomic<std::uint64_t> stalled{0};     // --stall-percent subscribers that stopped reading
  std::atomic<std::uint64_t> fanout_received{0};
  std::atomic<std::uint64_t> fanout_delivered{0};  // first deliveries (no duplicates)
  // wss://
  std::atomic<std::uint64_t> tls_handshakes{0};  // completed, full or resumed
  std::atomic<std::uint64_t> tls_resumed{0};
  // The last Control command this thread has acted on (release): the main
  // thread waits for it before giving the next one, so none is overwritten
  // unseen.
  std::atomic<std::uint64_t> command_seen{0};
};

struct EngineSetup {
  const Options* options = nullptr;
  const Target* target = nullptr;
  const SourcePlan* sources = nullptr;
  std::uint32_t index = 0;
  std::uint32_t threads = 1;
  std::uint32_t slots = 0;  // table size: the most connections this thread holds at once
  std::uint64_t seed = 0;
  std::uint64_t epoch_ns = 0;
  Control* control = nullptr;
  LiveCounters* live = nullptr;
  fanout::Board* board = nullptr;  // fanout mode only
  const tls::Context* tls = nullptr;  // wss:// only
};

class Engine;

// Owns a thread's engine without exposing its internals.
class EngineHandle {
 public:
  explicit EngineHandle(const EngineSetup& setup);
  ~EngineHandle();
  EngineHandle(const EngineHandle&) = delete;
  EngineHandle& operator=(const EngineHandle&) = delete;
  // Builds the ring, table and arenas.  False with `error` set.
  [[nodiscard]] bool start(std::string& error);
  void run();
  // Per step (one entry for modes without steps).  Read after run() returned.
  [[nodiscard]] const std::vector<StepStats>& steps() const;
  // One row per source address of the plan.  Read after run() returned.
  [[nodiscard]] const std::vector<SourceCounts>& by_source() const;

 private:
  Engine* engine_;
};

[[nodiscard]] std::uint64_t monotonic_ns() noexcept;

}  // namespace rg::load
