// A client's address as a key, for what the admin listener limits per
// client: connections (admin_per_ip_limit) and wrong bearer tokens
// (control/auth_throttle.h).  IPv4 and IPv4-mapped IPv6 are the same client,
// as on the data path (server/admission.h).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

namespace rg::server {

struct PeerAddress {
  std::array<std::uint8_t, 16> bytes{};  // IPv6, IPv4 as ::ffff:a.b.c.d

  bool operator==(const PeerAddress&) const = default;

  static PeerAddress from(const sockaddr_storage& ss) noexcept {
    PeerAddress p;
    if (ss.ss_family == AF_INET) {
      p.bytes[10] = p.bytes[11] = 0xFF;
      std::memcpy(&p.bytes[12], &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
      std::memcpy(p.bytes.data(), &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, 16);
    }
    return p;
  }

  [[nodiscard]] std::string text() const {
    char out[INET6_ADDRSTRLEN] = {};
    static constexpr std::uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (std::memcmp(bytes.data(), v4_prefix, 12) == 0) inet_ntop(AF_INET, &bytes[12], out, sizeof out);
    else inet_ntop(AF_INET6, bytes.data(), out, sizeof out);
    return out;
  }
};

}  // namespace rg::server
