// ringgate: start-up, capacity planning, signals and shutdown.

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <string_view>
#include <string>
#include <thread>
#include <vector>

#include <absl/strings/str_join.h>

#include "proto/backplane.h"
#include "proto/http_upgrade.h"
#include "proto/pubsub.h"
#include "ring/ktls.h"
#include "ring/ring.h"
#include "control/admin.h"
#include "control/backplane.h"
#include "control/secrets.h"
#include "tooling/capacity_model.h"
#include "config/config.h"
#include "base/clock.h"
#include "base/log.h"
#include "tooling/preflight.h"
#include "tooling/tune.h"
#include "server/tls_context.h"
#include "server/tls_stream.h"
#include "server/worker.h"

namespace {

using namespace rg::server;

namespace capacity = rg::server::capacity;

// Upper bound on workers: each costs a thread, a ring and its buffers.
constexpr std::uint32_t workers_max = capacity::workers_max;

bool validate(const Config& c, std::string& error) {
  rg::base::log::Level level;
  if (!rg::base::log::parse_level(c.log_level, level)) {
    error = "log_level must be debug, info, warn or error, not '" + c.log_level + "'";
    return false;
  }
  if (c.echo_enabled() && (c.echo_path.empty() || c.echo_path[0] != '/' ||
                           c.echo_path.size() > rg::proto::http::path_bytes_max ||
                           c.echo_path.find_first_of(" ?#") != std::string::npos)) {
    error = "echo_path must start with '/', hold no spaces, '?' or '#', be at most 1024 bytes, or be off";
    return false;
  }
  for (const std::string& range : c.proxy_protocol_from) {
    rg::server::AddressRange r;
    if (!rg::server::AddressRange::parse(range, r, error)) {
      error = "proxy_protocol_from: " + error;
      return false;
    }
  }
  if (c.backplane_enabled()) {
    rg::proto::backplane::Address address;
    if (!rg::proto::backplane::parse_url(c.backplane, address, error)) return false;
    if (!c.pubsub_enabled()) {
      error = "backplane carries publishes to pubsub_path's subscribers: it needs pubsub_path on";
      return false;
    }
    if (!c.node_id.empty() && (c.node_id.size() > 64 || !rg::proto::pubsub::check_name(c.node_id).ok())) {
      error = "node_id must be 1 to 64 of [A-Za-z0-9._:-], not '" + c.node_id + "'";
      return false;
    }
  }
  if (c.drain_grace_ms > 3'600'000) {
    error = "drain_grace must be at most 1h";
    return false;
  }
  if (!c.echo_enabled() && !c.pubsub_enabled()) {
    error = "echo_path and pubsub_path are both off: the server would have no endpoint";
    return false;
  }
  if (c.echo_auth == rg::server::Auth::jwt && !c.auth_jwt()) {
    error = "echo_auth = jwt needs auth = jwt (and its jwt_secret_file)";
    return false;
  }
  if (c.min_message_rate == 0) {
    error = "min_message_rate must be at least 1 byte per second";
    return false;
  }
  for (const auto& p : c.subprotocols) {
    if (p.size() > 64 || p.find_first_of(" \t,;\"") != std::string::npos) {
      error = "subprotocol '" + p + "' must be a token of at most 64 characters";
      return false;
    }
  }
  const auto count = c.recv_buffer_count;
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
    error = "recv_buffer_count must be a power of two between 1 and 32768";
    return false;
  }
  if (c.recv_buffer_size < 512 || c.recv_buffer_size > 1024 * 1024) {
    error = "recv_buffer_size must be between 512B and 1MiB";
    return false;
  }
  if (c.send_chunk_size < 4096) {
    error = "send_chunk_size must be at least 4KiB";
    return false;
  }
  if (c.segment_size < 1024 || c.segment_size > 1024 * 1024) {
    error = "segment_size must be between 1KiB and 1MiB";
    return false;
  }
  if (c.frame_buffer_size < 4096) {
    error = "frame_buffer_size must be at least 4KiB";
    return false;
  }
  if (c.slow_consumer_close_code != 1008 && c.slow_consumer_close_code != 1013) {
    error = "slow_consumer_close_code must be 1008 or 1013";
    return false;
  }
  if (c.backpressure_timeout_ms < 100) {
    error = "backpressure_timeout must be at least 100ms (the timer tick)";
    return false;
  }
  if (c.max_request_line < 64 || c.max_header_bytes < 64 || c.max_headers == 0) {
    error = "max_request_line and max_header_bytes must be at least 64 bytes, max_headers at least 1";
    return false;
  }
  if (c.max_frame_size == 0 || c.max_frame_size > (1ull << 31)) {
    error = "max_frame_size must be between 1B and 2GiB";
    return false;
  }
  if (c.max_message_size == 0 || c.max_message_size > (1ull << 31)) {
    error = "max_message_size must be between 1B and 2GiB";
    return false;
  }
  if (c.stall_timeout_ms < 100 || c.handshake_timeout_ms < 100 || c.close_timeout_ms < 100) {
    error = "stall_timeout, handshake_timeout and close_timeout must be at least 100ms (the timer tick)";
    return false;
  }
  if (c.max_pending_handshakes == 0 || c.max_active_sessions == 0) {
    error = "max_pending_handshakes and max_active_sessions must be at least 1";
    return false;
  }
  if (c.pubsub_enabled()) {
    if (c.pubsub_path.empty() || c.pubsub_path[0] != '/' || c.pubsub_path.size() > rg::proto::http::path_bytes_max ||
        c.pubsub_path.find_first_of(" ?#") != std::string::npos || c.pubsub_path == c.echo_path) {
      error = "pubsub_path must start with '/', hold no spaces, '?' or '#', be at most 1024 bytes, differ from "
              "echo_path, or be off";
      return false;
    }
  }
  if (c.auth_jwt() && c.jwt_secret_file.empty()) {
    error = "auth = jwt needs jwt_secret_file (the HS256 key)";
    return false;
  }
  for (const auto& p : c.raw_channels) {
    if (!rg::proto::pubsub::pattern_valid(p)) {
      error = "raw_channels: '" + p + "' is not a channel pattern (a name, NAME.* or *)";
      return false;
    }
  }
  if (c.max_subscriptions == 0 || c.max_subscriptions > 65536) {
    error = "max_subscriptions must be between 1 and 65536";
    return false;
  }
  if (c.mailbox_size == 0 || c.mailbox_size > (1u << 20) || c.fanout_batch == 0) {
    error = "mailbox_size must be between 1 and 1048576, fanout_batch at least 1";
    return false;
  }
  if (c.max_publish_size == 0 || c.max_publish_size > (16ull << 20)) {
    error = "max_publish_size must be between 1B and 16MiB";
    return false;
  }
  std::string admin_host;
  std::uint16_t admin_port = 0;
  if (c.admin_listen != "off" && !parse_host_port(c.admin_listen, admin_host, admin_port)) {
    error = "admin_listen must be HOST:PORT, [V6]:PORT or off, not '" + c.admin_listen + "'";
    return false;
  }
  std::string tls_host;
  std::uint16_t tls_port = 0;
  if (c.tls_enabled()) {
    if (!parse_host_port(c.tls_listen, tls_host, tls_port)) {
      error = "tls_listen must be HOST:PORT, [V6]:PORT or off, not '" + c.tls_listen + "'";
      return false;
    }
    if (c.tls_cert_file.empty() || c.tls_key_file.empty()) {
      error = "tls_listen needs tls_cert_file (PEM chain, leaf first) and tls_key_file (its private key)";
      return false;
    }
    if (c.tls_handshakes_max == 0 || c.tls_record_buffers == 0 || c.tls_record_buffers > (1u << 20)) {
      error = "tls_handshakes_max must be at least 1, tls_record_buffers between 1 and 1048576";
      return false;
    }
  }
  if (c.admin_per_ip_limit > Admin::clients_max) {
    error = "admin_per_ip_limit must be at most " + std::to_string(Admin::clients_max) + " (0 = no limit)";
    return false;
  }
  if (c.admin_request_timeout_ms < 100 || c.admin_request_timeout_ms > 3'600'000) {
    error = "admin_request_timeout must be between 100ms and 1h";
    return false;
  }
  if (c.not_ready_percent == 0 || c.not_ready_percent > 100 || c.warn_percent == 0 || c.warn_percent > 100 ||
      c.kernel_refuse_percent == 0 || c.kernel_refuse_percent > 100) {
    error = "not_ready_percent, warn_percent and kernel_refuse_percent must be between 1 and 100";
    return false;
  }
  if (c.accept_rate > 0 && (c.accept_queue_timeout_ms < 100 || c.accept_queue_timeout_ms > 3'600'000)) {
    error = "accept_queue_timeout must be between 100ms (the timer tick) and 1h";
    return false;
  }
  const auto timer_ok = [](std::uint64_t ms) { return ms == 0 || (ms >= 100 && ms <= (1u << 30)); };
  if (!timer_ok(c.ping_interval_ms) || !timer_ok(c.idle_timeout_ms) || c.pong_timeout_ms < 100 ||
      c.pong_timeout_ms > (1u << 30)) {
    error = "ping_interval and idle_timeout must be 0 (off) or between 100ms and 12 days; pong_timeout between "
            "100ms and 12 days";
    return false;
  }
  if (c.per_ip_limit > (1u << 30)) {
    error = "per_ip_limit must be at most 2^30";
    return false;
  }
  if (c.workers > workers_max) {
    error = "workers must be at most " + std::to_string(workers_max);
    return false;
  }
  return true;
}

