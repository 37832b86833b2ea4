// The capacity model: what N connections cost on a host, and which kernel
// settings they need.  Pure: host facts and a target in, a plan out; no I/O.
//
// One source of truth.  The server's start-up sizing (main.cpp), its
// preflight (preflight.h) and `ringgate tune` (tune.h) all call these
// functions, so the figures an operator plans with are the ones the server
// runs on.  The per-connection figures are either taken from the code (with
// a static_assert where the code defines them) or measured by the capacity
// lab (perf/results/*/report.md); tests/unit/test_capacity_model.cpp pins
// the model to those measurements.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rg::server::capacity {

inline constexpr std::uint64_t KiB = 1024;
inline constexpr std::uint64_t MiB = 1024 * KiB;
inline constexpr std::uint64_t GiB = 1024 * MiB;

// ------------------------------------------------------------ from the code

// One connection record per table slot (server/conn.h; capacity_model.cpp checks the size).
inline constexpr std::uint64_t record_bytes = 44;
// One HTTP answer slot, max_pending_handshakes of them per worker
// (proto::http::response_bytes_max, static_assert in capacity_model.cpp).
inline constexpr std::uint64_t answer_slot_bytes = 512;
// A session attached while a connection is mid-message: wslay's event
// context (8,784 B) and frame context (4,272 B), measured with malloc hooks
// on this project's build machine (docs/capacity.md, "Server user space").
inline constexpr std::uint64_t session_bytes = 8'784 + 4'272;
// The kernel's cap on one ring's file table (IORING_MAX_FIXED_FILES).
inline constexpr std::uint64_t table_slots_max = 1u << 20;
// SO_REUSEPORT spreads connections by a hash of the 4-tuple, not by load,
// so tables fill unevenly: each is planned this full.  The spread of n
// connections over w workers has a standard deviation of about sqrt(n/w)
// (141 at 20,000 per worker), so 5% is many deviations.
inline constexpr std::uint32_t table_fill_percent = 95;
// Each worker costs a thread, a ring and its buffers.
inline constexpr std::uint32_t workers_max = 1024;

// -------------------------------------------------- measured by the lab

// Kernel slab per loopback connection pair, both ends io_uring sockets with
// an armed multishot recv: 10,745 B at 1,000,000 pairs (perf/results/density).
inline constexpr std::uint64_t kernel_bytes_per_pair = 10'745;
// One end of such a pair.  Both ends are the same kind of socket, so half.
inline constexpr std::uint64_t kernel_bytes_per_socket = (kernel_bytes_per_pair + 1) / 2;
// ringgate-load's RSS per held connection (perf/results/density).
inline constexpr std::uint64_t load_bytes_per_connection = 2'969;
// What the server's RSS holds beyond its pools, fitted to two runs:
// idle-rss (2 workers, RSS 27,800 KiB) and density (53 workers, 151,028 KiB):
// a thread stack, a ring, pool bookkeeping per worker, and the process base.
inline constexpr std::uint64_t worker_overhead_bytes = 600 * KiB;
inline constexpr std::uint64_t process_base_bytes = 5 * MiB;
// TLS (perf/results/tls): the server's RSS per idle TLS 1.3 connection
// beyond its record, 3,121 B measured with 4,000 connections (ECDSA P-256
// certificate, BoringSSL's SSL after its handshake configuration is shed),
// planned at 3.2 KB; a row of the worker's TLS table per slot (faulted in at
// start-up); and full handshakes one core does, 2,857/s measured with
// ECDSA P-256 (1,010/s with RSA 2048: an RSA certificate plans at a third).
inline constexpr std::uint64_t tls_idle_bytes = 3'200;
inline constexpr std::uint64_t tls_slot_bytes = 80;  // server/conn.h; capacity_model.cpp checks it
inline constexpr std::uint64_t tls_record_buffer_bytes = 32 * KiB;
inline constexpr std::uint64_t tls_handshakes_per_core = 2'800;
inline constexpr std::uint32_t tls_storm_cpu_percent = 80;
// Messages one server core handles: the echo run did 2.05M msgs/s on two
// cores it shared with its client (perf/results/echo); planned at 1M.
inline constexpr std::uint64_t msgs_per_core = 1'000'000;

