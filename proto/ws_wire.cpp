// Session-less WebSocket byte work: client pongs, a lone client close, the
// peer's close after ours, server close frames, and the frame splitter.
#include "proto/ws_wire.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>

namespace rg::proto::ws {

namespace {

// A complete client control frame of `opcode` at the start of `bytes`, as the
// session would accept it: FIN, RSV 0, masked, payload <= 125 bytes.  Returns
// its decoded header, or nullopt.
std::optional<FrameHeader> client_control_frame(std::span<const std::uint8_t> bytes, Opcode opcode) noexcept {
  const DecodeResult d = decode_header(bytes);
  const FrameHeader& h = d.header;
  if (d.status != DecodeStatus::ok || h.opcode != static_cast<std::uint8_t>(opcode) || !h.fin || !h.masked ||
      h.rsv != 0 || h.payload_len > control_payload_max || h.header_len + h.payload_len > bytes.size())
    return std::nullopt;
  return h;
}

std::size_t frame_bytes(const FrameHeader& h) noexcept {
  // Only called for frames already known to lie within a buffer.
  return static_cast<std::size_t>(h.header_len + h.payload_len);
}

// How many bytes the header that `partial` begins occupies once complete, as
// its second byte says (2 until that byte is in).
std::size_t header_bytes_needed(std::span<const std::uint8_t> partial) noexcept {
  if (partial.size() < 2) return 2;
  const std::uint8_t len7 = partial[1] & 0x7F;
  return 2 + (len7 == 126 ? 2u : len7 == 127 ? 8u : 0u) + ((partial[1] & 0x80) ? 4u : 0u);
}

}  // namespace

std::size_t client_pong_bytes(std::span<const std::uint8_t> bytes) noexcept {
  const std::optional<FrameHeader> h = client_control_frame(bytes, Opcode::pong);
  return h ? frame_bytes(*h) : 0;
}

PongPrefix leading_client_pongs(std::span<const std::uint8_t> bytes) noexcept {
  PongPrefix p;
  // A pong is at least 6 bytes (2 header + 4 mask), so this ends.
  while (const std::size_t n = client_pong_bytes(bytes.subspan(p.bytes))) {
    ++p.pongs;
    p.bytes += n;
  }
  return p;
}

LoneClose parse_lone_close(std::span<const std::uint8_t> bytes) noexcept {
  const PongPrefix pongs = leading_client_pongs(bytes);
  const std::span<const std::uint8_t> rest = bytes.subspan(pongs.bytes);
  const std::optional<FrameHeader> h = client_control_frame(rest, Opcode::close);
  if (!h || frame_bytes(*h) != rest.size()) return {};  // not a close, or something follows it
  std::array<std::uint8_t, control_payload_max> payload;
  const auto n = static_cast<std::size_t>(h->payload_len);
  std::memcpy(payload.data(), rest.data() + h->header_len, n);
  mask_bytes({payload.data(), n}, h->mask_key);
  // A bad code or reason is the session's to answer, with 1002 or 1007.
  if (check_close_payload({payload.data(), n}) != ClosePayloadError::none) return {};
  LoneClose c{true, pongs.pongs, std::nullopt};
  if (n >= 2) c.code = static_cast<std::uint16_t>((payload[0] << 8) | payload[1]);
  return c;
}

CloseScan scan_for_close(std::span<const std::uint8_t> bytes) noexcept {
  while (!bytes.empty()) {
    const DecodeResult d = decode_header(bytes);
    if (d.status == DecodeStatus::need_more) return CloseScan::incomplete;
    if (d.status == DecodeStatus::bad_length) return CloseScan::malformed;
    if (d.header.opcode == static_cast<std::uint8_t>(Opcode::close)) return CloseScan::close_found;
    if (d.header.header_len + d.header.payload_len > bytes.size()) return CloseScan::incomplete;
    bytes = bytes.subspan(frame_bytes(d.header));
  }
  return CloseScan::no_close;
}

std::size_t build_close_frame(std::span<std::uint8_t> out, std::uint16_t code, std::string_view reason) noexcept {
  assert(reason.size() <= close_reason_bytes_max && "a close reason must fit a control frame");
  const std::size_t n = close_frame_bytes(reason);
  if (reason.size() > close_reason_bytes_max || out.size() < n) return 0;
  out[0] = 0x80 | static_cast<std::uint8_t>(Opcode::close);  // FIN, unmasked: servers never mask
  out[1] = static_cast<std::uint8_t>(2 + reason.size());      // <= 125: no extended length
  out[2] = static_cast<std::uint8_t>(code >> 8);
  out[3] = static_cast<std::uint8_t>(code & 0xFF);
  if (!reason.empty()) std::memcpy(out.data() + 4, reason.data(), reason.size());
  return n;
}

std::size_t build_close_echo(std::span<std::uint8_t> out, std::optional<std::uint16_t> code) noexcept {
  if (code) return build_close_frame(out, *code, {});
  if (out.size() < 2) return 0;
  out[0] = 0x80 | static_cast<std::uint8_t>(Opcode::close);
  out[1] = 0;
  return 2;
}

FrameSplitter::Next FrameSplitter::next(std::span<const std::uint8_t> data) noexcept {
  if (data.empty()) return {};  // need_more, nothing consumed
  if (carry_len_ == 0) {
    const DecodeResult d = decode_header(data);
    if (d.status == DecodeStatus::bad_length) return {SplitStatus::bad_length, {}, {}, 0};
    if (d.status == DecodeStatus::ok) {
      const std::uint64_t total = d.header.header_len + d.header.payload_len;
      if (total <= data.size()) {
        return {SplitStatus::frame, d.header,
                data.subspan(d.header.header_len, static_cast<std::size_t>(d.header.payload_len)),
                static_cast<std::size_t>(total)};
      }
      if (total > carry_.size()) return {SplitStatus::too_large, {}, {}, 0};
    }
    // A partial frame (fewer bytes than one frame, which fits the carry) or a
    // partial header (fewer than header_size_max bytes) waits in the carry.
    if (data.size() > carry_.size()) return {SplitStatus::too_large, {}, {}, 0};  // a carry too small for a header
    std::memcpy(carry_.data(), data.data(), data.size());
    carry_len_ = static_cast<std::uint32_t>(data.size());
    return {SplitStatus::need_more, {}, {}, data.size()};
  }
  // Top the carry up to the end of what is known of the frame: first its
  // header (whose length its second byte says), then its payload.
  std::size_t consumed = 0;
  for (;;) {
    const std::span<const std::uint8_t> have{carry_.data(), carry_len_};
    const DecodeResult d = decode_header(have);
    if (d.status == DecodeStatus::bad_length) return {SplitStatus::bad_length, {}, {}, consumed};
    const std::uint64_t target =
        d.status == DecodeStatus::ok ? d.header.header_len + d.header.payload_len : header_bytes_needed(have);
    if (target > carry_.size()) return {SplitStatus::too_large, {}, {}, consumed};
    // The carry never runs past the frame's end: the next frame starts in a read.
    assert(carry_len_ <= target);
    if (d.status == DecodeStatus::ok && carry_len_ == target) {
      carry_len_ = 0;  // the bytes stay put until the next call writes the carry
      return {SplitStatus::frame, d.header,
              std::span<const std::uint8_t>{carry_.data() + d.header.header_len,
                                            static_cast<std::size_t>(d.header.payload_len)},
              consumed};
    }
    if (consumed == data.size()) return {SplitStatus::need_more, {}, {}, consumed};
    const std::size_t take = std::min(static_cast<std::size_t>(target - carry_len_), data.size() - consumed);
    std::memcpy(carry_.data() + carry_len_, data.data() + consumed, take);
    carry_len_ += static_cast<std::uint32_t>(take);
    consumed += take;
  }
}

}  // namespace rg::proto::ws
