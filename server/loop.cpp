// The worker's loop: start-up (everything sized here, once), the loop turn,
// dispatch of each completion to its room by op, and the drain at shutdown.
#include <sys/mman.h>
#include <unistd.h>

#include <absl/strings/str_format.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "base/clock.h"
#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

const char* op_name(std::uint8_t op) noexcept {
  switch (op) {
    case op_accept: return "accept";
    case op_recv: return "recv";
    case op_send: return "send";
    case op_shutdown: return "shutdown";
    case op_cancel: return "cancel";
    case op_close: return "close";
    case op_accept_cancel: return "accept_cancel";
    case op_accept_reserved: return "accept_reserved";
    case op_accept_peer: return "accept_peer";
    case op_mailbox: return "mailbox";
    default: return "other";
  }
}

Worker::Worker(Shared& shared, std::uint32_t id, Listeners listeners)
    : shared_(shared),
      config_(shared.config),
      counters_(*shared.counters[id]),
      id_(id),
      listen_fds_{listeners.plain, listeners.tls} {}

Worker::~Worker() {
  // Publishers stop waking this ring before its fd goes away.
  if (mailbox_) mailbox_->ring_fd.store(-1);
  // The kernel may still hold sends and recvs that point into the slab,
  // pools and buffers (after a drain timeout): end the ring first.
  ring_.exit();
  if (conns_) munmap(conns_, slab_bytes_);
  release_publications();
}

bool Worker::start(std::string& error) {
  epoch_ms_ = now_ms_ = base::monotonic_ms();
  counters_.loop_heartbeat_ms.set(now_ms_);
  ring::RingParams params;
  if (ring_.init(params, error) != 0) return false;
  if (id_ == 0 && !ring_.features().defer_taskrun)
    RG_LOG(warn, "kernel lacks IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+): running without them");

  slots_ = shared_.table_slots_per_worker;
  counters_.table_slots.set(slots_);
  if (const int err = ring_.register_direct_table(slots_); err != 0) {
    error = absl::StrFormat("registering %u direct-descriptor slots: %s (the kernel allows at most RLIMIT_NOFILE per ring)",
                            slots_, std::strerror(err));
    return false;
  }
  // The slab: one record per table slot, so a slot index is a connection id.
  // Anonymous pages are zero, which is State::free.  It is faulted in now:
  // memory sized at start-up is paid at start-up, so a connection costs no
  // page faults and RSS stays flat as they arrive.
  accept_limit_ = slots_ - shared_.reserved_slots_per_worker;
  recently_freed_.reserve(recently_freed_max);
  slab_bytes_ = std::size_t{slots_} * sizeof(Conn);
  void* m = mmap(nullptr, slab_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) {
    error = absl::StrFormat("mapping the connection slab (%u records): %s", slots_, std::strerror(errno));
    return false;
  }
  conns_ = static_cast<Conn*>(m);
  wheel_.bind(conns_, wheel_tick_ms, rel_now());
  queue_.bind(conns_);
  heartbeats_ = config_.ping_interval_ms > 0 || config_.idle_timeout_ms > 0;
  // Book::window_bytes is 32 bits: a window of 4 GiB or more is 4 GiB.
  progress_window_bytes_ = std::clamp<std::uint64_t>(
      std::uint64_t{config_.min_message_rate} * config_.stall_timeout_ms / 1000, 1, UINT32_MAX);
  rearm_.reserve(slots_);
  stalled_teardowns_.reserve(slots_);
  stalled_retry_.reserve(slots_);

  if (buffers_.init(ring_, buffer_group, config_.recv_buffer_count, config_.recv_buffer_size, error) != 0) return false;

  parsers_.init(config_.max_pending_handshakes);
  if (!responses_.init(config_.max_pending_handshakes, /*populate=*/true)) {
    error = absl::StrFormat("mapping %u response slots: %s", config_.max_pending_handshakes, std::strerror(errno));
    return false;
  }
  http_limits_ = {config_.max_request_line, config_.max_header_bytes, config_.max_headers};
  for (const auto& p : config_.subprotocols) subprotocols_joined_ += (subprotocols_joined_.empty() ? "" : ",") + p;
  pubsub_ = config_.pubsub_enabled();
  policy_ = {config_.echo_enabled() ? std::string_view(config_.echo_path) : "", subprotocols_joined_,
             pubsub_ ? std::string_view(config_.pubsub_path) : ""};
  if (config_.auth_jwt()) {
    verifier_ = std::make_unique<jwt::Verifier>(std::span<const std::uint8_t>(
        reinterpret_cast<const std::uint8_t*>(shared_.jwt_key.data()), shared_.jwt_key.size()));
    if (!verifier_->ready()) {
      error = "setting up the JWT verifier (jwt_secret_file must hold 1..256 bytes)";
      return false;
    }
  }
  reject_with_close_ = config_.reject == Reject::close;

  // The WebSocket side: sessions on first use, their books and send lists
  // in mappings sized for max_active_sessions.
  sessions_.init(config_.max_active_sessions);
  session_limits_ = {config_.max_message_size, config_.max_frame_size, config_.send_chunk_size};
  if (!books_.init(config_.max_active_sessions, false) || !send_vecs_.init(config_.max_active_sessions, false)) {
    error = absl::StrFormat("mapping per-session state for %u sessions: %s", config_.max_active_sessions,
                            std::strerror(errno));
    return false;
  }
  const std::uint64_t budget = shared_.max_buffered_bytes / shared_.counters.size();
  outbound_.init(config_, budget, counters_);
  // Outbound data in segments never exceeds this worker's share of the
  // budget (admission refuses before it; the cap is the backstop).
  segments_.init(config_.segment_size,
                 static_cast<std::uint32_t>(std::min(segment_cache_bytes_max, budget) / config_.segment_size),
                 std::max<std::uint64_t>(budget / config_.segment_size, 1));
  message_scratch_.reset(new (std::nothrow) std::uint8_t[config_.max_message_size]);
  if (!message_scratch_) {
    error = "allocating the message scratch buffer (max_message_size)";
    return false;
  }

  per_ip_ = shared_.per_ip.enabled();
  proxy_on_ = !shared_.proxy_from.empty();
  if (proxy_on_) awaiting_proxy_.assign((std::size_t{slots_} + 63) / 64, 0);
  if (per_ip_ || proxy_on_) {
    // peer_accepts_max single accepts per listener.
    for (std::uint32_t l = 0; l < listeners_max; ++l) {
      if (listen_fds_[l] < 0) continue;
      for (std::uint32_t i = 0; i < peer_accepts_max; ++i) {
        PeerAccept a{};
        a.listener = l;
        peer_accepts_.push_back(a);
      }
    }
    if (per_ip_) ip_keys_.assign(slots_, PerIpCounts::none);
  }
  tls_enabled_ = listen_fds_[listener_tls] >= 0;
  if (tls_enabled_) {
    RG_ASSERT(shared_.tls != nullptr);
    if (!tls_.init(*shared_.tls, slots_, config_.tls_record_buffers, error)) return false;
    tls_.set_now(now_ms_);
  }
  if (config_.accept_rate > 0) {
    // This worker's share; the kernel spreads connections over the
    // SO_REUSEPORT listeners evenly enough that equal shares add up.
    const double workers = static_cast<double>(shared_.counters.size());
    const double burst = config_.accept_burst ? config_.accept_burst : config_.accept_rate;
    rate_limited_ = true;
    tokens_per_ms_ = config_.accept_rate / workers / 1000.0;
    tokens_max_ = std::max(1.0, burst / workers);
    tokens_ = tokens_max_;
    tokens_at_ms_ = now_ms_;
  }
  build_constant_answers();
  if (pubsub_ && !start_pubsub(error)) return false;
  arm_accept();
  return true;
}