// The secrets (control/secrets.h), read before anything starts: a missing,
// short or oversized one is a configuration error, and the message says how
// to make a good one.  An admin listener others can reach without a token
// is allowed (a private network may be the guard) but said out loud.
bool load_secrets(const Config& config, Shared& shared, std::string& error) {
  if (config.auth_jwt()) {
    Secret key = read_secret(config.jwt_secret_file, SecretKind::hs256_key);
    if (!key.ok()) {
      error = key.error;
      return false;
    }
    shared.jwt_key = std::move(key.bytes);
  }
  if (!config.api_token_file.empty()) {
    Secret token = read_secret(config.api_token_file, SecretKind::api_token);
    if (!token.ok()) {
      error = token.error;
      return false;
    }
    shared.api_token = std::move(token.bytes);
  }
  std::string admin_host;
  std::uint16_t admin_port = 0;
  if (config.admin_listen != "off" && shared.api_token.empty() &&
      parse_host_port(config.admin_listen, admin_host, admin_port) && !loopback_host(admin_host))
    RG_LOG(warn, "admin_listen %s is not a loopback address and api_token_file is not set: anyone who can reach "
                 "it may publish to every subscriber; set api_token_file (head -c 32 /dev/urandom | base64 > FILE) "
                 "or bind admin_listen to 127.0.0.1", config.admin_listen);
  return true;
}

