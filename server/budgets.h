// Kernel-wide budgets, sampled once a second (never per accept): system open
// files, TCP socket memory, and the process's own fds.  The main thread
// samples; workers and the admin listener read the published figures.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace rg::server {

enum class KernelBudget : std::uint8_t { files, tcp_memory, process_fds, count };

[[nodiscard]] const char* budget_name(KernelBudget b) noexcept;

struct KernelBudgets {
  struct Figure {
    std::atomic<std::uint64_t> used{0};
    std::atomic<std::uint64_t> limit{0};
  };
  std::array<Figure, static_cast<std::size_t>(KernelBudget::count)> figures;
  // Set when any figure is at or over kernel_refuse_percent: workers answer
  // new handshakes 503 while it holds.
  std::atomic<bool> refuse{false};
  // Highest utilisation across the figures, in permille.
  std::atomic<std::uint32_t> peak_permille{0};
};

// Reads the figures from /proc (files: /proc/sys/fs/file-nr; TCP memory:
// /proc/net/sockstat against the third value of net.ipv4.tcp_mem, in pages;
// process fds: /proc/self/fd against RLIMIT_NOFILE) and publishes them.
// Returns a one-line description of the budget closest to its limit.
std::string sample_kernel_budgets(KernelBudgets& budgets, std::uint32_t refuse_percent);

// The `index`-th whitespace-separated number in a /proc file, 0 if absent.
std::uint64_t read_proc_u64(const char* path, int index = 0);

}  // namespace rg::server
