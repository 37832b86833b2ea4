#include "proto/ws_frame.h"

#include <algorithm>
#include <cstring>

#include "proto/utf8.h"

namespace rg::proto::ws {

DecodeResult decode_header(std::span<const std::uint8_t> bytes) noexcept {
  DecodeResult r{DecodeStatus::need_more, {}};
  if (bytes.size() < 2) return r;
  FrameHeader& h = r.header;
  h.fin = (bytes[0] & 0x80) != 0;
  h.rsv = static_cast<std::uint8_t>((bytes[0] >> 4) & 0x7);
  h.opcode = bytes[0] & 0x0F;
  h.masked = (bytes[1] & 0x80) != 0;
  const std::uint8_t len7 = bytes[1] & 0x7F;
  // A bad length is reported as soon as the length bytes are here, before
  // the mask key: it can never become a valid header.
  if (bytes.size() < 2 + (len7 == 126 ? 2u : len7 == 127 ? 8u : 0u)) return r;
  std::size_t at = 2;
  if (len7 == 126) {
    h.payload_len = (std::uint64_t{bytes[2]} << 8) | bytes[3];
    at = 4;
    if (h.payload_len < 126) return {DecodeStatus::bad_length, h};
  } else if (len7 == 127) {
    h.payload_len = 0;
    for (int i = 0; i < 8; ++i) h.payload_len = (h.payload_len << 8) | bytes[2 + i];
    at = 10;
    if ((h.payload_len >> 63) != 0 || h.payload_len <= 0xFFFF) return {DecodeStatus::bad_length, h};
  } else {
    h.payload_len = len7;
  }
  if (bytes.size() < at + (h.masked ? 4 : 0)) return r;
  if (h.masked) {
    std::memcpy(h.mask_key.data(), bytes.data() + at, 4);
    at += 4;
  }
  h.header_len = static_cast<std::uint8_t>(at);
  r.status = DecodeStatus::ok;
  return r;
}

std::size_t encode_header(std::span<std::uint8_t, header_size_max> out, Opcode opcode, bool fin,
                          std::uint64_t payload_len, const std::uint8_t* mask_key) noexcept {
  out[0] = static_cast<std::uint8_t>((fin ? 0x80 : 0) | static_cast<std::uint8_t>(opcode));
  const std::uint8_t mask_bit = mask_key ? 0x80 : 0;
  std::size_t at;
  if (payload_len < 126) {
    out[1] = static_cast<std::uint8_t>(mask_bit | payload_len);
    at = 2;
  } else if (payload_len <= 0xFFFF) {
    out[1] = mask_bit | 126;
    out[2] = static_cast<std::uint8_t>(payload_len >> 8);
    out[3] = static_cast<std::uint8_t>(payload_len);
    at = 4;
  } else {
    out[1] = mask_bit | 127;
    for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<std::uint8_t>(payload_len >> (56 - 8 * i));
    at = 10;
  }
  if (mask_key) {
    std::memcpy(out.data() + at, mask_key, 4);
    at += 4;
  }
  return at;
}

void mask_bytes(std::span<std::uint8_t> data, std::array<std::uint8_t, 4> key, std::uint64_t offset) noexcept {
  // Rotate the key so that byte 0 of `data` uses key[offset % 4]; then the
  // 8-byte word key below lines up with every aligned step of 8.
  std::array<std::uint8_t, 8> k8;
  for (std::size_t i = 0; i < 8; ++i) k8[i] = key[(offset + i) & 3];
  std::uint64_t kw;
  std::memcpy(&kw, k8.data(), 8);
  std::uint8_t* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    w ^= kw;
    std::memcpy(p, &w, 8);
    p += 8;
    n -= 8;
  }
  for (std::size_t i = 0; i < n; ++i) p[i] ^= k8[i];
}

ClosePayloadError check_close_payload(std::span<const std::uint8_t> payload) noexcept {
  if (payload.empty()) return ClosePayloadError::none;
  if (payload.size() == 1) return ClosePayloadError::one_byte;
  const auto code = static_cast<std::uint16_t>((payload[0] << 8) | payload[1]);
  if (!close_code_valid_on_wire(code)) return ClosePayloadError::bad_code;
  if (!utf8_valid(payload.subspan(2))) return ClosePayloadError::bad_utf8;
  return ClosePayloadError::none;
}

FrameTracker::Verdict FrameTracker::check_start(std::uint8_t b0, std::uint8_t b1) const noexcept {
  const auto violation = [](std::uint16_t code, std::string_view reason) {
    return Verdict{false, 0, code, reason};
  };
  const bool fin = (b0 & 0x80) != 0;
  const auto rsv = static_cast<std::uint8_t>((b0 >> 4) & 0x7);
  const std::uint8_t opcode = b0 & 0x0F;
  const bool masked = (b1 & 0x80) != 0;
  const std::uint8_t len7 = b1 & 0x7F;
  if (!masked) return violation(1002, "client frames must be masked");
  if (rsv != 0) return violation(1002, "reserved bits set but no extension was negotiated");
  switch (opcode) {
    case 0x0:
      if (!in_fragmented_message_) return violation(1002, "continuation frame without a message to continue");
      break;
    case 0x1:
    case 0x2:
      if (in_fragmented_message_) return violation(1002, "new data frame inside a fragmented message");
      break;
    case 0x8:
    case 0x9:
    case 0xA:
      // len7 126/127 announce an extended length, i.e. more than 125 bytes.
      if (len7 > control_payload_max) return violation(1002, "control frame payload over 125 bytes");
      if (!fin) return violation(1002, "fragmented control frame");
      break;
    default:
      return violation(1002, "reserved opcode");
  }
  return {};
}

