// Echo payloads that prove themselves.  Each message carries the connection
// id and its sequence number; the rest is a pattern derived from both, so an
// echo can be checked byte for byte without keeping a copy of what was sent,
// and a wrong echo can be told apart as out of order (a valid message of this
// connection, but not the one expected) or corrupt.
//
//   binary: [u32 connection, little endian][u64 sequence][pattern bytes]
//   text:   [8 hex digits connection][12 hex digits sequence][pattern 'a'..'p']
// Text payloads stay ASCII, hence valid UTF-8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "tools/load/plan.h"

namespace rg::load::payload {

inline constexpr std::size_t binary_header_bytes = 12;
inline constexpr std::size_t text_header_bytes = 20;

[[nodiscard]] constexpr std::size_t header_bytes(PayloadKind kind) noexcept {
  return kind == PayloadKind::text ? text_header_bytes : binary_header_bytes;
}

namespace detail {

[[nodiscard]] constexpr std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Pattern word j (8 bytes) of message (connection, sequence).
[[nodiscard]] constexpr std::uint64_t word(std::uint64_t seed, std::uint64_t j) noexcept {
  return seed + j * 0x9E3779B97F4A7C15ull;
}

[[nodiscard]] constexpr std::uint64_t seed_of(std::uint32_t connection, std::uint64_t sequence) noexcept {
  return mix((std::uint64_t{connection} << 40) ^ sequence ^ 0x5DEECE66Dull);
}

// Byte `i` (from the payload start) of the message.
[[nodiscard]] inline std::uint8_t expected_byte(PayloadKind kind, std::uint32_t connection, std::uint64_t sequence,
                                                std::uint64_t seed, std::size_t i) noexcept {
  constexpr char hex[] = "0123456789abcdef";
  if (kind == PayloadKind::binary) {
    if (i < 4) return static_cast<std::uint8_t>(connection >> (8 * i));
    if (i < 12) return static_cast<std::uint8_t>(sequence >> (8 * (i - 4)));
    const std::uint64_t w = word(seed, (i - 12) / 8);
    return static_cast<std::uint8_t>(w >> (8 * ((i - 12) % 8)));
  }
  if (i < 8) return static_cast<std::uint8_t>(hex[(connection >> (4 * (7 - i))) & 0xF]);
  if (i < 20) return static_cast<std::uint8_t>(hex[(sequence >> (4 * (19 - i))) & 0xF]);
  const std::uint64_t w = word(seed, (i - 20) / 8);
  return static_cast<std::uint8_t>('a' + ((w >> (8 * ((i - 20) % 8))) & 0xF));
}

}  // namespace detail

// Writes message (connection, sequence) of out.size() bytes.
inline void fill(std::span<std::uint8_t> out, PayloadKind kind, std::uint32_t connection,
                 std::uint64_t sequence) noexcept {
  const std::uint64_t seed = detail::seed_of(connection, sequence);
  const std::size_t head = header_bytes(kind);
  std::size_t i = 0;
  for (; i < head && i < out.size(); ++i) out[i] = detail::expected_byte(kind, connection, sequence, seed, i);
  if (kind == PayloadKind::binary) {
    // Whole words at a time: the body is the little-endian pattern words.
    for (std::uint64_t j = 0; i + 8 <= out.size(); i += 8, ++j) {
      const std::uint64_t w = detail::word(seed, j);
      std::memcpy(out.data() + i, &w, 8);
    }
  }
  for (; i < out.size(); ++i) out[i] = detail::expected_byte(kind, connection, sequence, seed, i);
}

// True when `part` equals bytes [offset, offset + part.size()) of message
// (connection, sequence).
[[nodiscard]] inline bool matches(std::span<const std::uint8_t> part, PayloadKind kind, std::uint32_t connection,
                                  std::uint64_t sequence, std::size_t offset = 0) noexcept {
  const std::uint64_t seed = detail::seed_of(connection, sequence);
  std::size_t i = 0;
  if (kind == PayloadKind::binary) {
    const std::size_t head = binary_header_bytes;
    for (; i < part.size() && offset + i < head; ++i)
      if (part[i] != detail::expected_byte(kind, connection, sequence, seed, offset + i)) return false;
    // Aligned pattern words compare 8 bytes at a time.
    while (i < part.size() && (offset + i - head) % 8 != 0) {
      if (part[i] != detail::expected_byte(kind, connection, sequence, seed, offset + i)) return false;
      ++i;
    }
    for (; i + 8 <= part.size(); i += 8) {
      const std::uint64_t w = detail::word(seed, (offset + i - head) / 8);
      if (std::memcmp(part.data() + i, &w, 8) != 0) return false;
    }
  }
  for (; i < part.size(); ++i)
    if (part[i] != detail::expected_byte(kind, connection, sequence, seed, offset + i)) return false;
  return true;
}

// Reads (connection, sequence) back from a payload's header; false when the
// header is not well formed.
[[nodiscard]] inline bool read_ids(std::span<const std::uint8_t> payload, PayloadKind kind, std::uint32_t& connection,
                                   std::uint64_t& sequence) noexcept {
  if (payload.size() < header_bytes(kind)) return false;
  if (kind == PayloadKind::binary) {
    std::memcpy(&connection, payload.data(), 4);
    std::memcpy(&sequence, payload.data() + 4, 8);
    return true;
  }
  const auto nibble = [](std::uint8_t c, std::uint64_t& v) {
    if (c >= '0' && c <= '9') v = (v << 4) | static_cast<std::uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f') v = (v << 4) | static_cast<std::uint64_t>(c - 'a' + 10);
    else return false;
    return true;
  };
  std::uint64_t c = 0, s = 0;
  for (std::size_t i = 0; i < 8; ++i)
    if (!nibble(payload[i], c)) return false;
  for (std::size_t i = 8; i < 20; ++i)
    if (!nibble(payload[i], s)) return false;
  connection = static_cast<std::uint32_t>(c);
  sequence = s;
  return true;
}

enum class Check : std::uint8_t { ok, out_of_order, mismatch };

// Checks a whole echoed message against the one expected next.
[[nodiscard]] inline Check check(std::span<const std::uint8_t> payload, PayloadKind kind, std::size_t size,
                                 std::uint32_t connection, std::uint64_t expected_sequence) noexcept {
  if (payload.size() == size && matches(payload, kind, connection, expected_sequence)) return Check::ok;
  std::uint32_t c = 0;
  std::uint64_t s = 0;
  if (payload.size() == size && read_ids(payload, kind, c, s) && c == connection && s != expected_sequence &&
      matches(payload, kind, connection, s))
    return Check::out_of_order;
  return Check::mismatch;
}

}  // namespace rg::load::payload
