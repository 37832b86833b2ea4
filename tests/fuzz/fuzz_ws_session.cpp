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
// was queued goes out in order, a refusal for want of room is the documented
// 1013 and nothing else is, and every feeding delivers the same messages and
// ends in the same close state with the same output.  Known differences:
//  - a pong wslay has queued but not yet written is dropped when a close is
//    queued behind it in the same read (see
//    PingThenViolationAlwaysEndsWithTheClose), so pongs are compared apart:
//    each feeding answers a prefix of the pings, the whole read the shortest;
//  - with a tight pool, which echoes fit depends on when output was sent;
//  - with a tight pool and output drained between reads, so does which
//    message is refused (1013): see parted_at_refusal.
// With a tight pool, every feeding is also held against the stream fed with
// no budget (within_budget_of): the budget may only drop echoes and refuse a
// message, at the end of a data frame with nothing wrong with it.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
  bool refused = false;  // a message found no room in the pool (1013)
  std::uint16_t close_code = 0;
  // Where in the stream the read ended after which the session stopped
  // reading, and the one in which it refused (SIZE_MAX: it did not), with
  // that read's start.  Byte by byte, these are exact.
  std::size_t stopped_after = SIZE_MAX, refused_after = SIZE_MAX, refused_from = SIZE_MAX;
};

// The close a refused message gets (docs/protocol.md, "no room ...").
const Bytes refusal_close = [] {
  const std::string_view reason = "no room for this message within the server's buffer budget: try again later";
  Bytes b{1013 >> 8, 1013 & 0xFF};
  b.insert(b.end(), reason.begin(), reason.end());
  return b;
}();

template <typename T>
bool is_prefix(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() <= b.size() && std::equal(a.begin(), a.end(), b.begin());
}

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