// ------------------------------------------------------- planning policy

// Kernel socket-buffer memory planned per connection (rx + tx at once): one
// page, what a socket charges to tcp_mem with one small message queued.  A
// broadcast queues one on every connection at the same moment.
inline constexpr std::uint64_t default_buffer_bytes = 4 * KiB;
// A session stays attached about this long per message (one loop turn to a
// slow reader's round trip): active sessions = msg-rate x this.
inline constexpr std::uint64_t session_hold_ms = 100;
// Memory kept free for page cache, slab fragmentation and the rest of the
// system: the larger of these.
inline constexpr std::uint32_t headroom_percent = 10;
inline constexpr std::uint64_t headroom_min_bytes = 1 * GiB;
// A reconnect storm: all N clients come back within this long.
inline constexpr std::uint64_t reconnect_window_ms = 6'400;
// Outbound connections per (source, destination) pair are planned at this
// share of ip_local_port_range: Linux hands out one port parity first, and
// placement slows sharply past about half the range (docs/tuning.md, ports).
inline constexpr std::uint32_t port_share_percent = 30;

// ------------------------------------------------------- table sizing

struct TableSizing {
  std::uint64_t slots = 0;               // per worker ring (and per slab)
  std::uint64_t reserved = 0;            // the top of each table, kept for refusals
  std::uint64_t usable = 0;              // slots - reserved: what capacity is planned on
  std::uint64_t planned_per_worker = 0;  // usable x table_fill_percent
};

// Each ring's table may hold at most RLIMIT_NOFILE slots and at most
// table_slots_max; `configured_slots` 0 means "as many as allowed".
[[nodiscard]] TableSizing size_tables(std::uint64_t nofile, std::uint64_t configured_slots,
                                      std::uint64_t reserved_slots) noexcept;

// Workers needed for `connections`: at least `cpus`, raised to one table per
// planned_per_worker connections, capped at workers_max.
[[nodiscard]] std::uint32_t workers_for(std::uint64_t connections, std::uint64_t planned_per_worker,
                                        std::uint32_t cpus) noexcept;

// The RLIMIT_NOFILE (LimitNOFILE) that lets one worker per CPU hold
// `connections`: a multiple of 65,536, at least that, at most table_slots_max.
[[nodiscard]] std::uint64_t limit_nofile_for(std::uint64_t connections, std::uint32_t cpus,
                                             std::uint64_t reserved_slots) noexcept;

// --------------------------------------------------- kernel thresholds

// Each of these is the value a setting must reach for `connections`; the
// plan and the server's preflight share them.  `ends` is 1 for a server
// whose clients are elsewhere, 2 when the clients run on the same host.
[[nodiscard]] std::uint64_t file_max_for(std::uint64_t connections, std::uint32_t ends) noexcept;
[[nodiscard]] std::uint64_t conntrack_max_for(std::uint64_t connections) noexcept;
// tcp_mem (pages): {no pressure below, pressure from, hard cap}.
[[nodiscard]] std::vector<std::uint64_t> tcp_mem_for(std::uint64_t connections, std::uint64_t buffer_bytes,
                                                     std::uint64_t page_bytes) noexcept;
[[nodiscard]] std::uint64_t backlog_for(std::uint64_t connections) noexcept;

// ------------------------------------------------------- settings

// How a live value is judged against the wanted one, field by field.
enum class Compare : std::uint8_t {
  at_least,  // every field >= wanted (limits, queues, memory caps)
  at_most,   // every field <= wanted (timeouts)
  exact,     // equal (modes)
  covers,    // a range [low, high] that contains the wanted range
};

[[nodiscard]] const char* compare_name(Compare c) noexcept;
// The comparison for a known sysctl; `exact` for any other.
[[nodiscard]] Compare compare_for(const std::string& key) noexcept;
// Whether `now` meets `wanted`.  Values are whitespace-separated fields;
// non-numeric or differently sized values are only equal or not.
[[nodiscard]] bool satisfies(Compare c, const std::string& now, const std::string& wanted);
// What applying `wanted` over `now` writes: never looser than either (the
// larger limit, the shorter timeout, the wider range).  Fields joined by a
// tab, as the kernel prints them.
[[nodiscard]] std::string tighten(Compare c, const std::string& now, const std::string& wanted);

