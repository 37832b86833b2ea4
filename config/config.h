// Configuration: one struct, filled from embedded defaults, then a TOML file
// (--config), then flags.  Every key is also a flag with the same name in
// kebab case (frame_buffer_size <-> --frame-buffer-size); flags win.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rg::server {

// Configuration words, parsed once at load (config.cpp holds their
// spellings): nothing on the data path compares strings.
enum class Reject : std::uint8_t { http, close };               // a capacity refusal: 503, or 101 then close 1013
enum class SlowConsumerPolicy : std::uint8_t { close, drop };   // new messages for a backpressured connection
enum class Auth : std::uint8_t { off, jwt };                    // who may use pubsub_path
enum class WakeMode : std::uint8_t { automatic, msg_ring, eventfd };  // how publishers wake workers
enum class TlsVersion : std::uint8_t { v1_2, v1_3 };                 // the oldest TLS a client may speak

struct Config {
  // Network
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8080;
  std::uint32_t backlog = 4096;
  bool listen_shared = false;  // start even when another process accepts on our ports (SO_REUSEPORT would share them)
  std::vector<std::string> proxy_protocol_from;  // balancer CIDRs whose PROXY v2 header is believed
  std::string admin_listen = "127.0.0.1:9090";  // "off" disables the admin listener
  std::uint32_t admin_per_ip_limit = 32;            // admin connections per client address (429 beyond); 0 = none
  std::uint64_t admin_request_timeout_ms = 10'000;  // an admin request, from accept or its first byte to its end
  // TLS (wss://): a second listener served by the same workers (docs/configuration.md, "TLS").
  std::string tls_listen = "off";        // HOST:PORT, or off
  std::string tls_cert_file;             // PEM certificate chain, leaf first
  std::string tls_key_file;              // PEM private key of the leaf
  std::vector<std::string> tls_sni_certs;  // more certificates, "CERT_FILE:KEY_FILE", chosen by SNI
  std::string tls_ticket_key_file;       // session-ticket keys shared by a fleet; empty: per process
  TlsVersion tls_min_version = TlsVersion::v1_2;
  std::uint32_t tls_handshakes_max = 1024;   // per worker: TLS handshakes in flight (beyond: an alert, then close)
  std::uint32_t tls_record_buffers = 256;    // per worker: 32 KiB ciphertext buffers for records in flight
  std::uint32_t not_ready_percent = 80;         // /readyz answers 503 from this utilisation on
  std::uint32_t warn_percent = 70;              // a rate-limited warning from this utilisation on
  std::uint32_t kernel_refuse_percent = 95;     // new handshakes get 503 from this kernel-budget use on

  // Workers and capacity
  std::uint32_t workers = 0;              // 0: online CPUs, raised to fit max_connections
  std::uint64_t max_connections = 0;      // 0: whatever the descriptor tables hold
  std::uint32_t table_slots_per_worker = 0;  // 0: RLIMIT_NOFILE (the kernel's per-ring cap)
  std::uint32_t reserved_slots = 64;          // per worker, for explicit refusals when the rest is full
  std::uint32_t max_pending_handshakes = 4096;  // per worker
  std::uint32_t max_active_sessions = 16384;    // per worker: connections mid-message
  std::uint32_t retry_after_s = 60;
  Reject reject = Reject::http;  // how capacity refusals look: 503, or 101 then close 1013
  std::uint32_t per_ip_limit = 0;     // connections per client IP, all workers; 0 = no limit (429 beyond)
  std::uint32_t accept_rate = 0;      // new connections per second, all workers; 0 = unlimited
  std::uint32_t accept_burst = 0;     // token bucket depth; 0 = one second's worth of accept_rate
  std::uint32_t accept_queue_max = 1024;          // per worker: connections waiting for a token
  std::uint64_t accept_queue_timeout_ms = 2'000;  // longest wait for a token; then 503

  // Receive path
  std::uint32_t recv_buffer_size = 16 * 1024;
  std::uint32_t recv_buffer_count = 512;  // per worker, power of two
  std::uint32_t send_chunk_size = 256 * 1024;  // most outbound bytes handed to one send
  std::uint32_t segment_size = 4 * 1024;       // pooled block echo output and reassembly live in

  // HTTP upgrade
  std::string echo_path = "/echo";  // "off" disables the endpoint
  Auth echo_auth = Auth::off;       // jwt: a token is required on echo_path too (needs auth = jwt)
  std::vector<std::string> subprotocols;
  std::uint32_t max_request_line = 8 * 1024;
  std::uint32_t max_header_bytes = 32 * 1024;
  std::uint32_t max_headers = 100;
  std::uint64_t handshake_timeout_ms = 10'000;