// Where the client's data frames end in `stream`, as far as it holds
// complete frames (past the first that is not, nothing).
std::vector<std::size_t> data_frame_ends(std::span<const std::uint8_t> stream) {
  std::vector<std::size_t> ends;
  std::size_t at = 0;
  while (at < stream.size()) {
    const DecodeResult r = decode_header(stream.subspan(at));
    if (r.status != DecodeStatus::ok) break;
    const std::size_t left = stream.size() - at - r.header.header_len;
    if (r.header.payload_len > left) break;
    at += r.header.header_len + static_cast<std::size_t>(r.header.payload_len);
    if (r.header.opcode <= 0x2) ends.push_back(at);
  }
  return ends;
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
    // The worker's scratch, as a worker passes it: without one, each session
    // zeroes a max_message_bytes buffer of its own for its first message
    // spanning segments, which was most of an execution's time.
    static std::vector<std::uint8_t> scratch(1024 * 1024);
    FUZZ_CHECK(s.init(setup.limits, &echo, &pool, scratch));
    rg::fuzz::for_each_read(stream, cut_points, [&](std::span<const std::uint8_t> read, std::size_t from) {
      // feed() fails only when wslay runs out of memory, which it cannot here.
      FUZZ_CHECK(s.feed(read) == Session::FeedResult::ok);
      if (o.stopped_after == SIZE_MAX && s.read_closed()) o.stopped_after = from + read.size();
      if (o.refused_after == SIZE_MAX && s.inbound_refused()) {
        o.refused_from = from;
        o.refused_after = from + read.size();
      }
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
    o.refused = s.inbound_refused();
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
  // A refusal is 1013 with its reason, ends the reading before any close of
  // the peer's, and 1013 means nothing else.
  FUZZ_CHECK(o.refused == (o.close_code == 1013));
  if (o.refused) {
    FUZZ_CHECK(o.read_closed && !o.close_received && !o.quiescent);
    FUZZ_CHECK(o.frames.back() == (ServerFrame{0x8, refusal_close}));
    // It comes at the end of a data frame (docs/protocol.md), in the read
    // that brought that end, and is what stopped the reading.
    FUZZ_CHECK(o.refused_after == o.stopped_after);
    const std::vector<std::size_t> ends = data_frame_ends(stream);
    FUZZ_CHECK(std::any_of(ends.begin(), ends.end(),
                           [&](std::size_t e) { return o.refused_from < e && e <= o.refused_after; }));
  }
  if (!setup.tight_pool) FUZZ_CHECK(!o.refused);
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

// Two feedings that parted at a refusal (tight pool, output drained between
// reads in one of them).  Refusal is budget-dependent by design: 1013 says
// "nothing is wrong with it, try again later", and room comes back when
// output is sent, so a message refused while an echo waits unsent fits once
// the echo is gone (corpus: finding-tight_pool_refusal_depends_on_drain).
// It goes both ways, so neither feeding is assumed to get further:
// undrained, a pong still unsent in its (uncapped) segment takes the first
// 998 bytes of a 1001-byte echo into its room, where drained the echo needs
// both capped segments and the next message in the same read finds none
// (finding-tight_pool_refused_only_when_drained).  Up to the frame where one
// of them refused, the two read the same frames with the same results
// (every other close depends on the bytes alone), so: the feeding that
// stopped first (fewer messages, or as many and refused) refused, and
// received a prefix of what the other did; each answered a prefix of the
// same pings.  What the other does after that point (more messages, its own
// refusal, any close or none) cannot be compared; run() checks each
// feeding's output and close on its own, and within_budget_of holds both
// against the stream fed with no budget.
void parted_at_refusal(const Outcome& a, const Outcome& b) {
  const bool a_first = a.received.size() < b.received.size() || (a.received.size() == b.received.size() && a.refused);
  const Outcome& first = a_first ? a : b;
  const Outcome& other = a_first ? b : a;
  FUZZ_CHECK(first.refused);
  FUZZ_CHECK(is_prefix(first.received, other.received));
  FUZZ_CHECK(is_prefix(a.pongs, b.pongs) || is_prefix(b.pongs, a.pongs));
}

// A feeding with the tight pool against the same stream fed with no budget
// at all.  The budget only decides which echoes fit (a failed echo is
// dropped, nothing else) and whether a message is refused, so a feeding that
// refused nothing ends exactly as the unbudgeted one, and one that refused
// received a prefix of what the unbudgeted one did.  Pongs as in agrees():
// fed whole, the unbudgeted feeding writes pongs out at no more points than
// `o`; cut once, it may write one out that `o` dropped for its close.
void within_budget_of(const Outcome& o, const Outcome& unbudgeted, bool unbudgeted_whole) {
  FUZZ_CHECK(!unbudgeted.refused);
  const bool pongs_prefix = is_prefix(unbudgeted.pongs, o.pongs);
  if (o.refused) {
    FUZZ_CHECK(is_prefix(o.received, unbudgeted.received));
    FUZZ_CHECK(pongs_prefix || is_prefix(o.pongs, unbudgeted.pongs));
    return;
  }
  FUZZ_CHECK(o.received == unbudgeted.received);
  FUZZ_CHECK(o.close_received == unbudgeted.close_received);
  FUZZ_CHECK(o.close_sent == unbudgeted.close_sent);
  if (o.close_sent) FUZZ_CHECK(o.frames.back() == unbudgeted.frames.back());
  FUZZ_CHECK(o.read_closed == unbudgeted.read_closed);
  FUZZ_CHECK(o.close_code == unbudgeted.close_code);
  FUZZ_CHECK(o.quiescent == unbudgeted.quiescent);
  FUZZ_CHECK(pongs_prefix || (!unbudgeted_whole && is_prefix(o.pongs, unbudgeted.pongs)));
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
    // Only draining between reads can change which message finds no room
    // (the whole feeding never drains before the end).
    if (setup.tight_pool && setup.drain_between &&
        (o.refused != whole.refused || o.received.size() != whole.received.size())) {
      parted_at_refusal(o, whole);
      return;
    }
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
    // Split reads may answer a ping the whole read had to drop for a close:
    // the pongs dropped are those still in wslay's queue when the close was
    // queued, the last ones, and reads only add points where they are
    // written out.
    FUZZ_CHECK(is_prefix(whole.pongs, o.pongs));
  };
  const Outcome split = run(stream, setup, rg::fuzz::cuts(plan, stream.size()));
  agrees(split);
  const bool bytewise = stream.size() <= 4096;
  Outcome byte;
  if (bytewise) {
    byte = run(stream, setup, rg::fuzz::byte_by_byte(stream.size()));
    agrees(byte);
  }
  if (setup.tight_pool) {
    // The reference: no budget, fed whole, or cut where the byte-by-byte
    // feeding refused.  That refusal came with the last byte of a data frame
    // (run() checks: a 1013 before the frame's end is what 3b854fa fixed),
    // and the frame must be one with nothing wrong with it (1013 is not
    // for a frame that earns 1007): without a budget the session reads on
    // past it.  Draining between reads lets feedings part at a refusal, and
    // then only these checks, not agrees(), see a refusal that should not be.
    Setup unbudgeted_setup = whole_setup;
    unbudgeted_setup.tight_pool = false;
    std::vector<std::size_t> at;
    if (bytewise && byte.refused && byte.refused_after < stream.size()) at.push_back(byte.refused_after);
    const Outcome unbudgeted = run(stream, unbudgeted_setup, at);
    if (bytewise && byte.refused) FUZZ_CHECK(unbudgeted.stopped_after > byte.refused_after);
    within_budget_of(whole, unbudgeted, at.empty());
    within_budget_of(split, unbudgeted, at.empty());
    if (bytewise) within_budget_of(byte, unbudgeted, at.empty());
  }
  return 0;
}
