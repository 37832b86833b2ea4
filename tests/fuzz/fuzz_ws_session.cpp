// proto/ws_session.h: Session (wslay behind FrameTracker), with an echoing
// handler, as tests/unit/test_ws_session.cpp drives it.
//
// Input: [flags] [max_message: 2 bytes] [plan bytes...] [body...]
//   flags bit 0     body is a list of frame specs (structured) instead of raw client bytes
//         bit 1     drain the output after every read (else only at the end)
//         bit 2     the handler does not echo
//         bit 3     a pool whose capped segments run out after 2 (echoes fail)
//         bits 4-6  how many plan bytes follow (read sizes)
//         bit 7     output is taken in pieces of the first plan byte + 1 bytes
// Structured body, per frame: [b0: FIN, RSV, opcode as on the wire] [len: low
// 7 bits, bit 7 = unmasked] [4 mask bytes] [payload: len bytes], encoded and
// masked here, so that the fuzzer reaches what lies behind the mask.
//
// The stream is fed whole, in the plan's reads and byte by byte.  What must
// hold: server output is well-formed (unmasked, RSV 0, FIN, complete frames),
// a close frame is the last frame and carries a code a peer accepts, every
// delivered message is within the limit and text is UTF-8, every echo that
// was queued goes out in order, and every feeding delivers the same messages
// and ends in the same close state with the same output.  One known
// difference is allowed: a pong wslay has queued but not yet written is
// dropped when a close is queued behind it in the same read (see
// PingThenViolationAlwaysEndsWithTheClose), so pongs are compared apart.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include "fuzz_support.h"
#include "proto/utf8.h"
#include "proto/ws_session.h"

