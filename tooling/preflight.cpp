// The start-up preflight (tooling/preflight.h): kernel settings checked against the configuration.
#include "tooling/preflight.h"

#include <unistd.h>

#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>

#include <sstream>

#include "tooling/capacity_model.h"
#include "tooling/sysctl.h"

namespace rg::server::preflight {

namespace cap = rg::server::capacity;

namespace {

std::vector<std::uint64_t> read_fields(const std::string& root, const char* key) {
  std::string text;
  int error = 0;
  std::vector<std::uint64_t> out;
  if (!sysctl::read(root, key, text, error)) return out;
  std::istringstream in(text);
  std::uint64_t v = 0;
  while (in >> v) out.push_back(v);
  return out;
}

std::optional<std::uint64_t> read_one(const std::string& root, const char* key) {
  const auto v = read_fields(root, key);
  if (v.size() != 1) return std::nullopt;
  return v[0];
}

void check_ports(const KernelFacts& k, const char* what, std::uint16_t port, std::vector<Finding>& out) {
  if (port == 0 || !k.port_low || !k.port_high) return;
  if (port < *k.port_low || port > *k.port_high || port_reserved(k.reserved_ports, port)) return;
  const std::string list = k.reserved_ports.empty() ? std::to_string(port)
                                                    : k.reserved_ports + "," + std::to_string(port);
  out.push_back({absl::StrFormat("%s port %u is inside net.ipv4.ip_local_port_range %u-%u and not reserved: an "
                                 "outbound connection can take it while ringgate restarts",
                                 what, port, *k.port_low, *k.port_high),
                 absl::StrFormat("sysctl -w net.ipv4.ip_local_reserved_ports=%s", list)});
}

}  // namespace

bool port_reserved(const std::string& list, std::uint16_t port) {
  std::istringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    unsigned long lo = 0;
    unsigned long hi = 0;
    const auto dash = item.find('-');
    try {
      lo = std::stoul(item.substr(0, dash));
      hi = dash == std::string::npos ? lo : std::stoul(item.substr(dash + 1));
    } catch (...) {
      continue;  // the kernel prints only numbers and ranges
    }
    if (port >= lo && port <= hi) return true;
  }
  return false;
}

std::vector<Finding> check(const KernelFacts& k, const ServerFacts& s) {
  std::vector<Finding> out;
  if (k.somaxconn && s.backlog > *k.somaxconn)
    out.push_back({absl::StrFormat("backlog %u exceeds net.core.somaxconn %u, so the kernel uses %u", s.backlog,
                                   *k.somaxconn, *k.somaxconn),
                   absl::StrFormat("sysctl -w net.core.somaxconn=%u", s.backlog)});

  if (s.nofile_soft < s.nofile_hard)
    out.push_back({absl::StrFormat("RLIMIT_NOFILE soft limit %u is below the hard limit %u and could not be raised, "
                                   "so each worker's table is held to %u slots",
                                   s.nofile_soft, s.nofile_hard, s.nofile_soft),
                   absl::StrFormat("ulimit -Sn %u in the shell that starts ringgate, or LimitNOFILE=%u in "
                                   "ringgate.service",
                                   s.nofile_hard, s.nofile_hard)});
  const cap::TableSizing tables = cap::size_tables(s.nofile_soft, 0, s.reserved_slots);
  const std::uint64_t one_per_cpu = std::uint64_t{s.cpus} * tables.planned_per_worker;
  const std::uint64_t wanted_nofile = cap::limit_nofile_for(s.capacity, s.cpus, s.reserved_slots);
  if (s.capacity > one_per_cpu && s.workers > s.cpus && wanted_nofile > s.nofile_hard)
    out.push_back({absl::StrFormat("RLIMIT_NOFILE hard limit %u gives each worker ring %u slots, so capacity %u takes "
                                   "%u workers on %u CPUs (each with its own buffers)",
                                   s.nofile_hard, tables.slots, s.capacity, s.workers, s.cpus),
                   absl::StrFormat("LimitNOFILE=%u in ringgate.service (with sysctl -w fs.nr_open=%u if it is "
                                   "lower); then %u workers suffice",
                                   wanted_nofile, wanted_nofile,
                                   cap::workers_for(s.capacity,
                                                    cap::size_tables(wanted_nofile, 0, s.reserved_slots)
                                                        .planned_per_worker,
                                                    s.cpus))});

  const std::uint64_t files = cap::file_max_for(s.capacity, 1);
  if (k.file_max && *k.file_max < files)
    out.push_back({absl::StrFormat("fs.file-max %u is below the %u that %u connections need (every socket is a "
                                   "file, direct descriptors too; planned at 80%%)",
                                   *k.file_max, files, s.capacity),
                   absl::StrFormat("sysctl -w fs.file-max=%u", files)});

  const auto mem = cap::tcp_mem_for(s.capacity, cap::default_buffer_bytes, k.page_bytes);
  if (k.tcp_mem.size() == 3 && k.tcp_mem[2] < mem[2]) {
    std::vector<std::uint64_t> wanted(3);
    for (std::size_t i = 0; i < 3; ++i) wanted[i] = std::max(k.tcp_mem[i], mem[i]);
    const std::string fixed = absl::StrJoin(wanted, " ");
    out.push_back({absl::StrFormat("net.ipv4.tcp_mem caps TCP buffers at %u pages (%s), below the %u pages that "
                                   "%u connections x %s of buffers need (150%%)",
                                   k.tcp_mem[2], cap::format_bytes(k.tcp_mem[2] * k.page_bytes), mem[2], s.capacity,
                                   cap::format_bytes(cap::default_buffer_bytes)),
                   absl::StrFormat("sysctl -w net.ipv4.tcp_mem=\"%s\"", fixed)});
  }

  const std::uint64_t tracked = cap::conntrack_max_for(s.capacity);
  if (k.conntrack_max && *k.conntrack_max < tracked)
    out.push_back({absl::StrFormat("net.netfilter.nf_conntrack_max %u is below the %u entries that %u tracked "
                                   "connections need (a full table drops new SYNs silently)",
                                   *k.conntrack_max, tracked, s.capacity),
                   absl::StrFormat("sysctl -w net.netfilter.nf_conntrack_max=%u", tracked)});

  check_ports(k, "listen", s.listen_port, out);
  if (s.admin_port != s.listen_port) check_ports(k, "admin", s.admin_port, out);
  return out;
}

KernelFacts read_kernel_facts(const std::string& root) {
  KernelFacts k;
  k.somaxconn = read_one(root, "net.core.somaxconn");
  k.file_max = read_one(root, "fs.file-max");
  k.tcp_mem = read_fields(root, "net.ipv4.tcp_mem");
  k.conntrack_max = read_one(root, "net.netfilter.nf_conntrack_max");
  const auto range = read_fields(root, "net.ipv4.ip_local_port_range");
  if (range.size() == 2) {
    k.port_low = range[0];
    k.port_high = range[1];
  }
  std::string reserved;
  int error = 0;
  if (sysctl::read(root, "net.ipv4.ip_local_reserved_ports", reserved, error)) k.reserved_ports = reserved;
  const long page = sysconf(_SC_PAGESIZE);
  k.page_bytes = page > 0 ? static_cast<std::uint64_t>(page) : 4096;
  return k;
}

}  // namespace rg::server::preflight
