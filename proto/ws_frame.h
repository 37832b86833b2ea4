// RFC 6455 frame primitives: header decode/encode, masking, close payloads,
// and a tiny stream tracker that knows where frames and messages end.
//
// wslay (proto/ws_session.h) does the server's real framing.  These pieces
// exist for what wslay cannot tell us or does not do fast:
//  - FrameTracker says when the inbound byte stream sits exactly on a message
//    boundary, which is when a pooled wslay context may be detached from an
//    idle connection (wslay keeps partial frames inside its context);
//  - mask_bytes() is the word-at-a-time XOR that clients (ringgate-load) use;
//  - encode_header()/decode_header() are shared by clients and tests.
#pragma once

#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace rg::proto::ws {

enum class Opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

inline constexpr std::size_t header_size_max = 14;      // 2 + 8 (len) + 4 (mask)
inline constexpr std::size_t control_payload_max = 125;  // RFC 6455 5.5

[[nodiscard]] constexpr bool is_control(std::uint8_t opcode) noexcept { return (opcode & 0x8) != 0; }

struct FrameHeader {
  bool fin = false;
  std::uint8_t rsv = 0;  // the three RSV bits, shifted down to 0..7
  std::uint8_t opcode = 0;
  bool masked = false;
  std::array<std::uint8_t, 4> mask_key{};
  std::uint64_t payload_len = 0;
  std::uint8_t header_len = 0;  // bytes the header occupies on the wire
};

enum class DecodeStatus : std::uint8_t {
  ok,
  need_more,       // the header is not complete yet
  bad_length,      // 64-bit length with the top bit set, or a non-minimal length
                   // (reported once the length bytes are in, before the mask key)
};

struct DecodeResult {
  DecodeStatus status;
  FrameHeader header;
};

// Decodes a frame header from the start of `bytes`.  Pure: does not validate
// opcode/RSV/mask policy (that is the session's job), only the wire layout.
[[nodiscard]] DecodeResult decode_header(std::span<const std::uint8_t> bytes) noexcept;

// Writes a header into `out` and returns its length (2..14).
std::size_t encode_header(std::span<std::uint8_t, header_size_max> out, Opcode opcode, bool fin,
                          std::uint64_t payload_len, const std::uint8_t* mask_key /* null: unmasked */) noexcept;

// XORs `data` with the 4-byte key, as if `data` started `offset` bytes into the
// payload (so a payload can be (un)masked in pieces).  Masking and unmasking
// are the same operation.
void mask_bytes(std::span<std::uint8_t> data, std::array<std::uint8_t, 4> key, std::uint64_t offset = 0) noexcept;

// Close codes a peer may legally send (RFC 6455 7.4, IANA registry).
[[nodiscard]] constexpr bool close_code_valid_on_wire(std::uint16_t code) noexcept {
  if (code >= 3000 && code <= 4999) return true;  // registered / private use
  switch (code) {
    case 1000: case 1001: case 1002: case 1003:
    case 1007: case 1008: case 1009: case 1010: case 1011:
    case 1012: case 1013: case 1014:
      return true;
    default:
      return false;  // 1004-1006 and 1015 are reserved, the rest unassigned
  }
}

enum class ClosePayloadError : std::uint8_t { none, one_byte, bad_code, bad_utf8 };

// Validates a received close payload: empty, or a valid code plus UTF-8 reason.
[[nodiscard]] ClosePayloadError check_close_payload(std::span<const std::uint8_t> payload) noexcept;

// Follows an inbound client byte stream just far enough to know where frames
// and messages end, and checks every frame header against RFC 6455 before
// wslay sees it.  wslay also checks most of these, but answers wire-level
// violations (bad length, oversized or fragmented control frames) with an
// empty close frame instead of 1002, and never says why; checking here lets
// every violation get its proper code and a reason.  Its state is 16 bytes of
// header scratch, 125 bytes for a close payload, and counters; no allocation.
class FrameTracker {
 public:
  struct Verdict {
    bool ok = true;
    // With !ok: bytes of this feed() that precede the offending frame (they
    // are valid and may be processed), the close code, and why.
    std::size_t valid_prefix = 0;
    std::uint16_t close_code = 0;
    std::string_view reason;
  };

  // A data frame's payload over max_frame_bytes, or a message (summed over
  // its fragments) over max_message_bytes, is a 1009.
  explicit FrameTracker(std::uint64_t max_message_bytes = UINT64_MAX,
                        std::uint64_t max_frame_bytes = UINT64_MAX) noexcept
      : max_message_bytes_(max_message_bytes), max_frame_bytes_(max_frame_bytes) {}

  // Consumes `bytes`.  After a violation the tracker stays failed.
  Verdict feed(std::span<const std::uint8_t> bytes) noexcept;

  // True when every byte fed so far belongs to complete frames and no
  // fragmented data message is half-way through.
  [[nodiscard]] bool at_message_boundary() const noexcept {
    return header_have_ == 0 && payload_left_ == 0 && !in_fragmented_message_;
  }
  [[nodiscard]] std::uint64_t frames_seen() const noexcept { return frames_seen_; }
  void reset() noexcept { *this = FrameTracker(max_message_bytes_, max_frame_bytes_); }

  // The stream's first close frame.  It ends the stream: bytes after it are
  // not examined.  close_offset() is the number of bytes of the last feed()
  // before its header (0 if it began in an earlier feed); once
  // close_complete(), close_payload() is its unmasked, validated payload.
  [[nodiscard]] bool close_started() const noexcept { return close_started_; }
  [[nodiscard]] std::size_t close_offset() const noexcept { return close_offset_; }
  [[nodiscard]] bool close_complete() const noexcept { return close_complete_; }
  [[nodiscard]] std::span<const std::uint8_t> close_payload() const noexcept {
    return {close_payload_.data(), close_complete_ ? close_len_ : std::size_t{0}};
  }

 private:
  // Rules the first two header bytes decide (mask bit, RSV, opcode and
  // fragmentation, control frame size and FIN), then the message size once
  // the length is known.
  [[nodiscard]] Verdict check_start(std::uint8_t b0, std::uint8_t b1) const noexcept;
  Verdict check_length(const FrameHeader& h) noexcept;
  Verdict check_close() noexcept;

  std::array<std::uint8_t, header_size_max> header_{};
  std::uint8_t header_have_ = 0;
  bool in_fragmented_message_ = false;
  bool failed_ = false;
  std::uint64_t payload_left_ = 0;
  std::uint64_t message_bytes_ = 0;
  std::uint64_t max_message_bytes_;
  std::uint64_t max_frame_bytes_;
  std::uint64_t frames_seen_ = 0;
  // A close frame's payload is collected (and unmasked) here so that its code
  // and reason can be checked: wslay accepts a 1-byte close payload.
  bool collecting_close_ = false;
  bool close_started_ = false;
  bool close_complete_ = false;
  std::size_t close_offset_ = 0;
  std::uint8_t close_len_ = 0;
  std::array<std::uint8_t, 4> close_mask_{};
  std::array<std::uint8_t, control_payload_max> close_payload_{};
};

}  // namespace rg::proto::ws
