// proto/ws_wire.h: client pongs, parse_lone_close, scan_for_close, server
// close frames, and FrameSplitter.
//
// Input: [flags] [carry: 2 bytes] [plan bytes...] [stream...]
//   flags bits 0-2  how many plan bytes follow (read sizes)
//         bit 3     the stream is unmasked server frames built from specs
//                   ([b0] [len 7 bits] [payload]); else raw bytes
// The per-read functions are checked against each other and against the
// FrameTracker (what they accept, the session would accept); the splitter,
// fed the stream in the plan's reads and byte by byte with a carry of the
// given size, must hand out the frames a walk over the whole stream finds.
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>

#include "fuzz_support.h"
#include "proto/ws_wire.h"

namespace {

using namespace rg::proto::ws;
using rg::fuzz::Bytes;

struct Frame {
  std::uint8_t b0;  // FIN, RSV, opcode
  bool masked;
  Bytes payload;
  bool operator==(const Frame&) const = default;
};

// Walks the whole stream with decode_header: its complete frames, and how it ends.
struct Walk {
  std::vector<Frame> frames;
  std::vector<std::size_t> ends;   // where each frame ends
  std::vector<std::size_t> sizes;  // header + payload of each frame
  enum class End { clean, partial, bad_length } end = End::clean;
  std::size_t next_total = 0;  // with partial: the frame's total size if its header is known, else 0
  std::size_t next_header = 0;  // with partial: bytes its header needs (by its second byte), else 2
};

Walk walk(std::span<const std::uint8_t> s) {
  Walk w;
  std::size_t at = 0;
  while (at < s.size()) {
    const DecodeResult d = decode_header(s.subspan(at));
    if (d.status == DecodeStatus::bad_length) {
      w.end = Walk::End::bad_length;
      return w;
    }
    const std::size_t left = s.size() - at;
    if (d.status == DecodeStatus::need_more || d.header.header_len + d.header.payload_len > left) {
      w.end = Walk::End::partial;
      if (d.status == DecodeStatus::ok) w.next_total = static_cast<std::size_t>(
                                            std::min<std::uint64_t>(d.header.header_len + d.header.payload_len, SIZE_MAX / 2));
      w.next_header = left < 2 ? 2 : 2 + ((s[at + 1] & 0x7F) == 126 ? 2 : (s[at + 1] & 0x7F) == 127 ? 8 : 0) +
                                         ((s[at + 1] & 0x80) ? 4 : 0);
      return w;
    }
    const auto hl = d.header.header_len;
    const auto pl = static_cast<std::size_t>(d.header.payload_len);
    w.frames.push_back({s[at], d.header.masked, Bytes(s.begin() + static_cast<std::ptrdiff_t>(at + hl),
                                                      s.begin() + static_cast<std::ptrdiff_t>(at + hl + pl))});
    at += hl + pl;
    w.ends.push_back(at);
    w.sizes.push_back(hl + pl);
  }
  return w;
}

void check_splitter(std::span<const std::uint8_t> s, const Walk& w, std::size_t carry_bytes,
                    const std::vector<std::size_t>& cut_points) {
  Bytes carry(carry_bytes + 1, 0xEE);  // one guard byte
  std::uint32_t carry_len = 0;
  std::vector<Frame> seen;
  std::optional<SplitStatus> failure;
  rg::fuzz::for_each_read(s, cut_points, [&](std::span<const std::uint8_t> read, std::size_t from) {
    std::span<const std::uint8_t> data = read;
    FrameSplitter split({carry.data(), carry_bytes}, carry_len);
    for (;;) {
      const FrameSplitter::Next n = split.next(data);
      FUZZ_CHECK(n.consumed <= data.size());
      data = data.subspan(n.consumed);
      FUZZ_CHECK(carry.back() == 0xEE);
      FUZZ_CHECK(carry_len <= carry_bytes);
      if (n.status == SplitStatus::frame) {
        FUZZ_CHECK(n.payload.size() == n.header.payload_len);
        const Frame f{static_cast<std::uint8_t>((n.header.fin ? 0x80 : 0) | n.header.rsv << 4 | n.header.opcode),
                      n.header.masked, Bytes(n.payload.begin(), n.payload.end())};
        FUZZ_CHECK(seen.size() < w.frames.size());
        FUZZ_CHECK(f == w.frames[seen.size()]);
        // A frame wholly inside this read is handed out in place.
        const std::size_t start = w.ends[seen.size()] - w.sizes[seen.size()];
        const bool inside = start >= from && w.ends[seen.size()] <= from + read.size();
        const bool in_read = n.payload.data() >= read.data() && n.payload.data() <= read.data() + read.size();
        FUZZ_CHECK(inside == in_read || n.payload.empty());
        seen.push_back(f);
        continue;
      }
      if (n.status == SplitStatus::need_more) {
        FUZZ_CHECK(data.empty());
        break;
      }
      failure = n.status;
      return false;
    }
    // The carry holds exactly the bytes of the frame in progress.
    const std::size_t done = seen.empty() ? 0 : w.ends[seen.size() - 1];
    FUZZ_CHECK(carry_len == from + read.size() - done);
    return true;
  });
  if (!failure) {
    FUZZ_CHECK(seen.size() == w.frames.size());
    FUZZ_CHECK(w.end != Walk::End::bad_length);
    return;
  }
  if (*failure == SplitStatus::bad_length) {
    FUZZ_CHECK(seen.size() == w.frames.size() && w.end == Walk::End::bad_length);
    return;
  }
  // too_large: the next frame (or its header) needs more than the carry, and
  // it does not lie wholly inside one read.
  FUZZ_CHECK(*failure == SplitStatus::too_large);
  if (seen.size() < w.frames.size()) {
    FUZZ_CHECK(w.sizes[seen.size()] > carry_bytes);
  } else {
    FUZZ_CHECK(w.end != Walk::End::clean);
    FUZZ_CHECK(w.next_total > carry_bytes || w.next_header > carry_bytes || w.end == Walk::End::bad_length);
  }
}

void check_reads(std::span<const std::uint8_t> s) {
  const PongPrefix p = leading_client_pongs(s);
  FUZZ_CHECK(p.bytes <= s.size() && p.bytes >= 6 * p.pongs);
  FUZZ_CHECK(client_pong_bytes(s) == 0 || p.pongs >= 1);
  FUZZ_CHECK(only_client_pongs(s) == (!s.empty() && p.bytes == s.size()));
  // Pongs are what the session accepts: the tracker is happy with them.
  if (p.bytes > 0) {
    FrameTracker tr;
    FUZZ_CHECK(tr.feed(s.first(p.bytes)).ok);
    FUZZ_CHECK(tr.at_message_boundary() && tr.frames_seen() == p.pongs && !tr.close_started());
  }

  const LoneClose c = parse_lone_close(s);
  if (c.found) {
    FUZZ_CHECK(c.pongs == p.pongs);
    FUZZ_CHECK(scan_for_close(s) == CloseScan::close_found);
    // The tracker accepts the read and sees the same close, its last frame.
    FrameTracker tr;
    FUZZ_CHECK(tr.feed(s).ok);
    FUZZ_CHECK(tr.close_complete() && tr.frames_seen() == p.pongs + 1);
    const std::span<const std::uint8_t> payload = tr.close_payload();
    if (c.code) {
      FUZZ_CHECK(payload.size() >= 2 && *c.code == (payload[0] << 8 | payload[1]));
      FUZZ_CHECK(close_code_valid_on_wire(*c.code));
    } else {
      FUZZ_CHECK(payload.empty());
    }
    std::array<std::uint8_t, close_frame_bytes_max> out{};
    const std::size_t n = build_close_echo(out, c.code);
    FUZZ_CHECK(n == (c.code ? 4u : 2u));
    const DecodeResult d = decode_header({out.data(), n});
    FUZZ_CHECK(d.status == DecodeStatus::ok && d.header.opcode == 0x8 && d.header.fin && !d.header.masked &&
               d.header.header_len + d.header.payload_len == n);
  } else {
    FUZZ_CHECK(c.pongs == 0 && !c.code);
  }

  // scan_for_close against a walk of the headers.
  CloseScan want = CloseScan::no_close;
  std::size_t at = 0;
  while (at < s.size()) {
    const DecodeResult d = decode_header(s.subspan(at));
    if (d.status == DecodeStatus::need_more) {
      want = CloseScan::incomplete;
      break;
    }
    if (d.status == DecodeStatus::bad_length) {
      want = CloseScan::malformed;
      break;
    }
    if (d.header.opcode == 0x8) {
      want = CloseScan::close_found;
      break;
    }
    if (d.header.header_len + d.header.payload_len > s.size() - at) {
      want = CloseScan::incomplete;
      break;
    }
    at += static_cast<std::size_t>(d.header.header_len + d.header.payload_len);
  }
  FUZZ_CHECK(scan_for_close(s) == want);
}

// build_close_frame with a code and reason taken from the input.
void check_close_frame(std::span<const std::uint8_t> s) {
  if (s.size() < 3) return;
  const auto code = static_cast<std::uint16_t>(s[0] << 8 | s[1]);
  const std::size_t len = std::min<std::size_t>(s[2] % (close_reason_bytes_max + 1), s.size() - 3);
  const std::string_view reason = rg::fuzz::chars(s.subspan(3, len));
  std::array<std::uint8_t, close_frame_bytes_max + 1> out;
  out.fill(0xEE);
  const std::size_t n = build_close_frame(out, code, reason);
  FUZZ_CHECK(n == close_frame_bytes(reason) && n <= close_frame_bytes_max && out[n] == 0xEE);
  const DecodeResult d = decode_header({out.data(), n});
  FUZZ_CHECK(d.status == DecodeStatus::ok && d.header.opcode == 0x8 && d.header.fin && !d.header.masked &&
             d.header.rsv == 0 && d.header.header_len + d.header.payload_len == n);
  FUZZ_CHECK(out[2] == code >> 8 && out[3] == (code & 0xFF));
  FUZZ_CHECK(std::equal(s.begin() + 3, s.begin() + 3 + static_cast<std::ptrdiff_t>(len), out.begin() + 4));
  // One byte short: nothing written.
  std::array<std::uint8_t, close_frame_bytes_max> small;
  small.fill(0xEE);
  FUZZ_CHECK(build_close_frame({small.data(), n - 1}, code, reason) == 0);
  FUZZ_CHECK(std::all_of(small.begin(), small.end(), [](std::uint8_t b) { return b == 0xEE; }));
}

Bytes server_frames(std::span<const std::uint8_t> spec) {
  rg::fuzz::Input in(spec.data(), spec.size());
  Bytes out;
  while (!in.empty() && out.size() < 256 * 1024) {
    const std::uint8_t b0 = in.byte();
    const std::uint8_t len = in.byte();
    // len 0x7E/0x7F: a 16- or 64-bit length frame of a few hundred bytes or 64 KiB.
    const std::size_t n = (len & 0x7F) == 0x7E ? 126 + in.byte() : (len & 0x7F) == 0x7F ? 65536 : (len & 0x7F);
    std::array<std::uint8_t, header_size_max> h{};
    const std::size_t hl = encode_header(h, static_cast<Opcode>(b0 & 0x0F), (b0 & 0x80) != 0, n, nullptr);
    h[0] = static_cast<std::uint8_t>(h[0] | (b0 & 0x70));
    out.insert(out.end(), h.begin(), h.begin() + static_cast<std::ptrdiff_t>(hl));
    const std::span<const std::uint8_t> p = in.take(n);
    out.insert(out.end(), p.begin(), p.end());
    out.resize(out.size() + (n - p.size()), 0x5A);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t flags = in.byte();
  const std::size_t carry_bytes = std::max<std::size_t>(in.u16(), 1);
  const std::span<const std::uint8_t> plan = in.take(flags & 7);
  const Bytes stream = (flags & 8) ? server_frames(in.rest()) : Bytes(in.rest().begin(), in.rest().end());

  check_reads(stream);
  check_close_frame(stream);
  const Walk w = walk(stream);
  check_splitter(stream, w, carry_bytes, {});
  check_splitter(stream, w, carry_bytes, rg::fuzz::cuts(plan, stream.size(), 2));
  if (stream.size() <= 4096) check_splitter(stream, w, carry_bytes, rg::fuzz::byte_by_byte(stream.size()));
  return 0;
}
