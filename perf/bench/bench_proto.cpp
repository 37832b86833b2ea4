// Micro-benchmarks for proto/: UTF-8 validation, masking, frame headers, the
// frame tracker, the HTTP upgrade parser, a whole Session echo round trip and
// the accept key, a balancer's PROXY header.

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/http_upgrade.h"
#include "proto/proxy_protocol.h"
#include "proto/segments.h"
#include "proto/utf8.h"
#include "proto/ws_frame.h"
#include "proto/ws_session.h"

#include "tests/unit/heap_calls.h"  // defines the malloc interposers for this executable
using rg::test::heap_calls;
constexpr bool heap_counted = rg::test::heap_calls_counted;

namespace {

using Bytes = std::vector<std::uint8_t>;
namespace ws = rg::proto::ws;
namespace http = rg::proto::http;

constexpr std::array<std::uint8_t, 4> mask_key{0x37, 0xFA, 0x21, 0x3D};

Bytes ascii_text(std::size_t n) {
  static constexpr std::string_view lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ";
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(lorem[i % lorem.size()]);
  return b;
}

// Mixed text: ASCII words with 2-, 3- and 4-byte sequences, cut at a code
// point boundary.
Bytes mixed_text(std::size_t n) {
  static constexpr std::string_view pieces[] = {"caf\xC3\xA9 ", "na\xC3\xAFve ", "\xE2\x82\xAC" "42 ",
                                                "\xE6\x97\xA5\xE6\x9C\xAC ", "\xF0\x9F\x98\x80 ", "ok "};
  Bytes b;
  for (std::size_t i = 0;; ++i) {
    const std::string_view p = pieces[i % std::size(pieces)];
    if (b.size() + p.size() > n) break;
    b.insert(b.end(), p.begin(), p.end());
  }
  while (b.size() < n) b.push_back('.');
  return b;
}

void utf8(benchmark::State& state, Bytes (*make)(std::size_t)) {
  const Bytes text = make(static_cast<std::size_t>(state.range(0)));
  if (!rg::proto::utf8_valid(text)) state.SkipWithError("generated text is not valid UTF-8");
  for (auto _ : state) {
    rg::proto::Utf8Validator v;
    const bool ok = v.feed(text) && v.complete();
    benchmark::DoNotOptimize(ok);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
void BM_Utf8Ascii(benchmark::State& state) { utf8(state, ascii_text); }
void BM_Utf8Mixed(benchmark::State& state) { utf8(state, mixed_text); }
BENCHMARK(BM_Utf8Ascii)->Arg(64)->Arg(4096)->Arg(65536);
BENCHMARK(BM_Utf8Mixed)->Arg(64)->Arg(4096)->Arg(65536);

void BM_MaskBytes(benchmark::State& state) {
  Bytes data = ascii_text(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    ws::mask_bytes(data, mask_key, 1);
    benchmark::DoNotOptimize(data.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_MaskBytes)->Arg(64)->Arg(4096)->Arg(65536);

// The obvious loop, for comparison.  Kept out of line and opaque to the
// vectoriser's knowledge of the key so that it measures the byte loop.
[[gnu::noinline]] void naive_mask(std::uint8_t* p, std::size_t n, const std::array<std::uint8_t, 4>& key,
                                  std::uint64_t offset) {
  for (std::size_t i = 0; i < n; ++i) p[i] ^= key[(offset + i) % 4];
}

void BM_MaskNaive(benchmark::State& state) {
  Bytes data = ascii_text(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    naive_mask(data.data(), data.size(), mask_key, 1);
    benchmark::DoNotOptimize(data.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_MaskNaive)->Arg(64)->Arg(4096)->Arg(65536);

Bytes frame(ws::Opcode op, bool fin, const Bytes& payload) {
  std::array<std::uint8_t, ws::header_size_max> h{};
  const std::size_t n = ws::encode_header(h, op, fin, payload.size(), mask_key.data());
  Bytes out(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(n));
  Bytes masked = payload;
  ws::mask_bytes(masked, mask_key);
  out.insert(out.end(), masked.begin(), masked.end());
  return out;
}

// Arg: payload length (7-bit, 16-bit and 64-bit length forms).
void BM_DecodeHeader(benchmark::State& state) {
  std::array<std::uint8_t, ws::header_size_max> h{};
  const std::size_t n =
      ws::encode_header(h, ws::Opcode::binary, true, static_cast<std::uint64_t>(state.range(0)), mask_key.data());
  for (auto _ : state) {
    benchmark::DoNotOptimize(h);
    const ws::DecodeResult r = ws::decode_header({h.data(), n});
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DecodeHeader)->Arg(20)->Arg(1000)->Arg(100000);

// 256 small masked frames (20-byte text, with a ping every 16th and a
// fragmented message every 32nd) tracked in one feed.
void BM_FrameTracker(benchmark::State& state) {
  Bytes stream;
  const Bytes payload = ascii_text(20);
  for (int i = 0; i < 256; ++i) {
    Bytes f;
    if (i % 16 == 15) f = frame(ws::Opcode::ping, true, ascii_text(8));
    else if (i % 32 == 0) f = frame(ws::Opcode::text, false, payload);
    else if (i % 32 == 1) f = frame(ws::Opcode::continuation, true, payload);
    else f = frame(ws::Opcode::text, true, payload);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  for (auto _ : state) {
    ws::FrameTracker t(1024 * 1024);
    const ws::FrameTracker::Verdict v = t.feed(stream);
    benchmark::DoNotOptimize(v);
    if (!v.ok || !t.at_message_boundary()) state.SkipWithError("tracker rejected the stream");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 256);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size()));
}
BENCHMARK(BM_FrameTracker);

constexpr std::string_view browser_request =
    "GET /echo HTTP/1.1\r\n"
    "Host: server.example.com:8080\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36\r\n"
    "Upgrade: websocket\r\n"
    "Origin: https://example.com\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "\r\n";

void BM_HttpUpgradeParse(benchmark::State& state) {
  const auto bytes = std::span(reinterpret_cast<const std::uint8_t*>(browser_request.data()), browser_request.size());
  const http::UpgradePolicy policy{"/echo", "superchat", ""};
  for (auto _ : state) {
    http::UpgradeParser p;
    const http::UpgradeParser::Result r = p.feed(bytes);
    const http::Decision d = http::decide(p, policy);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(d);
    if (d.status != 101) state.SkipWithError("request not accepted");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * browser_request.size()));
}
BENCHMARK(BM_HttpUpgradeParse);

// What a balancer's connection pays before its upgrade request: a PROXY v2
// header as HAProxy sends it (IPv4, with ALPN and unique-id TLVs), parsed in
// a fresh parser as the worker's scratch one is.  Beside BM_HttpUpgradeParse
// for scale.
void BM_ProxyHeaderParse(benchmark::State& state) {
  namespace proxy = rg::proto::proxy;
  proxy::Header h;
  h.command = proxy::Command::proxy;
  h.family = proxy::Family::inet;
  h.source_address = {203, 0, 113, 7};
  h.source_port = 40000;
  h.destination_address = {10, 0, 0, 11};
  h.destination_port = 8080;
  const std::uint8_t tlvs[] = {0x01, 0x00, 0x08, 'h', 't', 't', 'p', '/', '1', '.', '1',
                               0x05, 0x00, 0x08, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'};
  std::array<std::uint8_t, 128> wire{};
  const std::size_t n = proxy::encode(h, tlvs, wire);
  if (n == 0) state.SkipWithError("header does not fit");
  for (auto _ : state) {
    proxy::Parser p;
    const proxy::Parser::Result r = p.feed(std::span(wire.data(), n));
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(p.header().source_port);
    if (r.status != proxy::Parser::Status::complete) state.SkipWithError("header not read");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_ProxyHeaderParse);

void BM_AcceptKey(benchmark::State& state) {
  for (auto _ : state) {
    const http::AcceptKey k = http::accept_key("dGhlIHNhbXBsZSBub25jZQ==");
    benchmark::DoNotOptimize(k);
  }
}
BENCHMARK(BM_AcceptKey);

void BM_BuildSwitchingProtocols(benchmark::State& state) {
  std::array<char, http::response_bytes_max> out{};
  for (auto _ : state) {
    const std::size_t n = http::build_switching_protocols(out, "dGhlIHNhbXBsZSBub25jZQ==", "chat");
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_BuildSwitchingProtocols);

class EchoHandler final : public ws::MessageHandler {
 public:
  void on_message(ws::Session& s, ws::Opcode opcode, std::span<const std::uint8_t> payload) override {
    s.queue_message(opcode, payload);
  }
};

// One 20-byte masked text frame in, its echo out (feed + drain), on a
// long-lived session.
void BM_SessionEcho20(benchmark::State& state) {
  EchoHandler handler;
  ws::Session s;
  if (!s.init({}, &handler)) {
    state.SkipWithError("init failed");
    return;
  }
  const Bytes in = frame(ws::Opcode::text, true, ascii_text(20));
  std::size_t out_bytes = 0;
  for (auto _ : state) {
    if (s.feed(in) != ws::Session::FeedResult::ok) state.SkipWithError("feed failed");
    for (;;) {
      const std::span<const std::uint8_t> out = s.next_output();
      if (out.empty()) break;
      out_bytes += out.size();
      benchmark::DoNotOptimize(out.data());
      s.output_sent(out.size());
    }
  }
  if (out_bytes != static_cast<std::size_t>(state.iterations()) * 22) state.SkipWithError("unexpected output size");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_SessionEcho20);

// One masked binary frame of range(0) bytes in, its echo out, with the heap
// calls per message (malloc, calloc, realloc) as a counter.
void BM_SessionEchoSized(benchmark::State& state) {
  EchoHandler handler;
  // As a worker has them: a shared pool that keeps what it frees, a scratch
  // for messages that span segments.
  rg::proto::SegmentPool pool;
  pool.init(4096, 1024);
  std::vector<std::uint8_t> scratch(1024 * 1024);
  ws::Session s;
  if (!s.init({}, &handler, &pool, scratch)) {
    state.SkipWithError("init failed");
    return;
  }
  const auto n = static_cast<std::size_t>(state.range(0));
  const Bytes in = frame(ws::Opcode::binary, true, ascii_text(n));
  const auto drain = [&s] {
    for (;;) {
      const std::span<const std::uint8_t> out = s.next_output();
      if (out.empty()) break;
      benchmark::DoNotOptimize(out.data());
      s.output_sent(out.size());
    }
  };
  (void)s.feed(in);  // warm: first-use buffers are not per-message costs
  drain();
  const std::uint64_t heap_before = heap_calls.load(std::memory_order_relaxed);
  for (auto _ : state) {
    if (s.feed(in) != ws::Session::FeedResult::ok) state.SkipWithError("feed failed");
    drain();
  }
  const std::uint64_t heap = heap_calls.load(std::memory_order_relaxed) - heap_before;
  if (heap_counted)
    state.counters["heap_calls_per_msg"] = static_cast<double>(heap) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
// One framed message appended to a segment queue and sent (consumed): the
// outbound path's own cost, per message.
void BM_SegmentAppendConsume(benchmark::State& state) {
  rg::proto::SegmentPool pool;
  pool.init(4096, 64);
  rg::proto::SegmentQueue q;
  const Bytes payload = ascii_text(static_cast<std::size_t>(state.range(0)));
  const std::array<std::uint8_t, 2> header{0x82, 0x14};
  const std::span<const std::uint8_t> parts[2] = {header, payload};
  for (auto _ : state) {
    if (!q.append(pool, parts, true)) state.SkipWithError("append failed");
    q.consume(pool, static_cast<std::size_t>(q.bytes()));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_SegmentAppendConsume)->Arg(20)->Arg(1024);

BENCHMARK(BM_SessionEchoSized)->Arg(20)->Arg(1024)->Arg(16 * 1024)->Arg(256 * 1024);

// The accounting reads the server makes after every change to a session's
// outbound queue (queued_bytes + queued_messages, then a delta into the
// worker's totals), alone: what backpressure costs per message.
void BM_SessionAccountingRead(benchmark::State& state) {
  EchoHandler handler;
  ws::Session s;
  if (!s.init({}, &handler)) {
    state.SkipWithError("init failed");
    return;
  }
  const Bytes in = frame(ws::Opcode::text, true, ascii_text(20));
  for (int i = 0; i < 64; ++i) (void)s.feed(in);  // something queued, as under backpressure
  std::uint64_t total = 0;
  std::uint64_t accounted = 0;
  for (auto _ : state) {
    const std::uint64_t bytes = s.queued_bytes();
    const std::uint64_t messages = s.queued_messages();
    total = total - accounted + bytes + messages;
    accounted = bytes + messages;
    benchmark::DoNotOptimize(total);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_SessionAccountingRead);

// The echo of BM_SessionEcho20 with the accounting reads after the feed and
// after each send, as the worker does them: the difference between the two
// benchmarks is the per-message cost of buffer accounting.
void BM_SessionEcho20Accounted(benchmark::State& state) {
  EchoHandler handler;
  ws::Session s;
  if (!s.init({}, &handler)) {
    state.SkipWithError("init failed");
    return;
  }
  const Bytes in = frame(ws::Opcode::text, true, ascii_text(20));
  std::uint64_t total = 0;
  std::uint64_t accounted = 0;
  const auto account = [&] {
    const std::uint64_t now = s.queued_bytes() + s.queued_messages();
    total = total - accounted + now;
    accounted = now;
  };
  for (auto _ : state) {
    if (s.feed(in) != ws::Session::FeedResult::ok) state.SkipWithError("feed failed");
    account();
    for (;;) {
      const std::span<const std::uint8_t> out = s.next_output();
      if (out.empty()) break;
      benchmark::DoNotOptimize(out.data());
      s.output_sent(out.size());
      account();
    }
  }
  benchmark::DoNotOptimize(total);
  if (total != 0) state.SkipWithError("accounting did not return to zero");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_SessionEcho20Accounted);

}  // namespace

BENCHMARK_MAIN();