// The certificates for the start-up and reload lines: "chain.pem (+2 by SNI: a.example, *.b.example)".
std::string describe_certificates(const rg::server::TlsContext& tls) {
  const auto& certs = tls.certificates();
  std::string out = certs.front().cert_file;
  if (certs.size() > 1) {
    out += absl::StrFormat(" (+%d by SNI:", certs.size() - 1);
    for (std::size_t i = 1; i < certs.size(); ++i)
      for (const std::string& n : certs[i].names) out += " " + n;
    out += ")";
  }
  out += tls.ticket_keys() ? absl::StrFormat(", %d ticket key(s) from tls_ticket_key_file", tls.ticket_keys())
                           : std::string(", ticket keys of this process");
  return out;
}

// SIGHUP: the certificates, keys and ticket keys are read again.  New
// connections get the new ones; existing ones keep theirs until they close.
// A file that does not load leaves everything as it was, said in the log.
void reload_tls(const Config& config, Shared& shared, rg::server::TlsContexts& contexts) {
  if (!shared.tls) {
    RG_LOG(info, "SIGHUP: nothing to reload (tls_listen is off)");
    return;
  }
  std::string error;
  std::shared_ptr<const rg::server::TlsContext> next = rg::server::TlsContext::load(config, error);
  if (!next) {
    shared.tls_reloads_failed.add();
    RG_LOG(error, "SIGHUP: TLS reload failed, still serving the previous certificates: %s", error);
    return;
  }
  shared.tls_not_after_s.store(next->not_after_s());
  const std::int64_t days_left = (next->not_after_s() - static_cast<std::int64_t>(time(nullptr))) / 86400;
  RG_LOG(info, "SIGHUP: TLS reloaded: %s (%s, %d days left); open connections keep theirs",
         describe_certificates(*next), next->certificates().front().key_description, days_left);
  contexts.publish(std::move(next));
  shared.tls_reloads_ok.add();
}

