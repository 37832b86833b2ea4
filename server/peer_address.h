// A client's address as a key, and ranges of addresses.  The key is what the
// admin listener limits per client (admin_per_ip_limit, control/
// auth_throttle.h); the ranges say which peers are balancers whose PROXY
// protocol header is believed (proxy_protocol_from).  IPv4 and IPv4-mapped
// IPv6 are the same client, as on the data path (server/admission.h).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rg::server {

struct PeerAddress {
  std::array<std::uint8_t, 16> bytes{};  // IPv6, IPv4 as ::ffff:a.b.c.d

  bool operator==(const PeerAddress&) const = default;

  static PeerAddress from(const sockaddr_storage& ss) noexcept {
    PeerAddress p;
    if (ss.ss_family == AF_INET) {
      p = v4(&reinterpret_cast<const sockaddr_in&>(ss).sin_addr);
    } else if (ss.ss_family == AF_INET6) {
      std::memcpy(p.bytes.data(), &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, 16);
    }
    return p;
  }

  // From 4 bytes of IPv4 address in network order.
  static PeerAddress v4(const void* four) noexcept {
    PeerAddress p;
    p.bytes[10] = p.bytes[11] = 0xFF;
    std::memcpy(&p.bytes[12], four, 4);
    return p;
  }

  // The same address as a socket address (port 0): what PerIpCounts keys.
  [[nodiscard]] sockaddr_storage storage() const noexcept {
    sockaddr_storage ss{};
    if (is_v4()) {
      auto& a = reinterpret_cast<sockaddr_in&>(ss);
      a.sin_family = AF_INET;
      std::memcpy(&a.sin_addr, &bytes[12], 4);
    } else {
      auto& a = reinterpret_cast<sockaddr_in6&>(ss);
      a.sin6_family = AF_INET6;
      std::memcpy(&a.sin6_addr, bytes.data(), 16);
    }
    return ss;
  }

  [[nodiscard]] bool is_v4() const noexcept {
    static constexpr std::uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    return std::memcmp(bytes.data(), v4_prefix, 12) == 0;
  }

  [[nodiscard]] std::string text() const {
    char out[INET6_ADDRSTRLEN] = {};
    if (is_v4()) inet_ntop(AF_INET, &bytes[12], out, sizeof out);
    else inet_ntop(AF_INET6, bytes.data(), out, sizeof out);
    return out;
  }
};

// A CIDR range: "10.0.0.0/8", "2001:db8::/32", or one address (all bits).
// IPv4 ranges are kept as their IPv4-mapped IPv6 form, so an IPv4 balancer
// reaching a dual-stack listener still matches.
struct AddressRange {
  PeerAddress prefix;
  std::uint8_t bits = 128;  // of the 16-byte form

  [[nodiscard]] bool contains(const PeerAddress& a) const noexcept {
    const std::size_t whole = bits / 8;
    if (std::memcmp(a.bytes.data(), prefix.bytes.data(), whole) != 0) return false;
    if (bits % 8 == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xFF << (8 - bits % 8));
    return (a.bytes[whole] & mask) == (prefix.bytes[whole] & mask);
  }

  // Parses one range; false with `error` naming what is wrong.  Host bits
  // set under the mask are refused (a typo such as 10.0.0.1/8 is more likely
  // than a wish to write the network that way).
  static bool parse(std::string_view text, AddressRange& out, std::string& error) {
    // Reserved, then appended: GCC 12 at -O3 warns (-Wrestrict, falsely)
    // on std::string concatenations that may reallocate here.
    const auto fail = [&](std::string_view why) {
      error.clear();
      error.reserve(text.size() + why.size() + 2);
      error.push_back('\'');
      error.append(text.data(), text.size());
      error.push_back('\'');
      error.append(why.data(), why.size());
      return false;
    };
    std::string_view addr = text;
    int prefix_bits = -1;
    if (const std::size_t slash = text.find('/'); slash != std::string_view::npos) {
      addr = text.substr(0, slash);
      const std::string_view digits = text.substr(slash + 1);
      prefix_bits = 0;
      if (digits.empty() || digits.size() > 3) prefix_bits = -2;
      for (const char c : digits) {
        if (c < '0' || c > '9') prefix_bits = -2;
        if (prefix_bits >= 0) prefix_bits = prefix_bits * 10 + (c - '0');
      }
      if (prefix_bits == -2) return fail(": the prefix length after '/' must be a number");
    }
    const std::string host(addr);
    std::uint8_t raw[16];
    AddressRange r;
    if (inet_pton(AF_INET, host.c_str(), raw) == 1) {
      if (prefix_bits > 32) return fail(": an IPv4 prefix is at most 32 bits");
      r.prefix = PeerAddress::v4(raw);
      r.bits = static_cast<std::uint8_t>(prefix_bits < 0 ? 128 : 96 + prefix_bits);
    } else if (inet_pton(AF_INET6, host.c_str(), raw) == 1) {
      if (prefix_bits > 128) return fail(": an IPv6 prefix is at most 128 bits");
      std::memcpy(r.prefix.bytes.data(), raw, 16);
      r.bits = static_cast<std::uint8_t>(prefix_bits < 0 ? 128 : prefix_bits);
    } else {
      return fail(" is not an IPv4 or IPv6 address or CIDR range");
    }
    for (std::size_t bit = r.bits; bit < 128; ++bit) {
      if (r.prefix.bytes[bit / 8] & (0x80 >> (bit % 8))) return fail(" has address bits set beyond its prefix length");
    }
    out = r;
    return true;
  }
};

[[nodiscard]] inline bool any_contains(std::span<const AddressRange> ranges, const PeerAddress& a) noexcept {
  for (const AddressRange& r : ranges)
    if (r.contains(a)) return true;
  return false;
}

}  // namespace rg::server
