// Admission bookkeeping (server/admission.h): refusal names, the per-IP sketch, admission at the upgrade.
#include "server/admission.h"

#include "server/counters.h"

#include <netinet/in.h>

#include <absl/hash/hash.h>

#include <cstring>
#include <string_view>

namespace rg::server {

const char* refusal_name(Refusal r) noexcept {
  switch (r) {
    case Refusal::bad_request: return "bad_request";
    case Refusal::not_found: return "not_found";
    case Refusal::method_not_allowed: return "method_not_allowed";
    case Refusal::timeout: return "timeout";
    case Refusal::too_large: return "too_large";
    case Refusal::upgrade_required: return "upgrade_required";
    case Refusal::http_version: return "http_version";
    case Refusal::max_connections: return "max_connections";
    case Refusal::table_full: return "table_full";
    case Refusal::kernel_budget: return "kernel_budget";
    case Refusal::per_ip: return "per_ip";
    case Refusal::accept_queue_full: return "accept_queue_full";
    case Refusal::accept_queue_timeout: return "accept_queue_timeout";
    case Refusal::busy: return "busy";
    case Refusal::buffered_bytes: return "buffered_bytes";
    case Refusal::shutdown: return "shutdown";
    case Refusal::tls_handshakes: return "tls_handshakes";
    case Refusal::proxy_header: return "proxy_header";
    case Refusal::proxy_untrusted: return "proxy_untrusted";
    case Refusal::unauthorized: return "unauthorized";
    case Refusal::other: return "other";
    case Refusal::count: break;
  }
  return "other";
}

Refusal refusal_for_status(std::uint16_t status) noexcept {
  switch (status) {
    case 400: return Refusal::bad_request;
    case 401: return Refusal::unauthorized;
    case 404: return Refusal::not_found;
    case 405: return Refusal::method_not_allowed;
    case 408: return Refusal::timeout;
    case 413:
    case 414:
    case 431: return Refusal::too_large;
    case 426: return Refusal::upgrade_required;
    case 505: return Refusal::http_version;
    default: return Refusal::other;
  }
}

void PerIpCounts::init(std::uint32_t workers) {
  workers_ = workers;
  counts_ = std::make_unique<std::atomic<std::uint32_t>[]>(std::size_t{workers} * 2 * buckets);
}

std::uint32_t PerIpCounts::key(const sockaddr_storage& addr) noexcept {
  // The 16-byte IPv6 form; IPv4 as ::ffff:a.b.c.d.
  std::array<std::uint8_t, 16> ip{};
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    ip[10] = ip[11] = 0xFF;
    std::memcpy(ip.data() + 12, &a.sin_addr, 4);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    std::memcpy(ip.data(), &a.sin6_addr, 16);
  }
  const std::uint64_t h =
      absl::Hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(ip.data()), ip.size()));
  const auto row0 = static_cast<std::uint32_t>(h) & (buckets - 1);
  const auto row1 = static_cast<std::uint32_t>(h >> 32) & (buckets - 1);
  return row0 | (row1 << 16);
}

std::uint32_t PerIpCounts::add(std::uint32_t worker, std::uint32_t key) noexcept {
  // Sequentially consistent (a locked add and plain loads on x86, the same
  // cost as relaxed): two workers adding at once each see the other's add.
  at(worker, 0, key & 0xFFFF).fetch_add(1);
  at(worker, 1, key >> 16).fetch_add(1);
  return estimate(key);
}

void PerIpCounts::remove(std::uint32_t worker, std::uint32_t key) noexcept {
  at(worker, 0, key & 0xFFFF).fetch_sub(1, std::memory_order_relaxed);
  at(worker, 1, key >> 16).fetch_sub(1, std::memory_order_relaxed);
}

std::uint32_t PerIpCounts::estimate(std::uint32_t key) const noexcept {
  std::uint32_t sum0 = 0;
  std::uint32_t sum1 = 0;
  for (std::uint32_t w = 0; w < workers_; ++w) {
    sum0 += at(w, 0, key & 0xFFFF).load();
    sum1 += at(w, 1, key >> 16).load();
  }
  return sum0 < sum1 ? sum0 : sum1;
}

const char* tls_failure_name(TlsFailure f) noexcept {
  switch (f) {
    case TlsFailure::not_tls: return "not_tls";
    case TlsFailure::plain_http: return "plain_http";
    case TlsFailure::handshake: return "handshake";
    case TlsFailure::bad_record: return "bad_record";
    case TlsFailure::protocol: return "protocol";
    case TlsFailure::truncated: return "truncated";
    case TlsFailure::no_memory: return "no_memory";
    case TlsFailure::input_overrun: return "input_overrun";
    case TlsFailure::count: break;
  }
  return "other";
}

const char* publish_refusal_name(PublishRefusal r) noexcept {
  switch (r) {
    case PublishRefusal::bad_request: return "bad_request";
    case PublishRefusal::unauthorized: return "unauthorized";
    case PublishRefusal::too_large: return "too_large";
    case PublishRefusal::mailbox_full: return "mailbox_full";
    case PublishRefusal::backplane_down: return "backplane_down";
    case PublishRefusal::backplane_timeout: return "backplane_timeout";
    case PublishRefusal::count: break;
  }
  return "other";
}

std::optional<Refusal> admit_upgrade(const UpgradeFigures& f) noexcept {
  if (f.kernel_refuse) return Refusal::kernel_budget;
  // Multiplied out, not divided: no rounding, and a budget of 0 refuses.
  if (f.buffered_bytes * 100 >= f.max_buffered_bytes * f.refuse_percent) return Refusal::buffered_bytes;
  if (f.open_connections > f.max_connections) return Refusal::max_connections;
  return std::nullopt;
}

}  // namespace rg::server
