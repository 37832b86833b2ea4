// The PROXY protocol, version 2 (HAProxy's proxy-protocol.txt, section 2.2):
// the binary header an L4 balancer (HAProxy `send-proxy-v2`) puts before a
// client's first byte, saying whose connection it is.  Pure: bytes in, a
// verdict out.  The server reads it only on connections from addresses it
// is told are balancers, so per-IP limits, logs and the registry see the
// client instead of the balancer.
//
// The parser can be fed any split of the header.  It keeps the fixed part
// and the address block (at most 16 + 216 bytes) and skips TLVs after
// checking that they tile the rest of the header; it never reads past the
// header's end, so the bytes after `consumed` belong to the client's stream.
// Version 1 (the text form) is refused with a reason that says so.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace rg::proto::proxy {

// The 12 bytes every version 2 header starts with.
inline constexpr std::array<std::uint8_t, 12> signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
inline constexpr std::size_t fixed_bytes = 16;  // signature, version/command, family, length
// The longest header accepted: the address block of any family plus TLVs
// (HAProxy sends ALPN, authority, unique id, SSL and CRC TLVs: well under
// 1 KiB).  A longer header is refused; the spec's own bound (64 KiB) would
// let every balancer connection make the worker skip 64 KiB.
inline constexpr std::size_t header_bytes_max = 1024;

enum class Command : std::uint8_t { local, proxy };
enum class Family : std::uint8_t { unspec, inet, inet6, unix_socket };

// A parsed header.  `has_source` only for PROXY over TCP from an IPv4 or
// IPv6 client; LOCAL (the balancer's own health checks), UNSPEC and UNIX
// say nothing about a client, and the connection keeps its TCP peer.
struct Header {
  Command command = Command::local;
  Family family = Family::unspec;
  bool has_source = false;
  // The client's address: 4 bytes (IPv4) or 16 (IPv6) in network order,
  // then its port.  The destination is what the balancer was asked for.
  std::array<std::uint8_t, 16> source_address{};
  std::uint16_t source_port = 0;
  std::array<std::uint8_t, 16> destination_address{};
  std::uint16_t destination_port = 0;
  std::uint16_t tlv_bytes = 0;
  [[nodiscard]] std::size_t address_bytes() const noexcept { return family == Family::inet6 ? 16 : 4; }
};

class Parser {
 public:
  enum class Status : std::uint8_t { need_more, complete, error };
  struct Result {
    Status status;
    std::size_t consumed;  // bytes of this feed() that belong to the header
  };

  // Feeds the next bytes.  On `complete`, header() is valid and the bytes
  // after `consumed` are the client's.  On `error`, error_reason() says what
  // was wrong (the server answers 400 with it and closes).  Feeding after
  // complete or error is a programmer error.
  [[nodiscard]] Result feed(std::span<const std::uint8_t> bytes) noexcept;

  [[nodiscard]] const Header& header() const noexcept { return header_; }
  [[nodiscard]] std::string_view error_reason() const noexcept { return error_reason_; }
  // Header bytes taken so far.
  [[nodiscard]] std::size_t taken() const noexcept { return taken_; }

 private:
  Result fail(std::string_view reason, std::size_t consumed) noexcept;
  [[nodiscard]] bool check_fixed() noexcept;
  void read_addresses() noexcept;

  std::array<std::uint8_t, fixed_bytes + 216> kept_{};  // fixed part, then the address block
  std::size_t taken_ = 0;
  std::uint8_t v1_taken_ = 0;  // bytes of "PROXY " matched: a version 1 header, refused once whole
  std::size_t total_ = 0;  // fixed_bytes + length, once the fixed part is in
  std::size_t address_block_ = 0;
  // TLV walk over the bytes after the address block: a TLV header is 3
  // bytes (type, length); tlv_left_ is what remains of the current value.
  std::uint8_t tlv_header_taken_ = 0;
  std::uint8_t tlv_length_high_ = 0;
  std::size_t tlv_left_ = 0;
  bool finished_ = false;
  Header header_;
  std::string_view error_reason_;
};

// True when `bytes` (a connection's first bytes, any length) begin like a
// PROXY header of either version, as far as they go: what a connection
// from an address that is not a balancer gets refused for.
[[nodiscard]] bool looks_like_proxy(std::span<const std::uint8_t> bytes) noexcept;

// Writes a version 2 header for `h` (no TLVs unless tlvs is non-empty,
// copied after the addresses) into `out`; returns its length, or 0 when
// `out` is too small.  For tests, fuzzing and the load tool.
[[nodiscard]] std::size_t encode(const Header& h, std::span<const std::uint8_t> tlvs,
                                 std::span<std::uint8_t> out) noexcept;

}  // namespace rg::proto::proxy
