// Loading the configuration (config/config.h): the option table, units, TOML, flags and --help.
#include "config/config.h"

// toml++ is used header-only with exceptions off: configuration errors come
// back as values, the same way every other error in ringgate does.
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
// toml++ 3.3.0 asserts preconditions that malformed documents break (found
// by tests/fuzz/fuzz_config: "[ !", "[[[a]]]", "x = 1979-05-27T:"), which
// aborts the process in builds with asserts.  Without the assertion it
// reports a parse error, as NDEBUG builds always did: a bad --config file is
// an operator's error to be told about, never a crash.
#define TOML_ASSERT(expr) static_cast<void>(0)
#include <toml++/toml.h>

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

namespace rg::server {

namespace {

enum class Kind { text, u32, u64, size32, size64, duration, list, address, fraction, flag, choice };

// The spellings of each configuration word, in enum order.
constexpr std::array<const char*, 2> reject_words = {"http", "close"};
constexpr std::array<const char*, 2> slow_consumer_words = {"close", "drop"};
constexpr std::array<const char*, 2> auth_words = {"off", "jwt"};
constexpr std::array<const char*, 3> wake_words = {"auto", "msg_ring", "eventfd"};
constexpr std::array<const char*, 2> tls_version_words = {"1.2", "1.3"};

struct Option {
  const char* name;  // snake_case; the flag is the kebab-case form
  Kind kind;
  const char* value_hint;  // for Kind::choice, the words joined by '|', in enum order
  const char* help;
  std::function<void(Config&, std::uint64_t, const std::string&)> set;
  std::function<std::string(const Config&)> show;
};

std::string kebab(std::string s) {
  std::replace(s.begin(), s.end(), '_', '-');
  return s;
}
std::string snake(std::string s) {
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

std::string show_size(std::uint64_t b) {
  if (b != 0 && b % (1024 * 1024) == 0) return std::to_string(b / (1024 * 1024)) + "MiB";
  if (b != 0 && b % 1024 == 0) return std::to_string(b / 1024) + "KiB";
  return std::to_string(b);
}
std::string show_ms(std::uint64_t ms) {
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}
// "a, b,,c" -> {"a", "b", "c"}: items trimmed, empty ones skipped.
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

#define RG_U32(field) [](Config& c, std::uint64_t v, const std::string&) { c.field = static_cast<std::uint32_t>(v); }, \
                      [](const Config& c) { return std::to_string(c.field); }
#define RG_U64(field) [](Config& c, std::uint64_t v, const std::string&) { c.field = v; }, \
                      [](const Config& c) { return std::to_string(c.field); }
#define RG_SIZE32(field) [](Config& c, std::uint64_t v, const std::string&) { c.field = static_cast<std::uint32_t>(v); }, \
                         [](const Config& c) { return show_size(c.field); }
#define RG_SIZE64(field) [](Config& c, std::uint64_t v, const std::string&) { c.field = v; }, \
                         [](const Config& c) { return show_size(c.field); }
#define RG_MS(field) [](Config& c, std::uint64_t v, const std::string&) { c.field = v; }, \
                     [](const Config& c) { return show_ms(c.field); }
// A word from value_hint's list; `v` is its index, which is the enum's value.
#define RG_CHOICE(field, Enum, words)                                                                           \
  [](Config& c, std::uint64_t v, const std::string&) { c.field = static_cast<Enum>(v); },                     \
      [](const Config& c) { return std::string((words)[static_cast<std::size_t>(c.field)]); }
#define RG_TEXT(field) [](Config& c, std::uint64_t, const std::string& s) { c.field = s; }, \
                       [](const Config& c) { return c.field; }

const std::vector<Option>& options() {
  static const std::vector<Option> all = {
      {"listen", Kind::address, "HOST:PORT",
       "Address to accept WebSocket connections on. Port 0 picks a free port (logged at start-up).",
       [](Config& c, std::uint64_t v, const std::string& s) {
         c.listen_host = s;
         c.listen_port = static_cast<std::uint16_t>(v);
       },
       [](const Config& c) { return c.listen_host + ":" + std::to_string(c.listen_port); }},
      {"backlog", Kind::u32, "N", "listen(2) backlog per worker socket (the kernel caps it at net.core.somaxconn).",
       RG_U32(backlog)},
      {"listen_shared", Kind::flag, "",
       "Start even when another process already accepts on listen or tls_listen. Workers bind with "
       "SO_REUSEPORT, so the two would silently split new connections: without this flag start-up refuses. "
       "For overlapping an old and a new process on purpose.",
       [](Config& c, std::uint64_t v, const std::string&) { c.listen_shared = v != 0; },
       [](const Config& c) { return std::string(c.listen_shared ? "true" : "false"); }},
      {"proxy_protocol_from", Kind::list, "CIDR,...",
       "Balancers (L4, e.g. HAProxy with send-proxy-v2) whose connections start with a PROXY protocol v2 header: "
       "per-IP limits and logs then see the client's address from the header. A connection from any other "
       "address that starts with a PROXY header is refused 400. Empty: no PROXY headers are believed.",
       [](Config& c, std::uint64_t, const std::string& s) { c.proxy_protocol_from = split_list(s); },
       [](const Config& c) { return join(c.proxy_protocol_from); }},
      {"admin_listen", Kind::text, "HOST:PORT",
       "Admin HTTP listener: /healthz, /readyz, /metrics (Prometheus), /status (JSON). Port 0 picks one "
       "(logged at start-up); 'off' disables it.",
       RG_TEXT(admin_listen)},
      {"admin_per_ip_limit", Kind::u32, "N",
       "Admin connections one client address may hold at once (of 256); beyond it a newcomer is answered 429 "
       "with Retry-After and closed. 0 = no limit.",
       RG_U32(admin_per_ip_limit)},
      {"admin_request_timeout", Kind::duration, "DURATION",
       "Time an admin request has from its start (the accept, or its first byte on a kept-alive connection) to "
       "its last byte, however it trickles; a body gets its size at 256 KiB/s more. Then the connection is "
       "closed.",
       RG_MS(admin_request_timeout_ms)},
      {"tls_listen", Kind::text, "HOST:PORT",
       "Address to accept wss:// (TLS) connections on, served by the same workers and endpoints as listen. Port 0 "
       "picks a free port (logged at start-up); 'off' disables it. Needs tls_cert_file and tls_key_file.",
       RG_TEXT(tls_listen)},
      {"tls_cert_file", Kind::text, "PATH", "PEM certificate chain for tls_listen, leaf first.",
       RG_TEXT(tls_cert_file)},
      {"tls_key_file", Kind::text, "PATH", "PEM private key of tls_cert_file's leaf.", RG_TEXT(tls_key_file)},
      {"tls_sni_certs", Kind::list, "CERT:KEY,...",
       "More certificates for tls_listen, each CERT_FILE:KEY_FILE: a ClientHello's SNI picks the one whose "
       "subjectAltName covers it (exact names before wildcards), else tls_cert_file's.",
       [](Config& c, std::uint64_t, const std::string& s) { c.tls_sni_certs = split_list(s); },
       [](const Config& c) { return join(c.tls_sni_certs); }},
      {"tls_ticket_key_file", Kind::text, "PATH",
       "Session-ticket keys: 1 to 16 keys of 80 bytes, newest first (the first seals tickets, all open them), so "
       "that every node of a fleet resumes the others' sessions. Make one: head -c 80 /dev/urandom > FILE; rotate: "
       "put a new key first and send SIGHUP. Empty: keys of this process only, rotated by BoringSSL.",
       RG_TEXT(tls_ticket_key_file)},
      {"tls_min_version", Kind::choice, "1.2|1.3",
       "Oldest TLS version a client may speak (TLS 1.3 is always offered; TLS 1.2 with ECDHE AEAD suites only).",
       RG_CHOICE(tls_min_version, TlsVersion, tls_version_words)},
      {"tls_handshakes_max", Kind::u32, "N",
       "TLS handshakes in flight per worker; a newcomer beyond it gets a TLS internal_error alert and is closed "
       "before any handshake CPU is spent on it.",
       RG_U32(tls_handshakes_max)},
      {"tls_record_buffers", Kind::u32, "N",
       "Per worker: 32 KiB buffers that hold a connection's outgoing TLS records only while they are in flight "
       "(an idle TLS connection holds none). A send that finds none free waits for one.",
       RG_U32(tls_record_buffers)},
      {"warn_percent", Kind::u32, "PERCENT",
       "Utilisation of any budget (max_connections, or a kernel budget) from which a rate-limited warning is "
       "logged.",
       RG_U32(warn_percent)},
      {"kernel_refuse_percent", Kind::u32, "PERCENT",
       "Use of a kernel budget (open files against fs.file-max, TCP memory against net.ipv4.tcp_mem, the "
       "process's fds against RLIMIT_NOFILE; sampled each second) from which new handshakes get 503, before "
       "the kernel itself starts failing.",
       RG_U32(kernel_refuse_percent)},
      {"not_ready_percent", Kind::u32, "PERCENT",
       "Utilisation of max_connections from which /readyz answers 503, so load balancers steer new clients "
       "elsewhere before the server has to refuse them.",
       RG_U32(not_ready_percent)},
      {"workers", Kind::u32, "N",
       "Worker threads, each with its own io_uring and listener. 0 = online CPUs, raised to "
       "ceil(max_connections / table_slots_per_worker) when one table per CPU cannot hold max_connections.",
       RG_U32(workers)},
      {"max_connections", Kind::u64, "N",
       "Upgraded connections the process holds at most; beyond it new handshakes get 503 with Retry-After. "
       "0 = what the descriptor tables hold.",
       RG_U64(max_connections)},
      {"table_slots_per_worker", Kind::u32, "N",
       "Direct-descriptor table slots per worker ring. 0 = RLIMIT_NOFILE, the kernel's per-ring cap.",
       RG_U32(table_slots_per_worker)},
      {"reserved_slots", Kind::u32, "N",
       "Table slots per worker kept back for explicit refusals (at most a quarter of the table): when the "
       "rest is full, new connections are accepted into these only to be answered 503 and closed, never left "
       "to time out in the backlog.",
       RG_U32(reserved_slots)},
      {"max_pending_handshakes", Kind::u32, "N",
       "HTTP answers in flight per worker (512 B each, allocated at start-up), and the most requests that "
       "arrived in pieces (~2.6 KiB of parse state each); beyond it new connections get 503.",
       RG_U32(max_pending_handshakes)},
      {"max_active_sessions", Kind::u32, "N",
       "Connections per worker that may be mid-message at once (each holds a ~13 KiB wslay context); "
       "beyond it a connection is closed with 1013.",
       RG_U32(max_active_sessions)},
      {"retry_after", Kind::u32, "SECONDS", "Retry-After value sent with 503 answers.", RG_U32(retry_after_s)},
      {"reject", Kind::choice, "http|close",
       "How a handshake refused for capacity is answered: http = 503 with Retry-After and a JSON body; close = "
       "upgrade, then close 1013 (Try Again Later) with a reason, for clients that only understand close codes.",
       RG_CHOICE(reject, Reject, reject_words)},
      {"per_ip_limit", Kind::u32, "N",
       "Connections one client IP address may hold across all workers, handshakes in progress included; "
       "beyond it new connections get 429 with Retry-After. 0 = no limit. Counted in a per-worker count-min "
       "sketch (2 x 32768 counters, 256 KiB per worker, allocated only when set): it never under-counts, and "
       "over-counts only when an address collides with busier ones in both rows.",
       RG_U32(per_ip_limit)},
      {"accept_rate", Kind::u32, "PER_SECOND",
       "New connections per second the process starts handshakes for (a token bucket, split evenly across "
       "workers). Connections beyond it wait in a FIFO queue for a token. 0 = unlimited.",
       RG_U32(accept_rate)},
      {"accept_burst", Kind::u32, "N",
       "Token bucket depth: connections that may start at once after a quiet spell (split across workers, at "
       "least 1 each). 0 = one second's worth of accept_rate.",
       RG_U32(accept_burst)},
      {"accept_queue_max", Kind::u32, "N",
       "Connections per worker that may wait for an accept_rate token (each holds a table slot and no "
       "memory); beyond it new connections get 503 at once.",
       RG_U32(accept_queue_max)},
      {"accept_queue_timeout", Kind::duration, "DURATION",
       "Longest wait for an accept_rate token; a connection that waits longer gets 503 with Retry-After.",
       RG_MS(accept_queue_timeout_ms)},
      {"recv_buffer_size", Kind::size32, "SIZE", "Size of each provided receive buffer.", RG_SIZE32(recv_buffer_size)},
      {"recv_buffer_count", Kind::u32, "N", "Provided receive buffers per worker (power of two, <= 32768).",
       RG_U32(recv_buffer_count)},
      {"send_chunk_size", Kind::size32, "SIZE",
       "Outbound bytes a connection stages per send; larger messages are sent in several steps.",
       RG_SIZE32(send_chunk_size)},
      {"segment_size", Kind::size32, "SIZE",
       "Pooled block (1KiB..1MiB) that echo output and inbound messages are held in; a send gathers up to 16.",
       RG_SIZE32(segment_size)},
      {"echo_path", Kind::text, "PATH", "Path of the echo endpoint; '/' works too; off disables it.",
       RG_TEXT(echo_path)},
      {"echo_auth", Kind::choice, "off|jwt",
       "jwt: the echo endpoint requires a token like pubsub_path (?token= or Authorization: Bearer; needs "
       "auth = jwt).",
       RG_CHOICE(echo_auth, Auth, auth_words)},
      {"subprotocols", Kind::list, "LIST",
       "Comma-separated subprotocols the server accepts; the first one the client offers wins.",
       [](Config& c, std::uint64_t, const std::string& s) { c.subprotocols = split_list(s); },
       [](const Config& c) { return join(c.subprotocols); }},
      {"pubsub_path", Kind::text, "PATH",
       "Path of the pub/sub endpoint (docs/protocol.md): ?channels=a,b subscribes at connect, JSON commands "
       "subscribe later. 'off' disables it.",
       RG_TEXT(pubsub_path)},
      {"auth", Kind::choice, "off|jwt",
       "Who may use pubsub_path: off = anyone may subscribe to anything; jwt = an HS256 token (?token= or "
       "Authorization: Bearer) is required (401 without a valid one), its sub is the user and its channels "
       "claim lists the patterns the user may subscribe to.",
       RG_CHOICE(auth, Auth, auth_words)},
      {"jwt_secret_file", Kind::text, "PATH",
       "File holding the HS256 key for auth = jwt (32..256 bytes, RFC 7518 3.2; one trailing newline is dropped). "
       "Kept in a file so the key never shows in the process list. Make one: head -c 32 /dev/urandom | base64.",
       RG_TEXT(jwt_secret_file)},
      {"api_token_file", Kind::text, "PATH",
       "File holding the bearer token that POST /publish and /users/.../send on the admin listener require "
       "(32..4096 visible ASCII bytes). Empty: no token (keep admin_listen on localhost then: elsewhere it is a "
       "warning).",
       RG_TEXT(api_token_file)},
      {"max_publish_size", Kind::size64, "SIZE", "Largest published message body (413 beyond).",
       RG_SIZE64(max_publish_size)},
      {"raw_channels", Kind::list, "PATTERNS",
       "Comma-separated channel patterns (name, prefix.* or *) whose messages are delivered as the bare body, "
       "without the JSON envelope.",
       [](Config& c, std::uint64_t, const std::string& s) { c.raw_channels = split_list(s); },
       [](const Config& c) { return join(c.raw_channels); }},
      {"max_subscriptions", Kind::u32, "N",
       "Channels one connection may subscribe to (error too_many_channels beyond).", RG_U32(max_subscriptions)},
      {"mailbox_size", Kind::u32, "N",
       "Publications per worker waiting to be fanned out; a publish that finds a mailbox full gets 503.",
       RG_U32(mailbox_size)},
      {"fanout_batch", Kind::u32, "N",
       "Deliveries a worker queues per loop turn before it goes back to I/O, so a publish to a million "
       "subscribers cannot stall other connections.",
       RG_U32(fanout_batch)},
      {"cross_worker_wake", Kind::choice, "auto|msg_ring|eventfd",
       "How a publisher wakes workers: msg_ring = a completion posted on the worker's ring "
       "(IORING_OP_MSG_RING, Linux 5.18+); eventfd = a read the worker keeps armed on an eventfd; auto = "
       "msg_ring when the kernel has it.",
       RG_CHOICE(cross_worker_wake, WakeMode, wake_words)},
      {"max_request_line", Kind::size32, "SIZE", "Longest HTTP request line (414 beyond).",
       RG_SIZE32(max_request_line)},
      {"max_header_bytes", Kind::size32, "SIZE", "Largest total of request header lines (431 beyond).",
       RG_SIZE32(max_header_bytes)},
      {"max_headers", Kind::u32, "N", "Most request headers (431 beyond).", RG_U32(max_headers)},
      {"handshake_timeout", Kind::duration, "DURATION",
       "Time a client has to send a complete upgrade request (slowloris protection); then 408 and close.",
       RG_MS(handshake_timeout_ms)},
      {"max_message_size", Kind::size64, "SIZE", "Largest WebSocket message accepted (close 1009 beyond).",
       RG_SIZE64(max_message_size)},
      {"max_frame_size", Kind::size64, "SIZE", "Largest payload of one data frame accepted (close 1009 beyond).",
       RG_SIZE64(max_frame_size)},
      {"close_timeout", Kind::duration, "DURATION",
       "Time the peer has to answer our close frame (or to finish reading an error response) before the TCP "
       "connection is closed.",
       RG_MS(close_timeout_ms)},
      {"frame_buffer_size", Kind::size32, "SIZE",
       "Backpressure threshold: when a connection has more than this buffered for sending, the server stops "
       "reading from it, and new outbound messages follow slow_consumer_policy until it drains.",
       RG_SIZE32(frame_buffer_size)},
      {"buffer_drain_threshold", Kind::fraction, "FRACTION",
       "Backpressure ends once the connection's buffer drains to this fraction of frame_buffer_size.",
       [](Config& c, std::uint64_t, const std::string& s) { c.buffer_drain_threshold = std::strtod(s.c_str(), nullptr); },
       [](const Config& c) {
         std::ostringstream os;
         os << c.buffer_drain_threshold;
         return os.str();
       }},
      {"backpressure_timeout", Kind::duration, "DURATION",
       "Longest a connection may stay backpressured. Then, if it is still over frame_buffer_size, it is closed "
       "with slow_consumer_close_code and \"slow consumer\"; otherwise reading resumes.",
       RG_MS(backpressure_timeout_ms)},
      {"slow_consumer_policy", Kind::choice, "close|drop",
       "What happens to a new outbound message for a backpressured connection (or one that would exceed "
       "max_buffered_bytes): close = close the connection with slow_consumer_close_code (it is not allowed to "
       "miss messages silently); drop = drop the message and count it.",
       RG_CHOICE(slow_consumer_policy, SlowConsumerPolicy, slow_consumer_words)},
      {"slow_consumer_close_code", Kind::u32, "1008|1013",
       "Close code for slow consumers: 1008 (policy violation) or 1013 (try again later).",
       RG_U32(slow_consumer_close_code)},
      {"max_buffered_bytes", Kind::size64, "SIZE",
       "Bytes buffered across all connections, outbound and messages being reassembled, split evenly over "
       "workers. An outbound message that would exceed a worker's share follows slow_consumer_policy, an "
       "inbound one is refused with close 1013, and new handshakes get 503 from kernel_refuse_percent of "
       "it. 0 = a quarter of MemTotal.",
       RG_SIZE64(max_buffered_bytes)},
      {"stall_timeout", Kind::duration, "DURATION",
       "A connection that is mid-message or has output waiting and makes no progress (no bytes in, no send "
       "completed) for this long is closed (1008 when it can still be told).",
       RG_MS(stall_timeout_ms)},
      {"min_message_rate", Kind::size32, "SIZE",
       "Bytes per second a connection must keep sending while it is mid-message: the stall timer is pushed "
       "back only by stall_timeout's worth of them (30 KiB at the defaults), so a trickle cannot hold a "
       "half-sent message (close 1008).",
       RG_SIZE32(min_message_rate)},
      {"ping_interval", Kind::duration, "DURATION",
       "Heartbeat: a connection that has sent nothing for this long gets a ping, and another every interval "
       "while it stays silent. 0 = no pings.",
       RG_MS(ping_interval_ms)},
      {"pong_timeout", Kind::duration, "DURATION",
       "After a ping, a connection from which nothing at all arrives (no pong, no data) within this is closed: "
       "it finds clients that vanished without a FIN.",
       RG_MS(pong_timeout_ms)},
      {"idle_timeout", Kind::duration, "DURATION",
       "A connection that sends nothing (pongs included) for this long is closed with 1000 \"idle timeout\". "
       "0 = never.",
       RG_MS(idle_timeout_ms)},
      {"backplane", Kind::text, "URL",
       "redis://HOST:PORT: the Redis (7.0 or later) that carries publishes between the nodes of a fleet. A publish "
       "on any node then reaches every subscriber of the channel (or device of the user) on every node; each node "
       "subscribes in Redis only to the names its own clients hold. While Redis is unreachable publishes answer "
       "503. redis-cluster://HOST:PORT[,HOST:PORT...]: a Redis Cluster, found through up to 16 of its nodes. 'off': "
       "this node's subscribers only.",
       RG_TEXT(backplane)},
      {"node_id", Kind::text, "NAME",
       "This node's name in the fleet's registry (with backplane): 1 to 64 of [A-Za-z0-9._:-]. Empty: the host "
       "name and the listen port.",
       RG_TEXT(node_id)},
      {"drain_grace", Kind::duration, "DURATION",
       "After SIGTERM/SIGINT, how long /readyz answers 503 while connections are still served (and newcomers still "
       "accepted) before the drain closes them with 1001: time for a balancer's health checks to take the node "
       "out of rotation, so reconnecting clients land on other nodes. 0: drain at once.",
       RG_MS(drain_grace_ms)},
      {"drain_timeout", Kind::duration, "DURATION",
       "On SIGTERM/SIGINT: time connections get to finish the close handshake before the process exits.",
       RG_MS(drain_timeout_ms)},
      {"log_level", Kind::text, "LEVEL", "debug, info, warn or error.", RG_TEXT(log_level)},
      {"strict_preflight", Kind::flag, "",
       "Refuse to start when the start-up preflight (the kernel against this configuration: somaxconn, "
       "RLIMIT_NOFILE, file-max, tcp_mem, nf_conntrack_max, the local port range) finds anything; without it "
       "each finding is a warning with its fix. A flag: --strict-preflight, or --strict-preflight=false.",
       [](Config& c, std::uint64_t v, const std::string&) { c.strict_preflight = v != 0; },
       [](const Config& c) { return std::string(c.strict_preflight ? "true" : "false"); }},
  };
  return all;
}

const Option* find_option(const std::string& key) {
  const std::string k = snake(key);
  for (const auto& o : options())
    if (k == o.name) return &o;
  return nullptr;
}

bool parse_u64(const std::string& s, std::uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  std::uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    const std::uint64_t d = static_cast<std::uint64_t>(ch - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

// Splits "123unit" into number and unit.
bool split_number(const std::string& text, std::uint64_t& number, std::string& unit) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (!parse_u64(text.substr(0, i), number)) return false;
  unit = text.substr(i);
  unit.erase(0, unit.find_first_not_of(' '));
  return true;
}

bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

}  // namespace

const char* word(Reject v) noexcept { return reject_words[static_cast<std::size_t>(v)]; }
const char* word(SlowConsumerPolicy v) noexcept { return slow_consumer_words[static_cast<std::size_t>(v)]; }
const char* word(Auth v) noexcept { return auth_words[static_cast<std::size_t>(v)]; }
const char* word(WakeMode v) noexcept { return wake_words[static_cast<std::size_t>(v)]; }
const char* word(TlsVersion v) noexcept { return tls_version_words[static_cast<std::size_t>(v)]; }

bool parse_size(const std::string& text, std::uint64_t& bytes) {
  std::uint64_t n;
  std::string unit;
  if (!split_number(text, n, unit)) return false;
  std::uint64_t mult;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB" || unit == "K" || unit == "k") mult = 1024;
  else if (unit == "MiB" || unit == "M") mult = 1024 * 1024;
  else if (unit == "GiB" || unit == "G") mult = 1024ull * 1024 * 1024;
  else if (unit == "KB" || unit == "kB") mult = 1000;
  else if (unit == "MB") mult = 1000 * 1000;
  else if (unit == "GB") mult = 1000ull * 1000 * 1000;
  else return false;
  return checked_mul(n, mult, bytes);
}

bool parse_duration_ms(const std::string& text, std::uint64_t& ms) {
  std::uint64_t n;
  std::string unit;
  if (!split_number(text, n, unit)) return false;
  if (unit == "ms") {
    ms = n;
    return true;
  }
  if (unit == "us") {
    ms = n / 1000 + (n % 1000 != 0);  // round up: a positive duration never becomes zero
    return true;
  }
  std::uint64_t mult;
  if (unit.empty() || unit == "s") mult = 1000;
  else if (unit == "m" || unit == "min") mult = 60 * 1000;
  else if (unit == "h") mult = 3600 * 1000;
  else return false;
  return checked_mul(n, mult, ms);
}

bool apply_option(const std::string& key, const std::string& value, Config& c, std::string& error) {
  const Option* o = find_option(key);
  if (!o) {
    error = "unknown option '" + key + "' (see --help)";
    return false;
  }
  std::uint64_t n = 0;
  const auto bad = [&](const char* what) {
    error = "option " + kebab(o->name) + ": '" + value + "' is not " + what;
    return false;
  };
  switch (o->kind) {
    case Kind::text:
    case Kind::list:
      break;
    case Kind::choice: {
      // value_hint is "a|b|c" in enum order: the word's position is its value.
      const std::string_view hint = o->value_hint;
      std::size_t start = 0;
      for (n = 0;; ++n) {
        const std::size_t bar = hint.find('|', start);
        if (hint.substr(start, bar == std::string_view::npos ? bar : bar - start) == value) break;
        if (bar == std::string_view::npos) {
          error = "option " + kebab(o->name) + ": '" + value + "' is not one of " + std::string(hint);
          return false;
        }
        start = bar + 1;
      }
      break;
    }
    case Kind::fraction: {
      char* end = nullptr;
      const double f = value.empty() ? -1 : std::strtod(value.c_str(), &end);
      if (end == nullptr || *end != '\0' || !(f > 0.0 && f < 1.0)) return bad("a fraction between 0 and 1 (e.g. 0.5)");
      o->set(c, 0, value);
      return true;
    }
    case Kind::u32:
      if (!parse_u64(value, n) || n > std::numeric_limits<std::uint32_t>::max()) return bad("a number");
      break;
    case Kind::u64:
      if (!parse_u64(value, n)) return bad("a number");
      break;
    case Kind::size32:
      if (!parse_size(value, n) || n > std::numeric_limits<std::uint32_t>::max())
        return bad("a size below 4GiB (e.g. 4096, 64KiB, 1MiB)");
      break;
    case Kind::size64:
      if (!parse_size(value, n)) return bad("a size (e.g. 4096, 64KiB, 1MiB)");
      break;
    case Kind::duration:
      if (!parse_duration_ms(value, n)) return bad("a duration (e.g. 500ms, 2s, 1m)");
      break;
    case Kind::flag:
      if (value == "true" || value == "1") n = 1;
      else if (value == "false" || value == "0") n = 0;
      else return bad("true or false");
      break;
    case Kind::address: {
      // HOST:PORT, or [v6]:PORT
      std::string host;
      std::string port;
      if (!value.empty() && value[0] == '[') {
        const auto close = value.find("]:");
        if (close == std::string::npos) return bad("HOST:PORT");
        host = value.substr(1, close - 1);
        port = value.substr(close + 2);
      } else {
        const auto colon = value.rfind(':');
        if (colon == std::string::npos) return bad("HOST:PORT");
        host = value.substr(0, colon);
        port = value.substr(colon + 1);
      }
      if (host.empty() || !parse_u64(port, n) || n > 65535) return bad("HOST:PORT");
      o->set(c, n, host);
      return true;
    }
  }
  o->set(c, n, value);
  return true;
}

bool apply_toml(const std::string& text, const std::string& origin, Config& c, std::string& error) {
  // Configuration files are ASCII (every key and value ringgate reads is).
  // Refusing the rest before parsing also keeps toml++ 3.3.0 away from its
  // undefined behaviour on some non-ASCII code points (upstream #190, #295).
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x80) {
      const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(i), '\n');
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", byte);
      error = absl::StrCat(origin, ":", line, ": byte ", hex, " is not ASCII; configuration files are ASCII");
      return false;
    }
  }
  toml::parse_result parsed = toml::parse(text, origin);
  if (!parsed) {
    std::ostringstream os;
    os << origin << ":" << parsed.error().source().begin.line << ": " << parsed.error().description();
    error = os.str();
    return false;
  }
  const toml::table& table = parsed.table();
  for (const auto& [k, node] : table) {
    const std::string key{k.str()};
    std::string value;
    if (const auto* s = node.as_string()) {
      value = s->get();
    } else if (const auto* i = node.as_integer()) {
      if (i->get() < 0) {
        error = absl::StrCat(origin, ": ", key, " must not be negative");
        return false;
      }
      value = std::to_string(i->get());
    } else if (const auto* f = node.as_floating_point()) {
      std::ostringstream os;
      os << f->get();
      value = os.str();
    } else if (const auto* b = node.as_boolean()) {
      value = b->get() ? "1" : "0";
    } else if (const auto* a = node.as_array()) {
      for (const auto& el : *a) {
        const auto* s = el.as_string();
        if (!s) {
          error = absl::StrCat(origin, ": ", key, " must be an array of strings");
          return false;
        }
        if (!value.empty()) value += ',';
        value += s->get();
      }
    } else {
      error = absl::StrCat(origin, ": ", key, " has an unsupported type (use a string, integer or array)");
      return false;
    }
    if (!apply_option(key, value, c, error)) {
      error = absl::StrCat(origin, ": ", error);
      return false;
    }
  }
  return true;
}

