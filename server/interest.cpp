#include "server/interest.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace rg::server {

Interest::Interest() : event_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

Interest::~Interest() {
  if (event_fd_ >= 0) close(event_fd_);
}

void Interest::note(Kind kind, int delta, std::string_view name) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> hold(lock_);
    wake = pending_.empty();
    pending_.push_back({kind, delta, std::string(name)});
  }
  if (wake && event_fd_ >= 0) {
    const std::uint64_t one = 1;
    (void)!write(event_fd_, &one, sizeof one);
  }
}

void Interest::take(std::vector<Event>& out) {
  out.clear();
  std::uint64_t count = 0;
  if (event_fd_ >= 0) (void)!read(event_fd_, &count, sizeof count);
  std::lock_guard<std::mutex> hold(lock_);
  out.swap(pending_);
}

}  // namespace rg::server