struct Setting {
  std::string key;    // sysctl name, e.g. net.core.somaxconn
  std::string value;  // fields separated by single spaces
  Compare compare = Compare::exact;
  bool optional = false;  // applied only where the kernel has it (conntrack)
  std::string why;        // why it matters and how it follows from the target
};

// ------------------------------------------------------- the plan

struct HostFacts {
  std::uint64_t ram_bytes = 0;
  std::uint32_t cpus = 1;
  std::uint64_t nofile_hard = 0;  // this process's hard RLIMIT_NOFILE
  std::uint64_t page_bytes = 4096;
  bool conntrack = false;  // nf_conntrack loaded
};

struct Target {
  std::uint64_t connections = 0;
  std::uint64_t msg_rate = 0;  // messages per second over all connections
  std::uint64_t buffer_bytes = default_buffer_bytes;
  bool clients_on_host = false;  // capacity lab: ringgate-load runs here too
  // The server settings that cost memory (Config's defaults).
  std::uint64_t recv_buffer_count = 512;
  std::uint64_t recv_buffer_size = 16 * KiB;
  std::uint64_t max_pending_handshakes = 4096;
  std::uint64_t reserved_slots = 64;
  // TLS: every connection is wss:// (--tls).
  bool tls = false;
  std::uint64_t tls_record_buffers = 256;  // per worker
};

struct MemoryRow {
  std::string item;
  std::uint64_t per_connection = 0;  // 0: not per connection
  std::uint64_t total = 0;
  std::string basis;  // where the figure comes from
};

struct Plan {
  std::vector<Setting> settings;
  std::uint64_t limit_nofile = 0;  // recommended LimitNOFILE
  TableSizing tables;              // under limit_nofile
  std::uint32_t workers = 0;
  std::uint64_t backlog = 0;  // ringgate --backlog
  // The same under the host's current hard limit (what starting ringgate
  // here now would do).
  TableSizing tables_now;
  std::uint32_t workers_now = 0;

  std::vector<MemoryRow> memory;  // the items; total and RAM are below
  std::uint64_t total_bytes = 0;
  std::uint64_t ram_bytes = 0;
  bool memory_fits = false;
  std::uint64_t cores_needed_milli = 0;  // msg_rate / msgs_per_core, in thousandths
  // TLS: every client's full handshake after a restart, on all the host's
  // cores (core-seconds / cpus), and the accept_rate that keeps them at
  // four fifths of the host so the connections already up are still served.
  std::uint64_t tls_storm_ms = 0;
  std::uint64_t tls_accept_rate = 0;
  bool cpu_fits = false;
  bool workers_fit = false;  // within workers_max
  std::uint64_t load_sources = 0;  // clients_on_host: source addresses ringgate-load needs

  [[nodiscard]] bool fits() const noexcept { return memory_fits && cpu_fits && workers_fit; }
};

[[nodiscard]] Plan make_plan(const HostFacts& host, const Target& target);

// The server's resident memory with `workers` tables of `slots` each: the
// slabs, the per-worker pools and overhead, and the process base.  It does
// not grow with idle connections (everything is faulted in at start-up).
[[nodiscard]] std::uint64_t server_resident_bytes(std::uint32_t workers, std::uint64_t slots, const Target& target);

// The most connections for which make_plan(host, target with that many)
// fits, 0 if none.
[[nodiscard]] std::uint64_t largest_fitting(const HostFacts& host, Target target);

// ------------------------------------------------------- formatting

// 1234567 -> "1,234,567".
[[nodiscard]] std::string group_digits(std::uint64_t n);
// Binary units with one decimal: "512 B", "4.0 KiB", "5.0 GiB".
[[nodiscard]] std::string format_bytes(std::uint64_t bytes);
// Whitespace-separated fields joined by single spaces, as profiles and
// tables show a value: "4096\t131072\n" -> "4096 131072".
[[nodiscard]] std::string spaced(const std::string& value);

}  // namespace rg::server::capacity