// Pub/sub plumbing sized at start-up: one mailbox per worker,
// and how publishers wake workers (MSG_RING when the kernel has it, the
// workers' eventfds otherwise or when cross_worker_wake = eventfd).
bool setup_pubsub(const Config& config, std::uint32_t workers, Shared& shared, std::string& error) {
  if (!config.pubsub_enabled()) return true;
  if (config.cross_worker_wake != rg::server::WakeMode::eventfd) {
    rg::ring::Ring probe;
    rg::ring::RingParams params;
    params.sq_entries = 8;
    params.cq_entries = 16;
    std::string probe_error;
    shared.wake_msg_ring = probe.init(params, probe_error) == 0 && probe.supports(IORING_OP_MSG_RING);
    if (!shared.wake_msg_ring && config.cross_worker_wake == rg::server::WakeMode::msg_ring) {
      error = "cross_worker_wake = msg_ring, but this kernel has no IORING_OP_MSG_RING (5.18+)";
      return false;
    }
  }
  for (std::uint32_t i = 0; i < workers; ++i) {
    auto box = std::make_unique<rg::server::Mailbox>();
    box->init(config.mailbox_size);
    if (!shared.wake_msg_ring) {
      box->event_fd = eventfd(0, EFD_CLOEXEC);
      if (box->event_fd < 0) {
        error = absl::StrFormat("eventfd for worker %u's mailbox: %s", i, std::strerror(errno));
        return false;
      }
    }
    shared.mailboxes.push_back(std::move(box));
  }
  RG_LOG(info, "pub/sub: %s; auth %s; mailboxes of %u per worker; workers woken by %s; publish API %s",
         config.pubsub_path, rg::server::word(config.auth), config.mailbox_size,
         shared.wake_msg_ring ? "IORING_OP_MSG_RING" : "eventfd", shared.api_token.empty() ? "without a token" : "with a bearer token");
  return true;
}

