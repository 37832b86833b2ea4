// proto/ws_frame.h: FrameTracker, decode_header/encode_header, mask_bytes,
// check_close_payload.
//
// Input: [flags] [limit bytes...] [plan bytes...] [client stream...]
//   flags bit 0     a max_message_bytes from the next 2 bytes (else none)
//         bit 1     a max_frame_bytes from the next 2 bytes (else none)
//         bits 2-4  how many plan bytes follow (read sizes)
// The stream goes through a FrameTracker whole, in the plan's reads and byte
// by byte: the verdicts, where the offending frame starts, the first close
// frame and its payload must agree.
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "fuzz_support.h"
#include "proto/utf8.h"
#include "proto/ws_frame.h"

namespace {

using namespace rg::proto::ws;
using rg::fuzz::Bytes;

struct Outcome {
  bool ok = true;
  std::size_t bad_frame_at = 0;  // with !ok: where the offending frame starts (clamped to the failing read)
  std::uint16_t close_code = 0;
  std::string reason;
  std::optional<std::size_t> close_at;  // where the first close frame starts
  bool close_complete = false;
  Bytes close_payload;
  // Only compared without a violation (a failing read may stop mid-header).
  std::uint64_t frames_seen = 0;
  bool boundary = false;
};

Outcome run(std::span<const std::uint8_t> stream, std::uint64_t max_message, std::uint64_t max_frame,
            const std::vector<std::size_t>& cut_points, std::optional<std::size_t> whole_bad_at = {}) {
  FrameTracker tr(max_message, max_frame);
  Outcome o;
  rg::fuzz::for_each_read(stream, cut_points, [&](std::span<const std::uint8_t> read, std::size_t from) {
    const bool was_started = tr.close_started();
    const FrameTracker::Verdict v = tr.feed(read);
    if (!o.ok) {
      FUZZ_CHECK(!v.ok);  // stays failed
      return true;
    }
    if (!was_started && tr.close_started()) {
      FUZZ_CHECK(tr.close_offset() < read.size());
      o.close_at = from + tr.close_offset();
    }
    if (!v.ok) {
      FUZZ_CHECK(v.valid_prefix <= read.size());
      FUZZ_CHECK(v.close_code == 1002 || v.close_code == 1007 || v.close_code == 1009);
      FUZZ_CHECK(!v.reason.empty());
      o.ok = false;
      o.bad_frame_at = from + v.valid_prefix;
      o.close_code = v.close_code;
      o.reason = v.reason;
      // The offending frame starts in this read, or began in an earlier one.
      if (whole_bad_at) FUZZ_CHECK(o.bad_frame_at == std::max(*whole_bad_at, from));
    }
    return true;
  });
  if (!o.ok) {
    FUZZ_CHECK(!tr.feed({}).ok);
  } else {
    o.frames_seen = tr.frames_seen();
    o.boundary = tr.at_message_boundary();
  }
  o.close_complete = tr.close_complete();
  o.close_payload.assign(tr.close_payload().begin(), tr.close_payload().end());
  FUZZ_CHECK(tr.close_started() == o.close_at.has_value());
  if (!tr.close_complete()) FUZZ_CHECK(tr.close_payload().empty());
  return o;
}

bool same(const Outcome& a, const Outcome& b) {
  if (a.ok != b.ok || a.close_code != b.close_code || a.reason != b.reason || a.close_at != b.close_at ||
      a.close_complete != b.close_complete || a.close_payload != b.close_payload)
    return false;
  return !a.ok || (a.frames_seen == b.frames_seen && a.boundary == b.boundary);
}

// The first close frame of a stream the tracker accepted, read independently.
void check_close(std::span<const std::uint8_t> stream, const Outcome& o) {
  if (!o.close_complete) return;
  FUZZ_CHECK(o.close_at.has_value());
  const DecodeResult d = decode_header(stream.subspan(*o.close_at));
  FUZZ_CHECK(d.status == DecodeStatus::ok);
  FUZZ_CHECK(d.header.opcode == 0x8 && d.header.fin && d.header.masked && d.header.rsv == 0);
  FUZZ_CHECK(d.header.payload_len <= control_payload_max);
  FUZZ_CHECK(*o.close_at + d.header.header_len + d.header.payload_len <= stream.size());
  Bytes payload(stream.begin() + static_cast<std::ptrdiff_t>(*o.close_at + d.header.header_len),
                stream.begin() + static_cast<std::ptrdiff_t>(*o.close_at + d.header.header_len + d.header.payload_len));
  mask_bytes(payload, d.header.mask_key);
  FUZZ_CHECK(payload == o.close_payload);
  FUZZ_CHECK(check_close_payload(payload) == ClosePayloadError::none);
}

// check_close_payload against its definition.
void check_close_payload_rules(std::span<const std::uint8_t> p) {
  ClosePayloadError want = ClosePayloadError::none;
  if (p.size() == 1) want = ClosePayloadError::one_byte;
  else if (p.size() >= 2 && !close_code_valid_on_wire(static_cast<std::uint16_t>(p[0] << 8 | p[1])))
    want = ClosePayloadError::bad_code;
  else if (p.size() >= 2 && !rg::proto::utf8_valid(p.subspan(2))) want = ClosePayloadError::bad_utf8;
  FUZZ_CHECK(check_close_payload(p) == want);
}

// A header that decodes re-encodes to the same bytes (decode rejects
// non-minimal lengths, so there is one encoding).
void check_header_round_trip(std::span<const std::uint8_t> b) {
  const DecodeResult d = decode_header(b);
  if (d.status == DecodeStatus::need_more) {
    // Not enough for the header its first two bytes announce.
    if (b.size() >= 2) {
      const std::size_t len7 = b[1] & 0x7F;
      const std::size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((b[1] & 0x80) ? 4 : 0);
      FUZZ_CHECK(b.size() < need);
    }
    return;
  }
  if (d.status == DecodeStatus::bad_length) {
    FUZZ_CHECK((b[1] & 0x7F) >= 126);
    return;
  }
  const FrameHeader& h = d.header;
  FUZZ_CHECK(h.header_len >= 2 && h.header_len <= header_size_max && h.header_len <= b.size());
  FUZZ_CHECK((h.payload_len >> 63) == 0);
  std::array<std::uint8_t, header_size_max> out{};
  const std::size_t n = encode_header(out, static_cast<Opcode>(h.opcode), h.fin, h.payload_len,
                                      h.masked ? h.mask_key.data() : nullptr);
  out[0] = static_cast<std::uint8_t>(out[0] | h.rsv << 4);
  FUZZ_CHECK(n == h.header_len);
  FUZZ_CHECK(std::equal(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n), b.begin()));
}