void Worker::run() {
  std::array<ring::Completion, reap_batch> cqes;
  for (;;) {
    if (const int err = ring_.submit_and_wait_us(wait_budget_us()); err != 0) {
      RG_LOG(error, "worker %u: io_uring wait failed: %s", id_, std::strerror(err));
    }
    now_ms_ = base::monotonic_ms();
    counters_.loop_heartbeat_ms.set(now_ms_);
    if (tls_enabled_) tls_.set_now(now_ms_);
    ring_.drain(cqes, reap_rounds_max, [this](const ring::Completion& c) { dispatch(c); });
    buffers_.publish();
    // Multishot recvs that ended because the buffer ring ran dry resume now
    // that this turn's buffers are back.
    for (const std::uint32_t slot : rearm_) {
      Conn& k = conns_[slot];
      k.flags &= static_cast<std::uint16_t>(~f_rearm_queued);
      if ((k.state == State::handshake || k.state == State::open || k.state == State::ws_closing ||
           k.state == State::lingering) &&
          !(k.flags & f_recv_armed))
        arm_recv(slot);
    }
    rearm_.clear();
    // Teardowns that could not get an SQE try again (rare: the SQ is
    // submitted whenever it fills).
    if (!stalled_teardowns_.empty()) {
      stalled_retry_.swap(stalled_teardowns_);
      for (const std::uint32_t slot : stalled_retry_) {
        if (conns_[slot].state == State::tearing_down) {
          conns_[slot].state = State::lingering;  // let teardown() run again
          teardown(slot);
        }
      }
      stalled_retry_.clear();
    }
    if (accept_cancel_pending_) cancel_accepts();
    arm_accept();
    if (rate_limited_) serve_accept_queue();
    if (pubsub_) {
      drain_mailbox();
      run_fanout();
      arm_mailbox_read();
    }
    run_timers();
    // Gauges are true when read: published every turn, not only when a
    // message next moves them.
    publish_segment_gauges();
    if (pubsub_) counters_.deliveries_live.set(deliveries_.in_use());
    if (accept_paused_ && !draining_ && counters_.live_slots.load() < accept_limit_) {
      accept_paused_ = false;
      arm_accept();
    }
    if (!draining_ && shared_.stopping.load(std::memory_order_relaxed)) begin_drain();
    if (draining_) {
      const std::uint64_t live = counters_.live_slots.load();
      if ((live == 0 && !accepting()) || now_ms_ >= drain_deadline_ms_) {
        if (live > 0) RG_LOG(warn, "worker %u: drain timeout with %u connections still open", id_, live);
        RG_LOG(info, "worker %u: stopped; pools high-water: %u sessions, %u parse slots", id_, sessions_.created(),
               parsers_.created());
        break;
      }
    }
  }
}

