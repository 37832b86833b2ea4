// Kernel budgets (server/budgets.h): sampling file-nr, sockstat and tcp_mem for admission.
#include "server/budgets.h"

#include <dirent.h>
#include <sys/resource.h>

#include <absl/strings/str_format.h>

#include <fstream>
#include <sstream>

namespace rg::server {

namespace {

// "TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 1" -> the value after "mem".
std::uint64_t sockstat_tcp_mem_pages() {
  std::ifstream in("/proc/net/sockstat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("TCP:", 0) != 0) continue;
    std::istringstream words(line);
    std::string w;
    while (words >> w) {
      if (w == "mem") {
        std::uint64_t v = 0;
        words >> v;
        return v;
      }
    }
  }
  return 0;
}

std::uint64_t open_fds() {
  std::uint64_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (const dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n > 0 ? n - 1 : 0;  // the directory stream itself
}

}  // namespace

std::uint64_t read_proc_u64(const char* path, int index) {
  std::ifstream in(path);
  std::uint64_t v = 0;
  for (int i = 0; i <= index && (in >> v); ++i) {
  }
  return in ? v : 0;
}

const char* budget_name(KernelBudget b) noexcept {
  switch (b) {
    case KernelBudget::files: return "files";
    case KernelBudget::tcp_memory: return "tcp_memory_pages";
    case KernelBudget::process_fds: return "process_fds";
    case KernelBudget::count: break;
  }
  return "?";
}

std::string sample_kernel_budgets(KernelBudgets& b, std::uint32_t refuse_percent) {
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  const std::uint64_t used[] = {
      read_proc_u64("/proc/sys/fs/file-nr", 0),  // allocated file handles
      sockstat_tcp_mem_pages(),
      open_fds(),
  };
  const std::uint64_t limit[] = {
      read_proc_u64("/proc/sys/fs/file-nr", 2),  // fs.file-max
      read_proc_u64("/proc/sys/net/ipv4/tcp_mem", 2),  // above it the kernel drops
      static_cast<std::uint64_t>(nofile.rlim_cur),
  };
  std::uint32_t peak = 0;
  std::size_t peak_at = 0;
  bool refuse = false;
  for (std::size_t i = 0; i < b.figures.size(); ++i) {
    b.figures[i].used.store(used[i], std::memory_order_relaxed);
    b.figures[i].limit.store(limit[i], std::memory_order_relaxed);
    if (limit[i] == 0) continue;  // unreadable here: not watched
    const auto permille = static_cast<std::uint32_t>(std::min<std::uint64_t>(used[i] * 1000 / limit[i], 1000));
    if (permille >= peak) {
      peak = permille;
      peak_at = i;
    }
    if (used[i] * 100 >= limit[i] * refuse_percent) refuse = true;
  }
  b.peak_permille.store(peak, std::memory_order_relaxed);
  b.refuse.store(refuse, std::memory_order_relaxed);
  return absl::StrFormat("%s %d of %d (%.1f%%)", budget_name(static_cast<KernelBudget>(peak_at)), used[peak_at],
                         limit[peak_at], peak / 10.0);
}

}  // namespace rg::server
