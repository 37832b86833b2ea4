// Micro-benchmarks for proto/pubsub: building one delivered-message frame (the
// per-publish cost; the frame is then shared by every subscriber), classifying
// a body, parsing a command, and verifying a JWT.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "proto/jwt.h"
#include "proto/pubsub.h"

namespace {

namespace pubsub = rg::proto::pubsub;
namespace jwt = rg::proto::jwt;
using Bytes = std::vector<std::uint8_t>;

Bytes json_body(std::size_t n) {
  std::string s = R"({"symbol":"ACME","bids":[)";
  while (s.size() + 16 < n) s += "[101.25,300],";
  s += "[1,1]]}";
  return Bytes(s.begin(), s.end());
}

Bytes text_body(std::size_t n) {
  std::string s;
  while (s.size() < n) s += "line \"quoted\"\tand tabbed\n";
  s.resize(n);
  return Bytes(s.begin(), s.end());
}

void frame(benchmark::State& state, Bytes (*make)(std::size_t), pubsub::BodyKind kind) {
  const Bytes body = make(static_cast<std::size_t>(state.range(0)));
  std::vector<std::uint8_t> buf(pubsub::message_frame_bytes_max(body.size()));
  const pubsub::MessageSpec spec{"market.acme", "1700000000-42", body, kind, pubsub::Envelope::json, {}};
  for (auto _ : state) {
    const pubsub::MessageFrame f = pubsub::build_message_frame(buf, spec);
    benchmark::DoNotOptimize(f.frame.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
void BM_MessageFrameJson(benchmark::State& s) { frame(s, json_body, pubsub::BodyKind::json); }
void BM_MessageFrameText(benchmark::State& s) { frame(s, text_body, pubsub::BodyKind::text); }
void BM_MessageFrameBinary(benchmark::State& s) { frame(s, text_body, pubsub::BodyKind::binary); }
BENCHMARK(BM_MessageFrameJson)->Arg(64)->Arg(1024)->Arg(16 * 1024);
BENCHMARK(BM_MessageFrameText)->Arg(64)->Arg(1024)->Arg(16 * 1024);
BENCHMARK(BM_MessageFrameBinary)->Arg(1024);

// Classify + build: the whole per-publish cost for a JSON body.
void BM_ClassifyAndFrameJson(benchmark::State& state) {
  const Bytes body = json_body(static_cast<std::size_t>(state.range(0)));
  pubsub::BodyClassifier classifier;
  std::vector<std::uint8_t> buf(pubsub::message_frame_bytes_max(body.size()));
  for (auto _ : state) {
    const pubsub::BodyKind kind = classifier.classify(body);
    const auto f = pubsub::build_message_frame(buf, {"market.acme", "1700000000-42", body, kind, pubsub::Envelope::json, {}});
    benchmark::DoNotOptimize(f.frame.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ClassifyAndFrameJson)->Arg(64)->Arg(1024)->Arg(16 * 1024);

void BM_ParseCommand(benchmark::State& state) {
  pubsub::CommandParser parser;
  const std::string cmd = R"({"type":"subscribe","channel":"market.acme"})";
  for (auto _ : state) {
    const pubsub::Command c = parser.parse(cmd);
    benchmark::DoNotOptimize(c.channel_len);
  }
}
BENCHMARK(BM_ParseCommand);

void BM_JwtVerify(benchmark::State& state) {
  const Bytes key(32, 0x5A);
  const std::string token = jwt::sign_hs256(R"({"alg":"HS256","typ":"JWT"})",
                                            R"({"sub":"alice","exp":4000000000,"channels":["market.*","chat"]})", key);
  const jwt::Verifier verifier(key);
  for (auto _ : state) {
    const jwt::Result r = verifier.verify(token, 1'700'000'000);
    benchmark::DoNotOptimize(r.error);
  }
}
BENCHMARK(BM_JwtVerify);

}  // namespace

BENCHMARK_MAIN();