  // WebSocket
  std::uint64_t max_message_size = 1024 * 1024;
  std::uint64_t max_frame_size = 1024 * 1024;  // one data frame's payload (1009 beyond)
  std::uint64_t close_timeout_ms = 5'000;
  // Backpressure: per connection, on above frame_buffer_size buffered bytes,
  // off at buffer_drain_threshold of it (or after backpressure_timeout, when
  // a connection still over the limit is closed).
  std::uint32_t frame_buffer_size = 100 * 1024;
  double buffer_drain_threshold = 0.5;
  std::uint64_t backpressure_timeout_ms = 5'000;
  SlowConsumerPolicy slow_consumer_policy = SlowConsumerPolicy::close;  // new messages while backpressured
  std::uint32_t slow_consumer_close_code = 1008;  // 1008 (policy) or 1013 (try again later)
  std::uint64_t max_buffered_bytes = 0;  // all connections; 0 = a quarter of MemTotal, split over workers
  std::uint64_t stall_timeout_ms = 30'000;         // mid-message or blocked send without progress
  std::uint32_t min_message_rate = 1024;           // bytes/s mid-message, over stall_timeout windows (1008 below)
  std::uint64_t ping_interval_ms = 30'000;  // ping a connection that has sent nothing for this long; 0 = off
  std::uint64_t pong_timeout_ms = 90'000;   // after a ping, close if nothing arrives within this
  std::uint64_t idle_timeout_ms = 0;        // close a connection that sent nothing for this long; 0 = off

  // Pub/sub (docs/protocol.md)
  std::string pubsub_path = "/ws";  // "off" disables the endpoint
  Auth auth = Auth::off;            // who may connect to pubsub_path and subscribe to what
  std::string jwt_secret_file;      // HS256 key for auth = jwt (the file's bytes, one trailing newline dropped)
  std::string api_token_file;       // bearer token the publish API requires; empty: none (bind it to localhost)
  std::uint64_t max_publish_size = 64 * 1024;  // a published body (413 beyond)
  std::vector<std::string> raw_channels;       // channel patterns delivered without the JSON envelope
  std::uint32_t max_subscriptions = 64;        // per connection (too_many_channels beyond)
  std::uint32_t mailbox_size = 1024;           // per worker: publications waiting for fan-out (503 beyond)
  std::uint32_t fanout_batch = 16384;          // per worker loop turn: deliveries queued before I/O runs again
  WakeMode cross_worker_wake = WakeMode::automatic;  // how publishers wake workers

  // Fleet (docs/fleet.md)
  std::string backplane = "off";  // redis://HOST:PORT or redis-cluster://SEEDS: publishes reach every node's subscribers through Redis
  std::string node_id;             // this node in the fleet's registry; empty: HOSTNAME:PORT

  // Process
  std::uint64_t drain_grace_ms = 0;  // after a stop signal: /readyz 503 while still serving, before the drain
  std::uint64_t drain_timeout_ms = 10'000;
  std::string log_level = "info";
  bool strict_preflight = false;  // refuse to start when the kernel preflight finds anything
  std::string config_file;

  [[nodiscard]] bool pubsub_enabled() const noexcept { return pubsub_path != "off"; }
  [[nodiscard]] bool echo_enabled() const noexcept { return echo_path != "off"; }
  [[nodiscard]] bool auth_jwt() const noexcept { return auth == Auth::jwt; }
  [[nodiscard]] bool tls_enabled() const noexcept { return tls_listen != "off"; }
  [[nodiscard]] bool backplane_enabled() const noexcept { return backplane != "off"; }

  // The per-connection backpressure thresholds in bytes.
  [[nodiscard]] std::uint64_t backpressure_on_bytes() const noexcept { return frame_buffer_size; }
  [[nodiscard]] std::uint64_t backpressure_off_bytes() const noexcept {
    return static_cast<std::uint64_t>(frame_buffer_size * buffer_drain_threshold);
  }
};

// Parses argv (and the --config file it names) over the defaults.  Returns
// false with `error` set on bad input; sets `exit_now` for --help/--version
// after printing to stdout.
bool load_config(int argc, char** argv, Config& config, std::string& error, bool& exit_now);

// Applies a TOML document (used by load_config; exposed for tests).
bool apply_toml(const std::string& text, const std::string& origin, Config& config, std::string& error);

// Applies one "--flag value" pair by key name (kebab or snake case).
bool apply_option(const std::string& key, const std::string& value, Config& config, std::string& error);

// Unit parsing, exposed for tests.  Sizes: 4096, 64KiB, 1MiB, 2GiB, 100KB,
// 1MB (KB/MB/GB are decimal).  Durations: 500ms, 2s, 1m, 1h, 250us; a bare
// number is seconds.
bool parse_size(const std::string& text, std::uint64_t& bytes);
bool parse_duration_ms(const std::string& text, std::uint64_t& ms);

std::string help_text();

// A configuration word as written in the file and on the command line.
[[nodiscard]] const char* word(Reject v) noexcept;
[[nodiscard]] const char* word(SlowConsumerPolicy v) noexcept;
[[nodiscard]] const char* word(Auth v) noexcept;
[[nodiscard]] const char* word(WakeMode v) noexcept;
[[nodiscard]] const char* word(TlsVersion v) noexcept;

}  // namespace rg::server