namespace {

using namespace rg::proto::ws;
using rg::fuzz::Bytes;
using rg::proto::SegmentPool;

class Echo final : public MessageHandler {
 public:
  void on_message(Session& s, Opcode opcode, std::span<const std::uint8_t> payload) override {
    received.emplace_back(opcode, Bytes(payload.begin(), payload.end()));
    if (echo && s.queue_message(opcode, payload)) echoed.emplace_back(opcode, Bytes(payload.begin(), payload.end()));
  }
  std::vector<std::pair<Opcode, Bytes>> received;
  std::vector<std::pair<Opcode, Bytes>> echoed;
  bool echo = true;
};

struct ServerFrame {
  std::uint8_t opcode;
  Bytes payload;
  bool operator==(const ServerFrame&) const = default;
};

struct Outcome {
  std::vector<std::pair<Opcode, Bytes>> received;
  std::vector<ServerFrame> frames;  // all but pongs
  std::vector<ServerFrame> pongs;
  bool close_received = false, close_sent = false, read_closed = false, quiescent = false;
  std::uint16_t close_code = 0;
};

struct Setup {
  SessionLimits limits;
  bool drain_between = false;
  bool echo = true;
  bool tight_pool = false;
  std::size_t piece = SIZE_MAX;
};

Bytes drain(Session& s, std::size_t piece) {
  Bytes out;
  for (int guard = 0;; ++guard) {
    FUZZ_CHECK(guard < 1'000'000);
    const std::span<const std::uint8_t> o = s.next_output();
    if (o.empty()) break;
    FUZZ_CHECK(o.size() <= 256 * 1024);
    const std::size_t n = std::min(piece, o.size());
    out.insert(out.end(), o.begin(), o.begin() + static_cast<std::ptrdiff_t>(n));
    s.output_sent(n);
  }
  FUZZ_CHECK(!s.has_output());
  return out;
}

// Server output: complete, unmasked, RSV 0, FIN frames; a close is the last.
void parse_server(const Bytes& out, Outcome& o) {
  std::size_t at = 0;
  bool closed = false;
  while (at < out.size()) {
    const DecodeResult r = decode_header(std::span(out).subspan(at));
    FUZZ_CHECK(r.status == DecodeStatus::ok);
    FUZZ_CHECK(!r.header.masked && r.header.rsv == 0 && r.header.fin);
    FUZZ_CHECK(!closed);  // nothing follows our close
    at += r.header.header_len;
    FUZZ_CHECK(r.header.payload_len <= out.size() - at);
    ServerFrame f{r.header.opcode, Bytes(out.begin() + static_cast<std::ptrdiff_t>(at),
                                         out.begin() + static_cast<std::ptrdiff_t>(at + r.header.payload_len))};
    at += r.header.payload_len;
    switch (f.opcode) {
      case 0x1:
      case 0x2:
        break;
      case 0x8:
        closed = true;
        FUZZ_CHECK(f.payload.size() <= control_payload_max);
        FUZZ_CHECK(check_close_payload(f.payload) == ClosePayloadError::none);
        break;
      case 0xA:
        FUZZ_CHECK(f.payload.size() <= control_payload_max);
        o.pongs.push_back(std::move(f));
        continue;
      default:
        FUZZ_CHECK(false && "the server sends text, binary, pong and close only");
    }
    o.frames.push_back(std::move(f));
  }
}

Outcome run(std::span<const std::uint8_t> stream, const Setup& setup, const std::vector<std::size_t>& cut_points) {
  Echo echo;
  echo.echo = setup.echo;
  SegmentPool pool;
  pool.init(SegmentPool::segment_size_min, 4, setup.tight_pool ? 2 : UINT64_MAX);
  Outcome o;
  Bytes out;
  {
    Session s;
    FUZZ_CHECK(s.init(setup.limits, &echo, &pool));
    rg::fuzz::for_each_read(stream, cut_points, [&](std::span<const std::uint8_t> read, std::size_t) {
      // feed() fails only when wslay runs out of memory, which it cannot here.
      FUZZ_CHECK(s.feed(read) == Session::FeedResult::ok);
      if (setup.drain_between) {
        const Bytes b = drain(s, setup.piece);
        out.insert(out.end(), b.begin(), b.end());
      }
      return true;
    });
    const Bytes b = drain(s, setup.piece);
    out.insert(out.end(), b.begin(), b.end());
    o.close_received = s.close_received();
    o.close_sent = s.close_sent();
    o.read_closed = s.read_closed();
    o.close_code = s.close_code();
    o.quiescent = s.quiescent();
    FUZZ_CHECK(s.staged_bytes() == 0);
    if (o.close_sent) FUZZ_CHECK(o.read_closed);  // only the peer's close or a violation make us close here
    if (o.quiescent) FUZZ_CHECK(!o.close_sent && !o.close_received);
  }
  FUZZ_CHECK(pool.live() == 0);  // the session gave every segment back
  parse_server(out, o);
  o.received = std::move(echo.received);

  for (const auto& [opcode, payload] : o.received) {
    FUZZ_CHECK(opcode == Opcode::text || opcode == Opcode::binary);
    FUZZ_CHECK(payload.size() <= setup.limits.max_message_bytes);
    if (opcode == Opcode::text) FUZZ_CHECK(rg::proto::utf8_valid(payload));
  }
  // The data frames out are exactly the echoes queued, in order.
  std::size_t data_frames = 0;
  for (const ServerFrame& f : o.frames) {
    if (f.opcode == 0x8) continue;
    FUZZ_CHECK(data_frames < echo.echoed.size());
    FUZZ_CHECK(f.opcode == static_cast<std::uint8_t>(echo.echoed[data_frames].first));
    FUZZ_CHECK(f.payload == echo.echoed[data_frames].second);
    ++data_frames;
  }
  FUZZ_CHECK(data_frames == echo.echoed.size());
  const bool close_out = !o.frames.empty() && o.frames.back().opcode == 0x8;
  FUZZ_CHECK(close_out == o.close_sent);
  if (o.close_code != 0) FUZZ_CHECK(o.close_sent);
  return o;
}

// Encodes the structured body into client frames.
Bytes frames_from_specs(std::span<const std::uint8_t> spec) {
  rg::fuzz::Input in(spec.data(), spec.size());
  Bytes stream;
  while (!in.empty()) {
    const std::uint8_t b0 = in.byte();
    const std::uint8_t lb = in.byte();
    std::array<std::uint8_t, 4> mask{in.byte(), in.byte(), in.byte(), in.byte()};
    const std::span<const std::uint8_t> payload = in.take(lb & 0x7F);
    Bytes p(payload.begin(), payload.end());
    const bool masked = (lb & 0x80) == 0;
    if (masked) mask_bytes(p, mask);
    std::array<std::uint8_t, header_size_max> header{};
    const std::size_t n = encode_header(header, static_cast<Opcode>(b0 & 0x0F), (b0 & 0x80) != 0, p.size(),
                                        masked ? mask.data() : nullptr);
    header[0] = static_cast<std::uint8_t>(header[0] | (b0 & 0x70));
    stream.insert(stream.end(), header.begin(), header.begin() + static_cast<std::ptrdiff_t>(n));
    stream.insert(stream.end(), p.begin(), p.end());
  }
  return stream;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t flags = in.byte();
  const std::uint16_t max_message = in.u16();
  const std::span<const std::uint8_t> plan = in.take((flags >> 4) & 7);
  Setup setup;
  setup.limits.max_message_bytes = max_message == 0 ? 1024 * 1024 : max_message;
  setup.limits.max_frame_bytes = setup.limits.max_message_bytes;
  setup.drain_between = (flags & 2) != 0;
  setup.echo = (flags & 4) == 0;
  setup.tight_pool = (flags & 8) != 0;
  if ((flags & 0x80) && !plan.empty()) setup.piece = plan[0] + 1u;
  const Bytes stream = (flags & 1) ? frames_from_specs(in.rest()) : Bytes(in.rest().begin(), in.rest().end());

  Setup whole_setup = setup;
  whole_setup.drain_between = false;
  whole_setup.piece = SIZE_MAX;
  const Outcome whole = run(stream, whole_setup, {});
  const auto agrees = [&](const Outcome& o) {
    FUZZ_CHECK(o.received == whole.received);
    FUZZ_CHECK(o.close_received == whole.close_received);
    FUZZ_CHECK(o.close_sent == whole.close_sent);
    // With a tight pool, which echoes fit depends on when output was sent;
    // the close is the same.
    if (!setup.tight_pool) FUZZ_CHECK(o.frames == whole.frames);
    else if (o.close_sent) FUZZ_CHECK(o.frames.back() == whole.frames.back());
    FUZZ_CHECK(o.read_closed == whole.read_closed);
    FUZZ_CHECK(o.close_code == whole.close_code);
    FUZZ_CHECK(o.quiescent == whole.quiescent);
    // Split reads may answer a ping the whole read had to drop for a close.
    FUZZ_CHECK(o.pongs.size() >= whole.pongs.size());
  };
  agrees(run(stream, setup, rg::fuzz::cuts(plan, stream.size())));
  if (stream.size() <= 4096) agrees(run(stream, setup, rg::fuzz::byte_by_byte(stream.size())));
  return 0;
}