void Worker::dispatch(const ring::Completion& c) {
  const auto op = static_cast<Op>(c.tag.op);
  switch (op) {
    case op_accept: on_accept(c); return;
    case op_accept_peer: on_accept_peer(c); return;
    case op_accept_reserved: on_accept_reserved(c); return;
    case op_accept_cancel:
      // ENOENT/EALREADY: the accept had already ended; nothing to undo.
      if (c.outcome() == ring::Outcome::unexpected && c.error() != ENOENT && c.error() != EALREADY)
        count_unexpected(op, c.error());
      return;
    case op_mailbox:
      // The mailbox is drained every loop turn; this completion only ended
      // the wait.  An eventfd read is re-armed there too.
      if (c.tag.index == 1) mailbox_read_armed_ = false;
      return;
    default: break;
  }
  const std::uint32_t slot = c.tag.index;
  RG_ASSERT(slot < slots_);
  Conn& k = conns_[slot];
  if ((k.generation & ring::generation_mask) != c.tag.generation || k.state == State::free) {
    // A completion for a connection that is gone; its buffer still goes back.
    if (c.has_buffer()) buffers_.recycle(c.buffer_id());
    return;
  }
  switch (op) {
    case op_recv: on_recv(slot, c); break;
    case op_send: on_send(slot, c); break;
    case op_shutdown:
    case op_cancel:
      // A cancel that found nothing (ENOENT, EALREADY) and a shutdown on a
      // connection the peer already reset are expected; the rest is news.
      if (c.outcome() == ring::Outcome::unexpected && c.error() != ENOENT && c.error() != EALREADY)
        count_unexpected(op, c.error());
      RG_ASSERT(k.ops > 0);
      --k.ops;
      maybe_finish_teardown(slot);
      break;
    case op_close: on_close(slot, c); break;
    default: RG_ASSERT(false && "a completion with an op no room submits"); break;
  }
}

void Worker::count_unexpected(std::uint8_t op, int err) noexcept {
  if (op < op_count_) {
    const std::size_t row = std::min<std::size_t>(static_cast<std::size_t>(err), WorkerCounters::errno_max);
    counters_.unexpected_errors[op][row].add();
  }
  std::uint64_t dropped = 0;
  if (error_log_.allow(now_ms_, dropped))
    RG_LOG(warn, "worker %u: unexpected %s error: %s (errno %d; %u similar lines suppressed)", id_, op_name(op),
           std::strerror(err), err, dropped);
}

void Worker::begin_drain() {
  draining_ = true;
  drain_deadline_ms_ = now_ms_ + config_.drain_timeout_ms;
  cancel_accepts();
  if (const int err = ring_.submit(); err != 0)
    RG_LOG(warn, "worker %u: submitting the accept cancels at drain: %s", id_, std::strerror(err));
  // No new connections: this worker's listener goes away; the kernel resets
  // whatever waits in its backlog.
  for (int& fd : listen_fds_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  for (std::uint32_t slot = 0; slot < slots_; ++slot) {
    Conn& k = conns_[slot];
    switch (k.state) {
      case State::queued:
        timer_remove(slot);
        --queue_depth_;
        begin_handshake(slot);
        answer_const(slot, Const::shutdown_http, Refusal::shutdown);
        break;
      case State::handshake:
        answer_const(slot, Const::shutdown_http, Refusal::shutdown);
        break;
      case State::open:
        if (k.session == nil && k.aux == nil && k.pending_const == Const::none) {
          // Idle (nearly all of them): a constant close frame, no session.
          k.pending_const = Const::shutdown_ws;
          k.state = State::ws_closing;
          timer_add(slot, TimerList::closing, config_.close_timeout_ms);
          pump_send(slot);
          break;
        }
        // Mid-message or with output queued: the close goes out through the
        // session after it, and the peer's close reply is still read (no
        // linger: drain_timeout bounds the wait).
        close_with(slot, 1001, "server shutting down", /*linger=*/false);
        break;
      default:
        break;
    }
  }
}

void run_worker(Shared& shared, std::uint32_t id, Listeners listeners, std::atomic<int>& ready, std::string& error) {
  auto worker = std::make_unique<Worker>(shared, id, listeners);
  if (!worker->start(error)) {
    ready.store(-1);
    ready.notify_all();
    return;
  }
  ready.store(1);
  ready.notify_all();
  worker->run();
}

}  // namespace rg::server
