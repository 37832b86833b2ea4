// Whether this kernel can do TLS records itself (kernel TLS, "kTLS"): the
// `tls` upper-layer protocol that setsockopt(SOL_TCP, TCP_ULP, "tls")
// attaches to an established TCP socket, after which SOL_TLS TLS_TX/TLS_RX
// take the keys (proto/tls_key_schedule.h builds them).
//
// The probe is the attach itself, on a throwaway loopback pair, because
// nothing else answers truthfully: /proc/modules misses a built-in tls, and
// a module that is present on disk is only autoloaded for CAP_NET_ADMIN.
// It runs once at start-up, blocks briefly, allocates, and closes every
// descriptor it opened, whatever happens.  Not for the data path.
//
// Here, in ring/ rather than tooling/, so that server/ can ask it too: the
// workers are the ones that would offload.  Their accepted sockets are
// direct descriptors, so the offload itself will need
// SOCKET_URING_OP_SETSOCKOPT (6.7) rather than setsockopt(2).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rg::ring {

enum class Ktls : std::uint8_t {
  available,    // TCP_ULP "tls" attached
  unavailable,  // the kernel refused it; `error` and `reason` say why
  unknown,      // the loopback pair could not be made, so the kernel was never asked
};

struct KtlsProbe {
  Ktls state = Ktls::unknown;
  int error = 0;          // errno of the step that failed; 0 when available
  std::string_view step;  // that step: "socket", "bind", ..., "setsockopt(TCP_ULP)"; empty when available
  std::string reason;     // a sentence for the start-up log; empty when available

  [[nodiscard]] bool available() const noexcept { return state == Ktls::available; }
};

[[nodiscard]] KtlsProbe probe_ktls();

// Why setsockopt(TCP_ULP, "tls") failed with `error`, as a sentence that
// names the fix where there is one.  Pure, for the probe and its tests.
[[nodiscard]] std::string ktls_refusal_reason(int error);

[[nodiscard]] std::string_view ktls_text(Ktls k) noexcept;  // "available", ...

}  // namespace rg::ring