std::string help_text() {
  const Config defaults;
  std::string out =
      "ringgate: an io_uring WebSocket server\n\n"
      "usage: ringgate [--config FILE] [--OPTION VALUE ...]\n"
      "       ringgate tune plan|check|apply|rollback ...   kernel tuning (ringgate tune --help)\n\n"
      "Every option is also a key in the TOML config file, with '_' for '-'\n"
      "(max_message_size = \"1MiB\" <-> --max-message-size 1MiB).  Flags win over\n"
      "the file.  Sizes take units (4096, 64KiB, 1MiB, 100KB); durations take units\n"
      "(500ms, 2s, 1m).\n\n"
      "  --config FILE                 TOML file with any of the keys below\n"
      "  --help                        this text\n";
  for (const auto& o : options()) {
    std::string left = "  --" + kebab(o.name) + " " + o.value_hint;
    if (left.size() < 32) left.resize(32, ' ');
    else left += "\n" + std::string(32, ' ');
    out += left + o.help + " [default: " + o.show(defaults) + "]\n";
  }
  return out;
}

bool load_config(int argc, char** argv, Config& c, std::string& error, bool& exit_now) {
  exit_now = false;
  // Pass 1: --help and --config, so the file applies before any flag.
  std::vector<std::pair<std::string, std::string>> flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(help_text().c_str(), stdout);
      exit_now = true;
      return true;
    }
    if (arg.rfind("--", 0) != 0) {
      error = "unexpected argument '" + arg + "' (options look like --name value; see --help)";
      return false;
    }
    arg.erase(0, 2);
    std::string value;
    const auto eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (const Option* o = find_option(arg); o && o->kind == Kind::flag) {
      value = "true";  // a flag takes no value
    } else {
      if (i + 1 >= argc) {
        error = "option --" + arg + " needs a value";
        return false;
      }
      value = argv[++i];
    }
    if (arg == "config") c.config_file = value;
    else flags.emplace_back(arg, value);
  }
  if (!c.config_file.empty()) {
    std::ifstream in(c.config_file);
    if (!in) {
      error = "cannot read config file " + c.config_file;
      return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    if (!apply_toml(ss.str(), c.config_file, c, error)) return false;
  }
  for (const auto& [k, v] : flags)
    if (!apply_option(k, v, c, error)) return false;
  return true;
}

}  // namespace rg::server
