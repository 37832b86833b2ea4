// Small helpers shared by the unit tests: byte strings, hex dumps for failure
// messages, and client frame construction.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/ws_frame.h"

namespace rg::test {

using Bytes = std::vector<std::uint8_t>;

inline Bytes bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

inline std::string str(std::span<const std::uint8_t> b) { return std::string(b.begin(), b.end()); }

inline std::string hex(std::span<const std::uint8_t> b, std::size_t max = 64) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < b.size() && i < max; ++i) {
    if (i) out += ' ';
    out += digits[b[i] >> 4];
    out += digits[b[i] & 0xF];
  }
  if (b.size() > max) out += " ... (" + std::to_string(b.size()) + " bytes)";
  return out;
}

inline void append(Bytes& to, std::span<const std::uint8_t> from) { to.insert(to.end(), from.begin(), from.end()); }

inline constexpr std::array<std::uint8_t, 4> default_mask{0x37, 0xFA, 0x21, 0x3D};

// A frame as a client would put it on the wire.  `opcode` is raw so that
// reserved opcodes can be produced; `rsv` lands in bits 4..6 of byte 0.
struct FrameSpec {
  std::uint8_t opcode = 0x1;
  bool fin = true;
  Bytes payload;
  bool masked = true;
  std::uint8_t rsv = 0;
  std::array<std::uint8_t, 4> mask = default_mask;
};

inline Bytes encode_frame(const FrameSpec& f) {
  std::array<std::uint8_t, proto::ws::header_size_max> header{};
  const std::size_t n = proto::ws::encode_header(header, static_cast<proto::ws::Opcode>(f.opcode), f.fin,
                                                 f.payload.size(), f.masked ? f.mask.data() : nullptr);
  header[0] = static_cast<std::uint8_t>(header[0] | (f.rsv << 4));
  Bytes out(header.begin(), header.begin() + static_cast<std::ptrdiff_t>(n));
  Bytes payload = f.payload;
  if (f.masked) proto::ws::mask_bytes(payload, f.mask);
  append(out, payload);
  return out;
}

inline FrameSpec text(std::string_view s, bool fin = true) { return {0x1, fin, bytes(s)}; }
inline FrameSpec binary(Bytes b, bool fin = true) { return {0x2, fin, std::move(b)}; }
inline FrameSpec cont(std::string_view s, bool fin = true) { return {0x0, fin, bytes(s)}; }
inline FrameSpec ping(std::string_view s) { return {0x9, true, bytes(s)}; }
inline FrameSpec pong(std::string_view s) { return {0xA, true, bytes(s)}; }
inline FrameSpec close_frame(Bytes payload) { return {0x8, true, std::move(payload)}; }
inline Bytes close_payload(std::uint16_t code, std::string_view reason = {}) {
  Bytes b{static_cast<std::uint8_t>(code >> 8), static_cast<std::uint8_t>(code)};
  append(b, bytes(reason));
  return b;
}
inline FrameSpec close_frame(std::uint16_t code, std::string_view reason = {}) {
  return close_frame(close_payload(code, reason));
}
inline FrameSpec unmasked(FrameSpec f) {
  f.masked = false;
  return f;
}
inline FrameSpec with_rsv(FrameSpec f, std::uint8_t rsv) {
  f.rsv = rsv;
  return f;
}

}  // namespace rg::test
