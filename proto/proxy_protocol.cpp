// PROXY protocol v2 (proto/proxy_protocol.h).
#include "proto/proxy_protocol.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace rg::proto::proxy {

namespace {

constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::string_view no_header = "no PROXY protocol v2 header from a balancer address (HAProxy: send-proxy-v2)";
constexpr std::string_view v1_refused =
    "PROXY protocol version 1 is not accepted: the balancer must send version 2 (HAProxy: send-proxy-v2)";
constexpr std::uint8_t transport_stream = 1;
constexpr std::uint8_t transport_dgram = 2;

// Address block bytes by family (section 2.2: IPv4 and IPv6 with ports,
// UNIX with two 108-byte paths).
constexpr std::size_t block_bytes(Family f) noexcept {
  switch (f) {
    case Family::unspec: return 0;
    case Family::inet: return 12;
    case Family::inet6: return 36;
    case Family::unix_socket: return 216;
  }
  return 0;
}

std::uint16_t be16(const std::uint8_t* p) noexcept { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

}  // namespace

Parser::Result Parser::fail(std::string_view reason, std::size_t consumed) noexcept {
  finished_ = true;
  error_reason_ = reason;
  return {Status::error, consumed};
}

bool Parser::check_fixed() noexcept {
  const std::uint8_t version = kept_[12] >> 4;
  const std::uint8_t command = kept_[12] & 0x0F;
  const std::uint8_t family = kept_[13] >> 4;
  const std::uint8_t transport = kept_[13] & 0x0F;
  if (version != 2) {
    error_reason_ = "PROXY protocol header: version is not 2";
    return false;
  }
  if (command > 1) {
    error_reason_ = "PROXY protocol header: command is neither LOCAL nor PROXY";
    return false;
  }
  if (family > 3) {
    error_reason_ = "PROXY protocol header: unknown address family";
    return false;
  }
  if (transport > transport_dgram) {
    error_reason_ = "PROXY protocol header: unknown transport protocol";
    return false;
  }
  header_.command = command == 0 ? Command::local : Command::proxy;
  header_.family = static_cast<Family>(family);
  if (header_.command == Command::proxy && transport == transport_dgram) {
    error_reason_ = "PROXY protocol header: a datagram (UDP) connection cannot be a WebSocket";
    return false;
  }
  const std::size_t length = be16(&kept_[14]);
  total_ = fixed_bytes + length;
  if (total_ > header_bytes_max) {
    error_reason_ = "PROXY protocol header longer than the 1024 bytes accepted";
    return false;
  }
  address_block_ = block_bytes(header_.family);
  if (length < address_block_) {
    error_reason_ = "PROXY protocol header: length shorter than its address family's address block";
    return false;
  }
  header_.tlv_bytes = static_cast<std::uint16_t>(length - address_block_);
  header_.has_source = header_.command == Command::proxy && transport == transport_stream &&
                       (header_.family == Family::inet || header_.family == Family::inet6);
  return true;
}

void Parser::read_addresses() noexcept {
  if (header_.family != Family::inet && header_.family != Family::inet6) return;
  const std::size_t n = header_.address_bytes();
  const std::uint8_t* p = &kept_[fixed_bytes];
  std::memcpy(header_.source_address.data(), p, n);
  std::memcpy(header_.destination_address.data(), p + n, n);
  header_.source_port = be16(p + 2 * n);
  header_.destination_port = be16(p + 2 * n + 2);
}

Parser::Result Parser::feed(std::span<const std::uint8_t> bytes) noexcept {
  assert(!finished_ && "feed() after complete or error");
  std::size_t i = 0;
  while (i < bytes.size()) {
    if (taken_ < fixed_bytes) {
      const std::uint8_t b = bytes[i];
      if (v1_taken_ != 0 || (taken_ == 0 && b != signature[0] && b == static_cast<std::uint8_t>(v1_prefix[0]))) {
        // Version 1 starts "PROXY "; decided once that is whole (an HTTP
        // "PUT" or "POST" is not version 1).
        if (b != static_cast<std::uint8_t>(v1_prefix[v1_taken_])) return fail(no_header, i + 1);
        ++i;
        if (++v1_taken_ == v1_prefix.size()) return fail(v1_refused, i);
        continue;
      }
      // Anything else from a balancer is a connection that lost its header,
      // or a balancer not sending one.
      if (taken_ < signature.size() && b != signature[taken_]) return fail(no_header, i + 1);
      kept_[taken_++] = b;
      ++i;
      if (taken_ == fixed_bytes && !check_fixed()) return fail(error_reason_, i);
    } else if (taken_ < fixed_bytes + address_block_) {
      const std::size_t n = std::min(bytes.size() - i, fixed_bytes + address_block_ - taken_);
      std::memcpy(&kept_[taken_], &bytes[i], n);
      taken_ += n;
      i += n;
      if (taken_ == fixed_bytes + address_block_) read_addresses();
    } else if (tlv_left_ != 0) {
      const std::size_t n = std::min(bytes.size() - i, tlv_left_);
      tlv_left_ -= n;
      taken_ += n;
      i += n;
    } else {
      // A TLV's 3-byte header: type, then a 16-bit length.
      const std::uint8_t b = bytes[i++];
      ++taken_;
      if (tlv_header_taken_ == 1) tlv_length_high_ = b;
      if (++tlv_header_taken_ == 3) {
        tlv_header_taken_ = 0;
        tlv_left_ = static_cast<std::size_t>((tlv_length_high_ << 8) | b);
        if (taken_ + tlv_left_ > total_) return fail("PROXY protocol header: a TLV runs past the header's end", i);
      }
    }
    if (taken_ >= fixed_bytes && taken_ == total_) {
      if (tlv_header_taken_ != 0) return fail("PROXY protocol header: a TLV is cut by the header's end", i);
      finished_ = true;
      return {Status::complete, i};
    }
  }
  return {Status::need_more, i};
}

bool looks_like_proxy(std::span<const std::uint8_t> bytes) noexcept {
  if (bytes.size() >= signature.size() && std::equal(signature.begin(), signature.end(), bytes.begin())) return true;
  return bytes.size() >= v1_prefix.size() &&
         std::equal(v1_prefix.begin(), v1_prefix.end(), bytes.begin(),
                    [](char c, std::uint8_t b) { return static_cast<std::uint8_t>(c) == b; });
}

std::size_t encode(const Header& h, std::span<const std::uint8_t> tlvs, std::span<std::uint8_t> out) noexcept {
  const std::size_t block = block_bytes(h.family);
  const std::size_t length = block + tlvs.size();
  if (length > 0xFFFF || out.size() < fixed_bytes + length) return 0;
  std::memcpy(out.data(), signature.data(), signature.size());
  out[12] = static_cast<std::uint8_t>(0x20 | (h.command == Command::proxy ? 1 : 0));
  const bool ip = h.family == Family::inet || h.family == Family::inet6;
  out[13] = static_cast<std::uint8_t>((static_cast<std::uint8_t>(h.family) << 4) | (ip ? transport_stream : 0));
  out[14] = static_cast<std::uint8_t>(length >> 8);
  out[15] = static_cast<std::uint8_t>(length);
  std::uint8_t* p = out.data() + fixed_bytes;
  std::memset(p, 0, block);
  if (ip) {
    const std::size_t n = h.address_bytes();
    std::memcpy(p, h.source_address.data(), n);
    std::memcpy(p + n, h.destination_address.data(), n);
    p[2 * n] = static_cast<std::uint8_t>(h.source_port >> 8);
    p[2 * n + 1] = static_cast<std::uint8_t>(h.source_port);
    p[2 * n + 2] = static_cast<std::uint8_t>(h.destination_port >> 8);
    p[2 * n + 3] = static_cast<std::uint8_t>(h.destination_port);
  }
  if (!tlvs.empty()) std::memcpy(p + block, tlvs.data(), tlvs.size());
  return fixed_bytes + length;
}

}  // namespace rg::proto::proxy