// After the workers and the admin thread are gone: publications left in
// mailboxes are freed, eventfds closed.
void teardown_pubsub(Shared& shared) {
  for (auto& box : shared.mailboxes) {
    while (rg::server::Publication* p = box->pop()) p->unref();
    if (box->event_fd >= 0) close(box->event_fd);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // `ringgate tune ...` plans, checks and applies kernel settings; it starts no server.
  if (argc >= 2 && std::string_view(argv[1]) == "tune") return rg::server::tune::run(argc - 1, argv + 1, std::cout, std::cerr);
  auto shared = std::make_unique<Shared>();
  Config& config = shared->config;
  std::string error;
  bool exit_now = false;
  if (!load_config(argc, argv, config, error, exit_now)) {
    std::fprintf(stderr, "ringgate: %s\n", error.c_str());
    return 2;
  }
  if (exit_now) return 0;
  if (!validate(config, error)) {
    std::fprintf(stderr, "ringgate: invalid configuration: %s\n", error.c_str());
    return 2;
  }
  rg::base::log::Level level = rg::base::log::Level::info;
  (void)rg::base::log::parse_level(config.log_level, level);
  rg::base::log::set_level(level);
  if (!load_secrets(config, *shared, error)) {
    std::fprintf(stderr, "ringgate: invalid configuration: %s\n", error.c_str());
    return 2;
  }

  // Direct descriptors do not count against RLIMIT_NOFILE, but each ring's
  // table may hold at most RLIMIT_NOFILE slots: raise the soft limit to the
  // hard one so every table can be that large.
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  if (nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
      RG_LOG(warn, "could not raise RLIMIT_NOFILE soft limit to %u: %s", nofile.rlim_max, std::strerror(errno));
    getrlimit(RLIMIT_NOFILE, &nofile);
  }
  const std::uint64_t nofile_limit = nofile.rlim_cur;
  if (config.table_slots_per_worker > nofile_limit)
    RG_LOG(warn, "table_slots_per_worker %u exceeds RLIMIT_NOFILE %u; using %u", config.table_slots_per_worker,
           nofile_limit, nofile_limit);
  // The capacity model sizes the tables (`ringgate tune plan` uses the same
  // functions): at most RLIMIT_NOFILE and IORING_MAX_FIXED_FILES slots, the
  // top of each kept for explicit refusals; capacity is planned on the rest.
  const capacity::TableSizing tables =
      capacity::size_tables(nofile_limit, config.table_slots_per_worker, config.reserved_slots);
  shared->table_slots_per_worker = static_cast<std::uint32_t>(tables.slots);
  const std::uint64_t reserved = tables.reserved;
  shared->reserved_slots_per_worker = static_cast<std::uint32_t>(reserved);
  const std::uint64_t full_slots = tables.slots;
  const std::uint64_t slots = tables.usable;

  // Workers: one per CPU by default, but density needs one table per
  // `slots` connections, so a large max_connections raises the count.
  const auto cpus = static_cast<std::uint32_t>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  // SO_REUSEPORT spreads connections unevenly: each table is planned 95%
  // full (capacity::table_fill_percent says why).
  const std::uint64_t planned_per_worker = tables.planned_per_worker;
  std::uint32_t workers = config.workers ? config.workers : cpus;
  if (config.workers == 0 && config.max_connections > std::uint64_t{workers} * planned_per_worker) {
    workers = capacity::workers_for(config.max_connections, planned_per_worker, cpus);
    RG_LOG(info, "max_connections %u needs %u workers of %u table slots each, planned 95%% full "
                 "(more workers than the %u CPUs)", config.max_connections, workers, slots, cpus);
  } else if (config.workers != 0 && config.max_connections > std::uint64_t{workers} * planned_per_worker &&
             config.max_connections <= std::uint64_t{workers} * slots) {
    RG_LOG(warn, "max_connections %u leaves less than 5%% headroom in %u tables of %u slots: SO_REUSEPORT "
                 "spreads unevenly, so some workers may fill first (use --workers %u)", config.max_connections,
           workers, slots, (config.max_connections + planned_per_worker - 1) / planned_per_worker);
  }
  const std::uint64_t table_capacity = std::uint64_t{workers} * slots;
  std::string bound;
  if (config.max_connections != 0 && config.max_connections <= table_capacity) {
    shared->max_connections = config.max_connections;
    bound = "max_connections";
  } else {
    if (config.max_connections > table_capacity)
      RG_LOG(warn, "max_connections %u exceeds what %u workers x %u table slots hold; capacity is %u (raise --workers)",
             config.max_connections, workers, slots, table_capacity);
    shared->max_connections = table_capacity;
    bound = absl::StrFormat("direct-descriptor tables: %u workers x %u slots (+%u reserved for refusals of %u), "
                            "RLIMIT_NOFILE %u", workers, slots, reserved, full_slots, nofile_limit);
  }

  // Preflight: the kernel against this configuration, one warning per
  // finding with the command that fixes it.
  {
    rg::server::preflight::ServerFacts facts;
    facts.backlog = config.backlog;
    facts.listen_port = config.listen_port;
    std::string admin_host;
    if (config.admin_listen != "off") (void)parse_host_port(config.admin_listen, admin_host, facts.admin_port);
    facts.capacity = shared->max_connections;
    facts.workers = workers;
    facts.cpus = cpus;
    facts.nofile_soft = nofile.rlim_cur;
    facts.nofile_hard = nofile.rlim_max;
    facts.reserved_slots = config.reserved_slots;
    const auto findings = rg::server::preflight::check(rg::server::preflight::read_kernel_facts(), facts);
    if (rg::base::log::enabled(rg::base::log::Level::warn))
      for (const auto& f : findings) rg::base::log::write_from(rg::base::log::Level::warn, "preflight", f.what + "; fix: " + f.fix);
    if (config.strict_preflight && !findings.empty()) {
      RG_LOG(error, "--strict-preflight: refusing to start with %u preflight finding(s) above", findings.size());
      return 1;
    }
  }

  const std::string kernel_peak = sample_kernel_budgets(shared->kernel, config.kernel_refuse_percent);
  RG_LOG(info, "kernel budgets: files %u of %u, TCP memory %u of %u pages, process fds %u of %u; closest: %s",
         shared->kernel.figures[0].used.load(), shared->kernel.figures[0].limit.load(),
         shared->kernel.figures[1].used.load(), shared->kernel.figures[1].limit.load(),
         shared->kernel.figures[2].used.load(), shared->kernel.figures[2].limit.load(), kernel_peak);

  // TLS: the certificate and key are loaded (and checked against each
  // other) before anything listens.
  rg::server::TlsContexts tls_contexts;
  std::shared_ptr<const rg::server::TlsContext> tls;
  std::string tls_host;
  std::uint16_t tls_port = 0;
  if (config.tls_enabled()) {
    (void)parse_host_port(config.tls_listen, tls_host, tls_port);
    tls = rg::server::TlsContext::load(config, error);
    if (!tls) {
      std::fprintf(stderr, "ringgate: invalid configuration: %s\n", error.c_str());
      return 2;
    }
    tls_contexts.publish(tls);
    shared->tls = &tls_contexts;
    shared->tls_not_after_s.store(tls->not_after_s());
  }

  // SO_REUSEPORT lets another process of this user join our ports without
  // a word, and take part of the new connections: refuse to start beside
  // one unless told to (listen_shared).
  if (!config.listen_shared) {
    const struct {
      const std::string& host;
      std::uint16_t port;
      const char* option;
    } ours[] = {{config.listen_host, config.listen_port, "listen"}, {tls_host, tls_port, "tls_listen"}};
    for (const auto& l : ours) {
      if (l.port == 0 || !rg::ring::port_answers(l.host, l.port, 200)) continue;
      RG_LOG(error,
             "%s %s:%u: another process already accepts connections there, and with SO_REUSEPORT it would "
             "silently take part of ours; stop it first (ss -ltnp 'sport = :%u' names it), or set listen_shared "
             "to overlap two processes on purpose",
             l.option, l.host, l.port, l.port);
      return 1;
    }
  }

  // Listeners are made here, before any worker starts, so that a bad address
  // fails start-up and port 0 resolves once for all workers.
  std::vector<Listeners> listeners(workers);
  std::uint16_t port = config.listen_port;
  for (std::uint32_t i = 0; i < workers; ++i) {
    const int fd = rg::ring::listen_reuseport(config.listen_host, port, static_cast<int>(config.backlog), error);
    if (fd < 0) {
      RG_LOG(error, "cannot listen: %s", error);
      return 1;
    }
    if (i == 0) port = rg::ring::bound_port(fd);
    listeners[i].plain = fd;
    if (config.tls_enabled()) {
      const int tls_fd = rg::ring::listen_reuseport(tls_host, tls_port, static_cast<int>(config.backlog), error);
      if (tls_fd < 0) {
        RG_LOG(error, "cannot listen on tls_listen: %s", error);
        return 1;
      }
      if (i == 0) tls_port = rg::ring::bound_port(tls_fd);
      listeners[i].tls = tls_fd;
    }
  }

  // Signals go to this thread only, via sigwait; workers never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // reload the TLS certificates and ticket keys
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  for (std::uint32_t i = 0; i < workers; ++i) shared->counters.push_back(std::make_unique<WorkerCounters>());
  if (!setup_pubsub(config, workers, *shared, error)) {
    RG_LOG(error, "%s", error);
    return 1;
  }
  if (config.per_ip_limit > 0) shared->per_ip.init(workers);
  // The backplane's interest feed exists before the workers, which report
  // into it from their first subscriber on.
  std::unique_ptr<rg::server::Interest> interest;
  std::unique_ptr<rg::server::Backplane> backplane;
  if (config.backplane_enabled()) {
    interest = std::make_unique<rg::server::Interest>();
    if (interest->event_fd() < 0) {
      RG_LOG(error, "backplane: cannot make an eventfd: %s", std::strerror(errno));
      return 1;
    }
    shared->interest = interest.get();
  }
  for (const std::string& text : config.proxy_protocol_from) {
    rg::server::AddressRange r;
    (void)rg::server::AddressRange::parse(text, r, error);  // validate() checked each
    shared->proxy_from.push_back(r);
  }
  if (!shared->proxy_from.empty())
    RG_LOG(info, "proxy protocol: connections from %s start with a PROXY v2 header, whose client address per-IP "
                 "limits count; a PROXY header from any other address is refused",
           absl::StrJoin(config.proxy_protocol_from, ", "));
  shared->max_buffered_bytes = config.max_buffered_bytes;
  {
    const std::uint64_t low = read_proc_u64("/proc/sys/net/ipv4/ip_local_port_range", 0);
    const std::uint64_t high = read_proc_u64("/proc/sys/net/ipv4/ip_local_port_range", 1);
    shared->ephemeral_ports_limit = high >= low && low > 0 ? high - low + 1 : 0;
  }
  if (shared->max_buffered_bytes == 0) {
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long page = sysconf(_SC_PAGESIZE);
    shared->max_buffered_bytes = pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * page / 4 : 1ull << 30;
  }
  RG_LOG(info, "buffering: %u bytes per connection before backpressure (off at %.2f), %u bytes across all "
               "connections (max_buffered_bytes), slow consumers: %s", config.frame_buffer_size,
         config.buffer_drain_threshold, shared->max_buffered_bytes, rg::server::word(config.slow_consumer_policy));
  if (config.per_ip_limit > 0 || config.accept_rate > 0)
    RG_LOG(info, "admission: per_ip_limit %u (429 beyond; 0 = off), accept_rate %u/s burst %u (0 = off), accept "
                 "queue %u per worker, accept_queue_timeout %u ms",
           config.per_ip_limit, config.accept_rate, config.accept_burst ? config.accept_burst : config.accept_rate,
           config.accept_queue_max, config.accept_queue_timeout_ms);
  std::vector<std::thread> threads;
  std::vector<std::atomic<int>> ready(workers);
  std::vector<std::string> errors(workers);
  std::atomic<std::uint32_t> finished{0};
  for (std::uint32_t i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] {
      run_worker(*shared, i, listeners[i], ready[i], errors[i]);
      finished.fetch_add(1);
    });
  }
  for (std::uint32_t i = 0; i < workers; ++i) {
    ready[i].wait(0);
    if (ready[i].load() < 0) {
      RG_LOG(error, "worker %u failed to start: %s", i, errors[i]);
      shared->stopping.store(true);
      for (auto& t : threads) t.join();
      return 1;
    }
  }
  if (config.backplane_enabled()) {
    rg::proto::backplane::Address address;
    (void)rg::proto::backplane::parse_url(config.backplane, address, error);  // validate() checked it
    RG_LOG(info, "backplane: publishes travel through Redis at %s (sharded pub/sub); this node subscribes to the "
                 "channels and users its clients hold",
           rg::proto::backplane::describe(address));
    // This node in the registry: its id, and its start time so that a
    // restarted node never revives what a previous life left behind.
    std::string node_id = config.node_id;
    if (node_id.empty()) {
      char hostname[256] = {};
      (void)gethostname(hostname, sizeof hostname - 1);
      for (char* p = hostname; *p; ++p)
        if (!rg::proto::pubsub::name_char(*p)) *p = '-';
      node_id = std::string(hostname).substr(0, 57) + ":" + std::to_string(port);
    }
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    const std::string instance = rg::proto::backplane::instance(
        node_id, static_cast<std::uint64_t>(now.tv_sec) * 1000 + static_cast<std::uint64_t>(now.tv_nsec) / 1'000'000);
    // A node that dies without a word is forgotten within pong_timeout, as
    // its clients would be (at least 3 s: the key is renewed every third).
    const std::uint64_t node_ttl_ms = std::max<std::uint64_t>(config.pong_timeout_ms, 3'000);
    RG_LOG(info, "backplane: this node is %s in the fleet's registry (entries outlive a silent death by %u ms)",
           instance, node_ttl_ms);
    backplane = std::make_unique<rg::server::Backplane>(*shared, address, instance, node_ttl_ms);
    backplane->start();
  }
  // The admin listener starts once the workers are up, so /healthz never
  // reports a loop that has not started yet.
  Admin admin(*shared);
  std::string admin_where = "off";
  if (config.admin_listen != "off") {
    std::string admin_host;
    std::uint16_t admin_port = 0;
    (void)parse_host_port(config.admin_listen, admin_host, admin_port);
    if (!admin.start(admin_host, admin_port, error)) {
      RG_LOG(error, "cannot start the admin listener: %s", error);
      shared->stopping.store(true);
      for (auto& t : threads) t.join();
      return 1;
    }
    admin_where = (admin_host.find(':') != std::string::npos ? "[" + admin_host + "]" : admin_host) + ":" +
                  std::to_string(admin.port());
  }
  const std::string host = config.listen_host.find(':') != std::string::npos ? "[" + config.listen_host + "]"
                                                                              : config.listen_host;
  std::string tls_where = "off";
  if (config.tls_enabled()) {
    tls_where = (tls_host.find(':') != std::string::npos ? "[" + tls_host + "]" : tls_host) + ":" +
                std::to_string(tls_port);
    const std::int64_t days_left = (tls->not_after_s() - static_cast<std::int64_t>(time(nullptr))) / 86400;
    // Kernel TLS: probed, said, not yet used (the keys would go to the
    // kernel through io_uring's setsockopt once the probe says yes).
    const rg::ring::KtlsProbe ktls = rg::ring::probe_ktls();
    const std::string offload = ktls.available() ? std::string("off (the kernel has the tls ULP; offload is not built yet)")
                                                 : "off (" + ktls.reason + ")";
    RG_LOG(info, "tls: %s serves wss:// with %s (%s, %d days left), TLS %s..1.3, %u handshakes in flight per "
                 "worker, %u record buffers of %u KiB per worker, kernel TLS offload %s",
           tls_where, describe_certificates(*tls), tls->certificates().front().key_description, days_left,
           rg::server::word(config.tls_min_version), config.tls_handshakes_max, config.tls_record_buffers,
           rg::server::TlsStream::record_buffer_bytes / 1024, offload);
    tls.reset();  // the holder (and the connections made from it) keep it; a reload may free it
  }
  // The start-up line is written whatever log_level says: operators and
  // scripts rely on it for the address (port 0), workers and capacity.
  rg::base::log::write(rg::base::log::Level::info,
             absl::StrFormat("listening on %s:%u tls=%s echo=%s pubsub=%s admin=%s workers=%u capacity=%u connections "
                             "(bounded by %s)",
                             host, port, tls_where, config.echo_path, config.pubsub_path, admin_where, workers,
                             shared->max_connections, bound));

  // First signal: drain (after drain_grace, if set, with /readyz already
  // 503 so that a balancer stops sending newcomers; a signal during the
  // grace ends it).  A signal during the drain: leave at once.
  bool draining = false;
  std::uint64_t grace_ends_ms = 0;
  const timespec poll{0, 100 * 1000 * 1000};
  rg::base::log::RateLimited warn_log(1, 10'000);
  std::uint32_t polls = 0;
  while (finished.load() < workers) {
    siginfo_t info{};
    const int sig = sigtimedwait(&signals, &info, &poll);
    if (sig < 0 && grace_ends_ms != 0 && rg::base::monotonic_ms() >= grace_ends_ms) {
      grace_ends_ms = 0;
      RG_LOG(info, "drain_grace over: closing %u connections with 1001 (drain_timeout %ums)",
             shared->open_connections(), config.drain_timeout_ms);
      shared->stopping.store(true);
    }
    if (sig < 0) {
      // Kernel budgets: sampled once a second, never per accept.
      if (++polls % 10 != 0) continue;
      const std::string peak = sample_kernel_budgets(shared->kernel, config.kernel_refuse_percent);
      const std::uint64_t open = shared->open_connections();
      const bool warn_kernel = shared->kernel.peak_permille.load() >= config.warn_percent * 10;
      const bool warn_conns = open * 100 >= shared->max_connections * config.warn_percent;
      std::uint64_t dropped = 0;
      if ((warn_kernel || warn_conns) && warn_log.allow(polls * 100ull, dropped))
        RG_LOG(warn, "utilisation over warn_percent %u%%: %u of %u connections; kernel: %s%s", config.warn_percent,
               open, shared->max_connections, peak,
               shared->kernel.refuse.load() ? " (refusing new handshakes: kernel_refuse_percent reached)" : "");
      continue;
    }
    if (sig == SIGHUP) {
      reload_tls(config, *shared, tls_contexts);
      continue;
    }
    if (!draining && config.drain_grace_ms > 0) {
      draining = true;
      grace_ends_ms = rg::base::monotonic_ms() + config.drain_grace_ms;
      shared->leaving.store(true);
      RG_LOG(info, "%s: /readyz answers 503 now; still serving %u connections for drain_grace %ums, then closing "
                   "them with 1001; send again to drain now",
             strsignal(sig), shared->open_connections(), config.drain_grace_ms);
    } else if (grace_ends_ms != 0) {
      // Impatience during the grace skips the rest of it, not the drain:
      // the clients still get their 1001.
      grace_ends_ms = 0;
      RG_LOG(info, "%s during drain_grace: closing %u connections with 1001 now (drain_timeout %ums); send again "
                   "to exit now",
             strsignal(sig), shared->open_connections(), config.drain_timeout_ms);
      shared->stopping.store(true);
    } else if (!draining) {
      draining = true;
      RG_LOG(info, "%s: closing %u connections with 1001 (drain_timeout %ums); send again to exit now",
             strsignal(sig), shared->open_connections(), config.drain_timeout_ms);
      shared->stopping.store(true);
    } else {
      RG_LOG(warn, "%s again: exiting without finishing the drain", strsignal(sig));
      _exit(1);
    }
  }
  for (auto& t : threads) t.join();
  // Before the mailboxes are emptied: nothing posts into them after this.
  if (backplane) backplane->stop();
  admin.stop();
  teardown_pubsub(*shared);
  std::uint64_t upgraded = 0;
  for (const auto& c : shared->counters) upgraded += c->upgraded_total.load();
  RG_LOG(info, "stopped cleanly after %u upgraded connections", upgraded);
  return 0;
}
