// Start-up preflight: the kernel against this server's configuration.
// Each finding is one warning that carries the exact command that fixes it;
// --strict-preflight turns any finding into a refusal to start.  The
// thresholds are the capacity model's (capacity_model.h), the same figures
// `ringgate tune plan` recommends.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rg::server::preflight {

// What the checks read from the kernel; nullopt/empty where unreadable here
// (a key kept by the initial network namespace, conntrack not loaded).
struct KernelFacts {
  std::optional<std::uint64_t> somaxconn;
  std::optional<std::uint64_t> file_max;
  std::vector<std::uint64_t> tcp_mem;  // pages: low, pressure, high
  std::optional<std::uint64_t> conntrack_max;
  std::optional<std::uint64_t> port_low;  // net.ipv4.ip_local_port_range
  std::optional<std::uint64_t> port_high;
  std::string reserved_ports;  // net.ipv4.ip_local_reserved_ports, e.g. "8080,9000-9010"
  std::uint64_t page_bytes = 4096;
};

// What the server has settled on by the time it checks.
struct ServerFacts {
  std::uint64_t backlog = 0;
  std::uint16_t listen_port = 0;  // 0: the kernel picks (from the ephemeral range)
  std::uint16_t admin_port = 0;   // 0: picked, or no admin listener
  std::uint64_t capacity = 0;     // connections the process will hold
  std::uint32_t workers = 0;
  std::uint32_t cpus = 1;
  std::uint64_t nofile_soft = 0;
  std::uint64_t nofile_hard = 0;
  std::uint64_t reserved_slots = 0;  // configured, per worker
};

struct Finding {
  std::string what;
  std::string fix;  // a command an operator can run as it is
};

// Pure: the findings for these facts, in a fixed order.
[[nodiscard]] std::vector<Finding> check(const KernelFacts& kernel, const ServerFacts& server);

// Reads KernelFacts from /proc/sys under `root`.
[[nodiscard]] KernelFacts read_kernel_facts(const std::string& root = "/proc/sys");

// Whether `port` is in an ip_local_reserved_ports list ("8080,9000-9010").
[[nodiscard]] bool port_reserved(const std::string& list, std::uint16_t port);

}  // namespace rg::server::preflight
