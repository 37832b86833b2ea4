// WebSocket byte work done without a session: recognising the few client
// reads the server answers without attaching wslay (idle pongs, a lone close,
// a peer's close after ours), building the server's close frames, and
// splitting a server's byte stream into whole frames for ringgate-load.
//
// Why apart from proto/ws_session.h: at a million connections the server must
// not attach a wslay context just to swallow a heartbeat pong or answer a
// goodbye.  What these functions do not recognise goes to the full session,
// which answers with the proper close code; so they recognise only complete,
// valid frames and say "not mine" for the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "proto/ws_frame.h"

namespace rg::proto::ws {

// ---------------------------------------------------------------- client reads

// The length of the complete, well-formed client pong (FIN, RSV 0, masked,
// payload <= 125 bytes) that `bytes` start with, or 0.
[[nodiscard]] std::size_t client_pong_bytes(std::span<const std::uint8_t> bytes) noexcept;

// Whether `bytes` start with a complete, well-formed client pong.
[[nodiscard]] inline bool is_client_pong(std::span<const std::uint8_t> bytes) noexcept {
  return client_pong_bytes(bytes) != 0;
}

struct PongPrefix {
  std::size_t pongs = 0;  // complete client pongs at the start of the read
  std::size_t bytes = 0;  // the bytes they span
};

// The run of complete client pongs that `bytes` start with (possibly none).
[[nodiscard]] PongPrefix leading_client_pongs(std::span<const std::uint8_t> bytes) noexcept;

// Whether `bytes` are non-empty and nothing but complete client pongs: what
// an idle connection answering our pings sends.
[[nodiscard]] inline bool only_client_pongs(std::span<const std::uint8_t> bytes) noexcept {
  return !bytes.empty() && leading_client_pongs(bytes).bytes == bytes.size();
}

struct LoneClose {
  // The read is client pongs (possibly none) and then exactly one complete,
  // masked, unfragmented client close frame, RSV 0, whose payload passes
  // check_close_payload(), and nothing after it.  When false, the rest of
  // this struct is empty and the read belongs to the session.
  bool found = false;
  std::size_t pongs = 0;             // complete client pongs before the close
  std::optional<std::uint16_t> code;  // the status code to echo; none for an empty close
};

// How an idle client usually leaves (RFC 6455 5.5.1: the answer echoes the
// code), possibly after answering our pings in the same write.
[[nodiscard]] LoneClose parse_lone_close(std::span<const std::uint8_t> bytes) noexcept;

enum class CloseScan : std::uint8_t {
  close_found,  // a close header (its payload perhaps not) after only complete frames
  no_close,     // complete frames only, none of them a close (or no bytes)
  incomplete,   // a frame before any close is cut off at the end
  malformed,    // a header before any close has an invalid length encoding
};

// After the server sent a close frame of its own, the peer's close is all it
// waits for; everything else the peer sends is discarded unread.  Walks frame
// headers from the start of `bytes` (one read, no state carried between
// reads) and stops at the first close header, complete or not.  Headers are
// not otherwise judged: the connection is ending whatever they say.
[[nodiscard]] CloseScan scan_for_close(std::span<const std::uint8_t> bytes) noexcept;

// ---------------------------------------------------------------- server closes

inline constexpr std::size_t close_reason_bytes_max = control_payload_max - 2;  // 123: after the code
inline constexpr std::size_t close_frame_bytes_max = 2 + 2 + close_reason_bytes_max;  // header + code + reason

// The size of a server close frame with `reason`, for compile-time buffer sizes.
[[nodiscard]] constexpr std::size_t close_frame_bytes(std::string_view reason) noexcept {
  return 2 + 2 + reason.size();
}

// Writes the server's (unmasked) close frame with `code` and `reason` at the
// start of `out` and returns its length.  The reason must fit a control frame
// (<= close_reason_bytes_max bytes, asserted) and `out` must hold the frame;
// if either does not hold, nothing is written and 0 is returned.  The reason
// is not checked for UTF-8: the server's reasons are its own literals.
[[nodiscard]] std::size_t build_close_frame(std::span<std::uint8_t> out, std::uint16_t code,
                                            std::string_view reason) noexcept;

// The answer to a peer's close: an echo of its code (4 bytes), or for an
// empty close an empty one (2 bytes).  0 if `out` is too small.
[[nodiscard]] std::size_t build_close_echo(std::span<std::uint8_t> out, std::optional<std::uint16_t> code) noexcept;

// ---------------------------------------------------------------- server frames (client side)

enum class SplitStatus : std::uint8_t {
  frame,       // one complete frame: header and payload are set
  need_more,   // every byte offered went into the carry; the frame ends in a later read
  bad_length,  // a header with an invalid length encoding: the stream is broken
  too_large,   // a frame larger than the carry that does not lie wholly inside the read
};

// Splits a byte stream, read by read, into complete frames.  A frame wholly
// inside a read is handed out in place (the common case); one that straddles
// reads is collected in a carry first, topped up to exactly that frame's end
// and never beyond, so the next frame starts in the read again.
//
// A view: the carry storage and its fill count belong to the caller
// (ringgate-load keeps them for a million connections in one arena) and
// persist between reads; build a splitter per read around them.  The carry
// (at least header_size_max bytes) bounds the largest frame that straddles
// reads.  Headers are only decoded: what they say (mask bit, opcode, RSV) is
// the caller's to judge.
class FrameSplitter {
 public:
  struct Next {
    SplitStatus status = SplitStatus::need_more;
    FrameHeader header;                     // with status == frame
    std::span<const std::uint8_t> payload;  // with status == frame: in the read, or in the carry
    std::size_t consumed = 0;               // bytes of the read used, whatever the status
  };

  FrameSplitter(std::span<std::uint8_t> carry, std::uint32_t& carry_len) noexcept
      : carry_(carry), carry_len_(carry_len) {}

  // The next frame from `data`, the read's bytes not yet consumed.  A payload
  // in the carry stays valid until the next call.  After bad_length or
  // too_large the stream cannot be split further.
  [[nodiscard]] Next next(std::span<const std::uint8_t> data) noexcept;

 private:
  std::span<std::uint8_t> carry_;
  std::uint32_t& carry_len_;
};

}  // namespace rg::proto::ws