FrameTracker::Verdict FrameTracker::check_length(const FrameHeader& h) noexcept {
  if (is_control(h.opcode)) return {};
  if (h.payload_len > max_frame_bytes_) return {false, 0, 1009, "frame larger than max_frame_size"};
  if (h.opcode != static_cast<std::uint8_t>(Opcode::continuation)) message_bytes_ = 0;
  message_bytes_ += h.payload_len;
  if (message_bytes_ > max_message_bytes_ || message_bytes_ < h.payload_len)
    return {false, 0, 1009, "message larger than max_message_size"};
  return {};
}

FrameTracker::Verdict FrameTracker::check_close() noexcept {
  collecting_close_ = false;
  mask_bytes({close_payload_.data(), close_len_}, close_mask_);
  switch (check_close_payload({close_payload_.data(), close_len_})) {
    case ClosePayloadError::none: return {};
    case ClosePayloadError::one_byte: return {false, 0, 1002, "close payload of one byte"};
    case ClosePayloadError::bad_code: return {false, 0, 1002, "invalid close code"};
    case ClosePayloadError::bad_utf8: return {false, 0, 1007, "close reason is not valid UTF-8"};
  }
  return {};
}

FrameTracker::Verdict FrameTracker::feed(std::span<const std::uint8_t> bytes) noexcept {
  if (failed_) return {false, 0, 1002, "stream already failed"};
  close_offset_ = 0;
  if (close_complete_) return {};  // nothing follows a close frame
  std::size_t at = 0;
  // Where the current frame's header began in `bytes` (0 if it began in an
  // earlier feed): everything before it is complete, valid frames.
  std::size_t frame_start = 0;
  while (at < bytes.size()) {
    if (payload_left_ > 0) {
      const std::uint64_t take = std::min<std::uint64_t>(payload_left_, bytes.size() - at);
      if (collecting_close_) {
        std::memcpy(close_payload_.data() + close_len_, bytes.data() + at, take);
        close_len_ = static_cast<std::uint8_t>(close_len_ + take);
      }
      payload_left_ -= take;
      at += take;
      if (payload_left_ == 0 && collecting_close_) {
        Verdict v = check_close();
        if (!v.ok) {
          failed_ = true;
          v.valid_prefix = frame_start;
          return v;
        }
        close_complete_ = true;
        return {};
      }
      continue;
    }
    if (header_have_ == 0) {
      frame_start = at;
      // The first byte says whether this is the stream's first close frame.
      if (!close_started_ && (bytes[at] & 0x0F) == static_cast<std::uint8_t>(Opcode::close)) {
        close_started_ = true;
        close_offset_ = at;
      }
    }
    const std::size_t copy = std::min<std::size_t>(header_size_max - header_have_, bytes.size() - at);
    std::memcpy(header_.data() + header_have_, bytes.data() + at, copy);
    const std::size_t have = header_have_ + copy;
    // Judge a header as soon as the bytes that decide it are here, not only
    // once it is complete: wslay rejects an oversized or fragmented control
    // frame after two bytes and a bad length before the mask key, and
    // answers with an empty close frame if it sees them first.
    Verdict v = have >= 2 ? check_start(header_[0], header_[1]) : Verdict{};
    DecodeResult r{DecodeStatus::need_more, {}};
    if (v.ok) {
      r = decode_header({header_.data(), have});
      if (r.status == DecodeStatus::bad_length) v = {false, 0, 1002, "invalid payload length encoding"};
      else if (r.status == DecodeStatus::ok) v = check_length(r.header);
    }
    if (!v.ok) {
      failed_ = true;
      v.valid_prefix = frame_start;
      return v;
    }
    if (r.status == DecodeStatus::need_more) {
      header_have_ = static_cast<std::uint8_t>(have);
      at += copy;
      continue;
    }
    at += r.header.header_len - header_have_;
    header_have_ = 0;
    payload_left_ = r.header.payload_len;
    ++frames_seen_;
    collecting_close_ = r.header.opcode == static_cast<std::uint8_t>(Opcode::close);
    if (collecting_close_) {
      close_len_ = 0;
      close_mask_ = r.header.mask_key;
      if (payload_left_ == 0) {
        Verdict v = check_close();
        if (!v.ok) {
          failed_ = true;
          v.valid_prefix = frame_start;
          return v;
        }
        close_complete_ = true;
        return {};
      }
    }
    if (!is_control(r.header.opcode)) in_fragmented_message_ = !r.header.fin;
  }
  return {};
}

}  // namespace rg::proto::ws