// Masking in pieces (at the plan's cuts) equals masking whole equals the
// byte-at-a-time definition; masking twice is the identity.
void check_masking(std::span<const std::uint8_t> data, const std::vector<std::size_t>& cut_points) {
  if (data.size() < 4) return;
  const std::array<std::uint8_t, 4> key{data[0], data[1], data[2], data[3]};
  const std::uint64_t offset = data[0];
  Bytes naive(data.begin(), data.end());
  for (std::size_t i = 0; i < naive.size(); ++i) naive[i] ^= key[(offset + i) & 3];
  Bytes whole(data.begin(), data.end());
  mask_bytes(whole, key, offset);
  FUZZ_CHECK(whole == naive);
  Bytes pieces(data.begin(), data.end());
  rg::fuzz::for_each_read(pieces, cut_points, [&](std::span<const std::uint8_t> read, std::size_t from) {
    mask_bytes({pieces.data() + from, read.size()}, key, offset + from);
    return true;
  });
  FUZZ_CHECK(pieces == naive);
  mask_bytes(whole, key, offset);
  FUZZ_CHECK(std::equal(whole.begin(), whole.end(), data.begin(), data.end()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t flags = in.byte();
  const std::uint64_t max_message = (flags & 1) ? in.u16() : UINT64_MAX;
  const std::uint64_t max_frame = (flags & 2) ? in.u16() : UINT64_MAX;
  const std::span<const std::uint8_t> plan = in.take((flags >> 2) & 7);
  const std::span<const std::uint8_t> stream = in.rest();

  const Outcome whole = run(stream, max_message, max_frame, {});
  check_close(stream, whole);
  if (!whole.ok && whole.close_at) FUZZ_CHECK(*whole.close_at <= whole.bad_frame_at);
  const std::optional<std::size_t> bad_at = whole.ok ? std::nullopt : std::optional(whole.bad_frame_at);
  FUZZ_CHECK(same(run(stream, max_message, max_frame, rg::fuzz::cuts(plan, stream.size()), bad_at), whole));
  if (stream.size() <= 8192)
    FUZZ_CHECK(same(run(stream, max_message, max_frame, rg::fuzz::byte_by_byte(stream.size()), bad_at), whole));

  check_header_round_trip(stream);
  check_close_payload_rules(stream.first(std::min<std::size_t>(stream.size(), control_payload_max)));
  check_masking(stream, rg::fuzz::cuts(plan, stream.size()));
  return 0;
}
