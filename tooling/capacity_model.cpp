// The capacity model (tooling/capacity_model.h): what N connections need from the host and the kernel.
#include "tooling/capacity_model.h"

#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>

#include <algorithm>
#include <sstream>

#include "proto/http_upgrade.h"
#include "server/conn.h"

// The model plans with the connection record's real size.
static_assert(rg::server::capacity::record_bytes == rg::server::conn_record_bytes,
              "the capacity model plans with the connection record's size (server/conn.h)");
static_assert(rg::server::capacity::tls_slot_bytes == rg::server::tls_slot_bytes,
              "the capacity model plans with the TLS table row's size (server/conn.h)");

namespace rg::server::capacity {

static_assert(answer_slot_bytes == rg::proto::http::response_bytes_max,
              "an answer slot is one HTTP response buffer");
static_assert(kernel_bytes_per_socket * 2 >= kernel_bytes_per_pair);

namespace {

constexpr std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept { return b == 0 ? 0 : (a + b - 1) / b; }
constexpr std::uint64_t round_up(std::uint64_t a, std::uint64_t m) noexcept { return ceil_div(a, m) * m; }
constexpr std::uint64_t pow2_at_least(std::uint64_t n) noexcept {
  std::uint64_t p = 1;
  while (p < n && p < (1ull << 62)) p <<= 1;
  return p;
}

// Ports outbound connections draw from: above ringgate's own defaults
// (listen 8080, admin 9090).
constexpr std::uint64_t port_low = 10'000;
constexpr std::uint64_t port_high = 65'535;
// What the rest of the system keeps open beside the sockets.
constexpr std::uint64_t files_besides = 65'536;
// Per-socket buffer maximum: a share of the tcp_mem cap, within bounds.
constexpr std::uint64_t socket_buffer_max_share = 1024;
constexpr std::uint64_t socket_buffer_max_min = 4 * MiB;
constexpr std::uint64_t socket_buffer_max_max = 32 * MiB;
// Kernel defaults for the first two fields of tcp_rmem / tcp_wmem.
constexpr std::uint64_t tcp_rmem_default = 131'072;
constexpr std::uint64_t tcp_wmem_default = 16'384;
constexpr std::uint64_t fin_timeout_s = 15;
// Packets a connecting client sends before its first message: SYN, ACK, request.
constexpr std::uint64_t handshake_packets = 3;

bool parse_fields(const std::string& text, std::vector<std::uint64_t>& out) {
  out.clear();
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    if (word.empty() || word.size() > 19 || word.find_first_not_of("0123456789") != std::string::npos) return false;
    out.push_back(std::stoull(word));
  }
  return !out.empty();
}

std::string join(const std::vector<std::uint64_t>& v) { return absl::StrJoin(v, " "); }

// The packets of one 100 ms worker tick during a reconnect storm.
std::uint64_t storm_per_tick(std::uint64_t connections) noexcept {
  return ceil_div(connections * 100, reconnect_window_ms);
}

std::uint64_t socket_buffer_max(std::uint64_t tcp_mem_cap_bytes) noexcept {
  return std::clamp(pow2_at_least(tcp_mem_cap_bytes / socket_buffer_max_share), socket_buffer_max_min,
                    socket_buffer_max_max);
}

}  // namespace

TableSizing size_tables(std::uint64_t nofile, std::uint64_t configured_slots, std::uint64_t reserved_slots) noexcept {
  TableSizing t;
  t.slots = configured_slots ? std::min(configured_slots, nofile) : nofile;
  t.slots = std::min(t.slots, table_slots_max);
  // At most a quarter of the table is held back, so a tiny table still serves.
  t.reserved = std::min(reserved_slots, t.slots / 4);
  t.usable = t.slots - t.reserved;
  t.planned_per_worker = std::max<std::uint64_t>(1, t.usable * table_fill_percent / 100);
  return t;
}

std::uint32_t workers_for(std::uint64_t connections, std::uint64_t planned_per_worker, std::uint32_t cpus) noexcept {
  const std::uint64_t tables = ceil_div(connections, std::max<std::uint64_t>(1, planned_per_worker));
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(workers_max, std::max<std::uint64_t>(cpus, tables)));
}

