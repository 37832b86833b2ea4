#include "ring/ktls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rg::ring {

namespace {

// Closes on every way out of probe_ktls().
class ScopedFd {
 public:
  explicit ScopedFd(int fd) noexcept : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool ok() const noexcept { return fd_ >= 0; }

 private:
  int fd_;
};

// The loopback pair failed at `step`: the kernel's TLS was never asked.
KtlsProbe unknown_at(std::string_view step, int error) {
  KtlsProbe p;
  p.state = Ktls::unknown;
  p.error = error;
  p.step = step;
  p.reason = "kernel TLS not probed: " + std::string(step) + " on 127.0.0.1 failed: " + std::strerror(error);
  return p;
}

}  // namespace

std::string_view ktls_text(Ktls k) noexcept {
  switch (k) {
    case Ktls::available: return "available";
    case Ktls::unavailable: return "unavailable";
    case Ktls::unknown: return "unknown";
  }
  return "unknown";
}

std::string ktls_refusal_reason(int error) {
  switch (error) {
    // tcp_set_ulp(): no registered ULP of that name, and either no module or
    // no CAP_NET_ADMIN to load it.
    case ENOENT: return "the kernel has no tls module (modprobe tls; only CAP_NET_ADMIN loads it on demand)";
    // Kernels before 4.13 have no TCP_ULP at all.
    case ENOPROTOOPT: return "the kernel has no TCP_ULP socket option (kernel TLS needs Linux 4.13, TLS 1.3 5.1)";
    // tls_init(): the ULP attaches only to an established socket.
    case ENOTCONN: return "the kernel refused tls on a socket that is not connected";
    case EEXIST: return "the socket already has an upper-layer protocol";
    case EPERM:
    case EACCES: return "the kernel refused tls to this process (a seccomp or LSM policy?)";
    default: break;
  }
  return std::string("setsockopt(TCP_ULP, \"tls\") failed: ") + std::strerror(error);
}

KtlsProbe probe_ktls() {
  // All three descriptors are ScopedFd: each return closes what exists.
  ScopedFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.ok()) return unknown_at("socket", errno);

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // ephemeral: never collides with a running server
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return unknown_at("bind", errno);
  if (::listen(listener.get(), 1) != 0) return unknown_at("listen", errno);
  socklen_t addr_len = sizeof addr;
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0)
    return unknown_at("getsockname", errno);

  ScopedFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!client.ok()) return unknown_at("socket", errno);
  // Loopback completes the handshake inside connect(), so once it returns
  // the connection waits in the accept queue and accept() does not block.
  if (::connect(client.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return unknown_at("connect", errno);

  int accepted_fd = -1;
  do {
    accepted_fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
  } while (accepted_fd < 0 && errno == EINTR);
  ScopedFd accepted(accepted_fd);
  if (!accepted.ok()) return unknown_at("accept", errno);

  // The server's side, as the server would do it.  sizeof "tls" counts the
  // NUL; the kernel reads at most TCP_ULP_NAME_MAX bytes up to it.
  static constexpr char ulp_name[] = "tls";
  if (::setsockopt(accepted.get(), SOL_TCP, TCP_ULP, ulp_name, sizeof ulp_name) != 0) {
    const int error = errno;
    KtlsProbe p;
    p.state = Ktls::unavailable;
    p.error = error;
    p.step = "setsockopt(TCP_ULP)";
    p.reason = ktls_refusal_reason(error);
    return p;
  }
  KtlsProbe p;
  p.state = Ktls::available;
  return p;
}

}  // namespace rg::ring