std::uint64_t limit_nofile_for(std::uint64_t connections, std::uint32_t cpus, std::uint64_t reserved_slots) noexcept {
  const std::uint64_t per_worker = ceil_div(connections * 100, std::uint64_t{std::max(cpus, 1u)} * table_fill_percent);
  const std::uint64_t wanted = round_up(per_worker + reserved_slots, 65'536);
  return std::clamp<std::uint64_t>(wanted, 65'536, table_slots_max);
}

std::uint64_t file_max_for(std::uint64_t connections, std::uint32_t ends) noexcept {
  // The sockets at 80% of the limit (ringgate refuses at 95%), plus the rest.
  return round_up(ceil_div(connections * ends * 5, 4) + files_besides, 65'536);
}

std::uint64_t conntrack_max_for(std::uint64_t connections) noexcept {
  return round_up(ceil_div(connections * 5, 4), 65'536);
}

std::vector<std::uint64_t> tcp_mem_for(std::uint64_t connections, std::uint64_t buffer_bytes,
                                       std::uint64_t page_bytes) noexcept {
  const std::uint64_t planned = ceil_div(connections * buffer_bytes, std::max<std::uint64_t>(page_bytes, 1));
  return {planned, ceil_div(planned * 5, 4), ceil_div(planned * 3, 2)};
}

std::uint64_t backlog_for(std::uint64_t connections) noexcept {
  return std::clamp<std::uint64_t>(pow2_at_least(storm_per_tick(connections)), 4096, 65'535);
}

const char* compare_name(Compare c) noexcept {
  switch (c) {
    case Compare::at_least: return ">=";
    case Compare::at_most: return "<=";
    case Compare::exact: return "==";
    case Compare::covers: return "covers";
  }
  return "?";
}

Compare compare_for(const std::string& key) noexcept {
  if (key == "net.ipv4.tcp_fin_timeout") return Compare::at_most;
  if (key == "net.ipv4.ip_local_port_range") return Compare::covers;
  if (key == "net.ipv4.tcp_tw_reuse") return Compare::exact;
  for (const char* k : {"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.core.netdev_max_backlog",
                        "net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.core.rmem_max",
                        "net.core.wmem_max", "fs.file-max", "fs.nr_open", "net.netfilter.nf_conntrack_max"})
    if (key == k) return Compare::at_least;
  return Compare::exact;
}

bool satisfies(Compare c, const std::string& now, const std::string& wanted) {
  std::vector<std::uint64_t> n;
  std::vector<std::uint64_t> w;
  if (!parse_fields(now, n) || !parse_fields(wanted, w) || n.size() != w.size() ||
      (c == Compare::covers && n.size() != 2))
    return spaced(now) == spaced(wanted);
  switch (c) {
    case Compare::at_least:
      for (std::size_t i = 0; i < n.size(); ++i)
        if (n[i] < w[i]) return false;
      return true;
    case Compare::at_most:
      for (std::size_t i = 0; i < n.size(); ++i)
        if (n[i] > w[i]) return false;
      return true;
    case Compare::exact: return n == w;
    case Compare::covers: return n[0] <= w[0] && n[1] >= w[1];
  }
  return false;
}

std::string tighten(Compare c, const std::string& now, const std::string& wanted) {
  std::vector<std::uint64_t> n;
  std::vector<std::uint64_t> w;
  if (!parse_fields(now, n) || !parse_fields(wanted, w) || n.size() != w.size() ||
      (c == Compare::covers && n.size() != 2))
    return spaced(wanted);
  switch (c) {
    case Compare::at_least:
      for (std::size_t i = 0; i < n.size(); ++i) w[i] = std::max(n[i], w[i]);
      break;
    case Compare::at_most:
      for (std::size_t i = 0; i < n.size(); ++i) w[i] = std::min(n[i], w[i]);
      break;
    case Compare::exact: break;
    case Compare::covers:
      w = {std::min(n[0], w[0]), std::max(n[1], w[1])};
      break;
  }
  return join(w);
}

namespace {

std::vector<Setting> settings_for(const HostFacts& host, const Target& t, const Plan& p) {
  const std::uint64_t n = t.connections;
  const std::uint32_t ends = t.clients_on_host ? 2 : 1;
  const std::string N = group_digits(n);
  std::vector<Setting> s;
  const auto add = [&](std::string key, std::string value, std::string why, bool optional = false) {
    Compare c = compare_for(key);
    s.push_back(Setting{std::move(key), std::move(value), c, optional, std::move(why)});
  };

  const std::uint64_t storm = storm_per_tick(n);
  add("net.core.somaxconn", std::to_string(p.backlog),
      absl::StrFormat("Caps every listen(2) backlog, so each worker's accept queue. A reconnect storm (all %s "
                      "clients back within %.1f s) brings %s per 100 ms worker tick: the next power of two, "
                      "within [4096, 65535]. Start ringgate with --backlog %u to use it.",
                      N, reconnect_window_ms / 1000.0, group_digits(storm), p.backlog));
  add("net.ipv4.tcp_max_syn_backlog", std::to_string(p.backlog),
      "Half-open connections per listener: as deep as the accept queue, so a storm is not cut short before "
      "it (SYN cookies take over beyond).");
  const std::uint64_t packets = storm * handshake_packets + ceil_div(t.msg_rate, 10);
  const std::uint64_t netdev = std::clamp<std::uint64_t>(pow2_at_least(packets), 1000, 65'536);
  add("net.core.netdev_max_backlog", std::to_string(netdev),
      absl::StrFormat("Packets queued per CPU before the network softirq runs. Planned for one 100 ms tick of "
                      "the storm (%s connections x %u packets) plus the message rate (%s/s): %s, the next power "
                      "of two, within [1000, 65536].",
                      group_digits(storm), handshake_packets, group_digits(t.msg_rate), group_digits(packets)));

  add("net.ipv4.ip_local_port_range", absl::StrFormat("%u %u", port_low, port_high),
      t.clients_on_host
          ? absl::StrFormat("Ports for outbound connections: here every client's. At %u%% of the range per "
                            "(source, destination) pair (Linux hands out one parity first), %s clients need "
                            "%u source addresses: ringgate-load --sources %u.",
                            port_share_percent, N, p.load_sources, p.load_sources)
          : std::string("Ports for outbound connections (health checks, upstreams). Starts above ringgate's own "
                        "ports (listen 8080, admin 9090); reserve any other listener inside it with "
                        "net.ipv4.ip_local_reserved_ports."));
  add("net.ipv4.tcp_tw_reuse", "1",
      "Lets outbound connections reuse a port in TIME-WAIT (the default, 2, does so on loopback only). ringgate "
      "closes TCP first (RFC 6455 7.1.1), so TIME-WAIT sits on its side and costs it no ports; this is for "
      "the clients and outbound checks.");
  add("net.ipv4.tcp_fin_timeout", std::to_string(fin_timeout_s),
      absl::StrFormat("Seconds a socket ringgate has closed waits in FIN-WAIT-2 for a peer that does not close. "
                      "ringgate closes TCP first (RFC 6455 7.1.1), so after a mass disconnect of vanished clients up "
                      "to %s sockets wait here: %u s instead of 60 lets go of them four times sooner.",
                      N, fin_timeout_s));

  const auto mem = tcp_mem_for(n * ends, t.buffer_bytes, host.page_bytes);
  add("net.ipv4.tcp_mem", absl::StrFormat("%u %u %u", mem[0], mem[1], mem[2]),
      absl::StrFormat("TCP buffer memory, system-wide, in %u-byte pages. %s sockets x %s planned (--buffer) = "
                      "%s pages: no pressure up to it, pressure from 125%%, hard cap at 150%% (%s). ringgate warns "
                      "at 70%% of the cap and refuses new handshakes at 95%% (kernel_refuse_percent).",
                      host.page_bytes, group_digits(n * ends), format_bytes(t.buffer_bytes), group_digits(mem[0]),
                      format_bytes(mem[2] * host.page_bytes)));
  const std::uint64_t buf_max = socket_buffer_max(mem[2] * host.page_bytes);
  add("net.ipv4.tcp_rmem", absl::StrFormat("4096 %u %u", tcp_rmem_default, buf_max),
      absl::StrFormat("Per-socket receive buffer: min, default, max. Memory is charged per queued byte against "
                      "tcp_mem, so the default costs an idle connection nothing; autotuning grows busy sockets up "
                      "to the max, 1/%u of the tcp_mem cap (within [4 MiB, 32 MiB]): %s.",
                      socket_buffer_max_share, format_bytes(buf_max)));
  add("net.ipv4.tcp_wmem", absl::StrFormat("4096 %u %u", tcp_wmem_default, buf_max),
      "Per-socket send buffer: min, default, max, sized as tcp_rmem. ringgate bounds what it queues per "
      "connection itself (frame_buffer_size, max_buffered_bytes).");
  add("net.core.rmem_max", std::to_string(buf_max),
      "Cap on SO_RCVBUF set by applications (ringgate sets none): equal to the tcp_rmem max, so a tool that "
      "sets it is not held below autotuning.");
  add("net.core.wmem_max", std::to_string(buf_max),
      "Cap on SO_SNDBUF set by applications: equal to the tcp_wmem max, as net.core.rmem_max is to tcp_rmem.");

  const std::uint64_t files = file_max_for(n, ends);
  add("fs.file-max", std::to_string(files),
      absl::StrFormat("Open files, system-wide. Every socket is a file, io_uring direct descriptors included "
                      "(they are in no fd table, but file-nr counts them). %s sockets at 80%% of the limit "
                      "(ringgate refuses new handshakes at 95%%), plus 65,536 for the rest of the system, "
                      "rounded up to a multiple of 65,536.",
                      group_digits(n * ends)));
  add("fs.nr_open", std::to_string(table_slots_max),
      "Ceiling of any RLIMIT_NOFILE, so of ringgate.service's LimitNOFILE, which sizes each worker's "
      "direct-descriptor table. 1,048,576 is the kernel's cap on one ring's table (IORING_MAX_FIXED_FILES), "
      "so any LimitNOFILE the plan asks for fits under it.");
  add("net.netfilter.nf_conntrack_max", std::to_string(conntrack_max_for(n)),
      absl::StrFormat("Connections conntrack tracks, one entry each; a full table drops new SYNs without a word. "
                      "%s connections at 80%% of it. Applied only where nf_conntrack is loaded; set "
                      "nf_conntrack_buckets to a quarter of it.",
                      N),
      /*optional=*/true);
  return s;
}

}  // namespace

Plan make_plan(const HostFacts& host, const Target& t) {
  Plan p;
  const std::uint64_t n = t.connections;
  const std::uint32_t cpus = std::max(host.cpus, 1u);
  const std::uint32_t ends = t.clients_on_host ? 2 : 1;

  p.limit_nofile = limit_nofile_for(n, cpus, t.reserved_slots);
  p.tables = size_tables(p.limit_nofile, 0, t.reserved_slots);
  p.workers = workers_for(n, p.tables.planned_per_worker, cpus);
  p.workers_fit = ceil_div(n, p.tables.planned_per_worker) <= workers_max;
  p.tables_now = size_tables(host.nofile_hard, 0, t.reserved_slots);
  p.workers_now = workers_for(n, p.tables_now.planned_per_worker, cpus);
  p.backlog = backlog_for(n);
  const std::uint64_t per_pair = (port_high - port_low + 1) * port_share_percent / 100;
  p.load_sources = t.clients_on_host ? ceil_div(n, per_pair) : 0;
  p.settings = settings_for(host, t, p);

  // Memory, item by item.
  const std::uint64_t kernel = n * kernel_bytes_per_socket;
  p.memory.push_back({"kernel per socket", kernel_bytes_per_socket, kernel,
                      "measured: 10,745 B per loopback pair at 1M (perf/results/density), half a pair"});
  const std::uint64_t slab = record_bytes * p.tables.slots * p.workers;
  p.memory.push_back({"ringgate per connection", ceil_div(slab, std::max<std::uint64_t>(n, 1)), slab,
                      absl::StrFormat("%u B record x %s slots x %u workers, faulted in at start-up", record_bytes,
                                      group_digits(p.tables.slots), p.workers)});
  const std::uint64_t fixed = server_resident_bytes(p.workers, p.tables.slots, t) - slab;
  p.memory.push_back(
      {"ringgate fixed", 0, fixed,
       absl::StrFormat("%u workers x (%s recv buffers + %s answer slots + %s thread and ring) + %s; calibrated on "
                       "the idle-rss and density RSS",
                       p.workers, format_bytes(t.recv_buffer_count * t.recv_buffer_size),
                       format_bytes(t.max_pending_handshakes * answer_slot_bytes), format_bytes(worker_overhead_bytes),
                       format_bytes(process_base_bytes))});
  const auto mem = tcp_mem_for(n * ends, t.buffer_bytes, host.page_bytes);
  const std::uint64_t buffers = mem[2] * host.page_bytes;
  p.memory.push_back({"socket buffers", ceil_div(buffers, std::max<std::uint64_t>(n, 1)), buffers,
                      absl::StrFormat("the tcp_mem cap: 150%% of %s x %s", group_digits(n * ends),
                                      format_bytes(t.buffer_bytes))});
  const std::uint64_t sessions = std::min(n, ceil_div(t.msg_rate * session_hold_ms, 1000));
  p.memory.push_back({"active sessions", 0, sessions * session_bytes,
                      absl::StrFormat("msg-rate %s/s x %u ms = %s sessions x %s", group_digits(t.msg_rate),
                                      session_hold_ms, group_digits(sessions), group_digits(session_bytes) + " B")});
  if (t.tls) {
    const std::uint64_t table = tls_slot_bytes * p.tables.slots * p.workers;
    p.memory.push_back({"TLS per connection", tls_idle_bytes + ceil_div(table, std::max<std::uint64_t>(n, 1)),
                        n * tls_idle_bytes + table,
                        absl::StrFormat("measured: 3,121 B RSS per idle TLS 1.3 SSL (perf/results/tls), planned at "
                                        "%s B, + a %u B TLS table row x %s slots x %u workers",
                                        group_digits(tls_idle_bytes), tls_slot_bytes, group_digits(p.tables.slots),
                                        p.workers)});
    const std::uint64_t records = std::uint64_t{p.workers} * t.tls_record_buffers * tls_record_buffer_bytes;
    p.memory.push_back({"TLS record buffers", 0, records,
                        absl::StrFormat("%u workers x %s tls_record_buffers x 32 KiB, if all are in flight at once",
                                        p.workers, group_digits(t.tls_record_buffers))});
  }
  if (t.clients_on_host) {
    const std::uint64_t per = kernel_bytes_per_socket + load_bytes_per_connection;
    p.memory.push_back({"clients on this host", per, n * per,
                        "ringgate-load: its sockets plus 2,969 B RSS per connection (density)"});
  }
  std::uint64_t subtotal = 0;
  for (const auto& row : p.memory) subtotal += row.total;
  const std::uint64_t headroom = std::max(headroom_min_bytes, subtotal * headroom_percent / 100);
  p.memory.push_back({"headroom", 0, headroom,
                      absl::StrFormat("max(%u%%, %s): page cache, slab fragmentation, the rest of the system",
                                      headroom_percent, format_bytes(headroom_min_bytes))});
  p.total_bytes = subtotal + headroom;
  p.ram_bytes = host.ram_bytes;
  p.memory_fits = p.total_bytes <= host.ram_bytes;
  p.cores_needed_milli = ceil_div(t.msg_rate * 1000, msgs_per_core);
  if (t.tls) {
    // A reconnect storm is bounded by handshake CPU, not by the window a
    // plain storm takes: plan the accept rate the host can sign at, and say
    // how long everyone takes to come back at it.
    p.tls_accept_rate = std::uint64_t{cpus} * tls_handshakes_per_core * tls_storm_cpu_percent / 100;
    p.tls_storm_ms = ceil_div(n * 1000, std::max<std::uint64_t>(p.tls_accept_rate, 1));
  }
  p.cpu_fits = p.cores_needed_milli <= std::uint64_t{cpus} * 1000;
  return p;
}

std::uint64_t server_resident_bytes(std::uint32_t workers, std::uint64_t slots, const Target& t) {
  const std::uint64_t pools = t.recv_buffer_count * t.recv_buffer_size + t.max_pending_handshakes * answer_slot_bytes;
  return std::uint64_t{workers} * (slots * record_bytes + pools + worker_overhead_bytes) + process_base_bytes;
}

std::uint64_t largest_fitting(const HostFacts& host, Target target) {
  // Every connection costs at least its kernel socket, so RAM bounds the search.
  std::uint64_t lo = 0;
  std::uint64_t hi = host.ram_bytes / kernel_bytes_per_socket + 1;
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo + 1) / 2;
    target.connections = mid;
    if (make_plan(host, target).fits()) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

std::string group_digits(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string spaced(const std::string& value) {
  std::istringstream in(value);
  std::string word;
  std::string out;
  while (in >> word) out += (out.empty() ? "" : " ") + word;
  return out;
}

std::string format_bytes(std::uint64_t bytes) {
  if (bytes < KiB) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes) / KiB;
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return absl::StrFormat("%.1f %s", v, units[u]);
}

}  // namespace rg::server::capacity
