// proto/pubsub.h: BodyClassifier and build_message_frame, the frame every
// subscriber of a publish gets.
//
// Input: [flags] [limit] [name seed: 3 bytes] [buffer cut: 2 bytes] [body...]
//   flags bit 0  raw envelope (else the JSON one)
//         bit 1  addressed to a user (else a channel)
//         bit 2  a second classifier with limits from `limit` (else 64 KiB, depth 64)
// The body is classified and framed into a buffer of message_frame_bytes_max;
// the frame must decode with ws::decode_header and carry the body: as is
// (raw), verbatim as "data" (json), as a JSON string (text) or as base64
// (binary).  A buffer cut shorter gives the same frame or none at all.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include <openssl/base64.h>

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include "fuzz_support.h"
#include "proto/pubsub.h"
#include "proto/utf8.h"
#include "proto/ws_frame.h"

namespace {

using namespace rg::proto::pubsub;
namespace ws = rg::proto::ws;
using rg::fuzz::Bytes;

// A valid name of 1..128 bytes from a seed.
std::string name_from(std::uint8_t len, std::uint8_t seed) {
  static constexpr std::string_view alphabet = "abcXYZ019._:-";
  std::string s(1u + len % name_bytes_max, 'a');
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = alphabet[(seed + i * 7) % alphabet.size()];
  return s;
}

simdjson::dom::parser& reader() {
  static simdjson::dom::parser p;  // default depth 1024: deeper than any body the classifier calls json
  return p;
}

void check_frame(const MessageFrame& f, const MessageSpec& m, BodyKind kind) {
  FUZZ_CHECK(f.ok());
  const ws::DecodeResult d = ws::decode_header(f.frame);
  FUZZ_CHECK(d.status == ws::DecodeStatus::ok);
  FUZZ_CHECK(d.header.fin && !d.header.masked && d.header.rsv == 0);
  FUZZ_CHECK(d.header.opcode == static_cast<std::uint8_t>(f.opcode));
  FUZZ_CHECK(d.header.payload_len == f.payload.size());
  FUZZ_CHECK(d.header.header_len + f.payload.size() == f.frame.size());
  FUZZ_CHECK(f.frame.data() + d.header.header_len == f.payload.data());

  const std::string_view payload = rg::fuzz::chars(f.payload);
  if (m.envelope == Envelope::raw) {
    FUZZ_CHECK(std::equal(f.payload.begin(), f.payload.end(), m.body.begin(), m.body.end()));
    FUZZ_CHECK(f.opcode == (kind == BodyKind::binary ? ws::Opcode::binary : ws::Opcode::text));
    return;
  }
  FUZZ_CHECK(f.opcode == ws::Opcode::text);
  FUZZ_CHECK(rg::proto::utf8_valid(f.payload));
  simdjson::dom::element root;
  FUZZ_CHECK(reader().parse(payload.data(), payload.size()).get(root) == simdjson::SUCCESS);
  simdjson::dom::object obj;
  FUZZ_CHECK(root.get_object().get(obj) == simdjson::SUCCESS);
  std::string_view s;
  FUZZ_CHECK(obj["type"].get_string().get(s) == simdjson::SUCCESS && s == "message");
  if (m.user.empty()) FUZZ_CHECK(obj["channel"].get_string().get(s) == simdjson::SUCCESS && s == m.channel);
  else FUZZ_CHECK(obj["user"].get_string().get(s) == simdjson::SUCCESS && s == m.user);
  FUZZ_CHECK(obj["id"].get_string().get(s) == simdjson::SUCCESS && s == m.id);
  const std::string_view body = rg::fuzz::chars(m.body);
  switch (kind) {
    case BodyKind::json:
      // Embedded verbatim, as the envelope's last member.
      FUZZ_CHECK(payload.ends_with(std::string(R"(","data":)") + std::string(body) + "}"));
      break;
    case BodyKind::text:
      FUZZ_CHECK(obj["data"].get_string().get(s) == simdjson::SUCCESS && s == body);
      break;
    case BodyKind::binary: {
      FUZZ_CHECK(obj["data"].get_string().get(s) == simdjson::SUCCESS);
      FUZZ_CHECK(obj["encoding"].get_string().get(s) == simdjson::SUCCESS && s == "base64");
      std::string_view b64;
      FUZZ_CHECK(obj["data"].get_string().get(b64) == simdjson::SUCCESS);
      Bytes decoded(b64.size() / 4 * 3 + 3);
      std::size_t n = 0;
      FUZZ_CHECK(EVP_DecodeBase64(decoded.data(), &n, decoded.size(), rg::fuzz::bytes(b64).data(), b64.size()));
      FUZZ_CHECK(n == m.body.size() && std::equal(m.body.begin(), m.body.end(), decoded.begin()));
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t flags = in.byte();
  const std::uint8_t limit = in.byte();
  const std::uint8_t name_len = in.byte(), id_len = in.byte(), seed = in.byte();
  const std::uint16_t cut = in.u16();
  const std::span<const std::uint8_t> body = in.rest();

  static BodyClassifier standard;
  FUZZ_CHECK(standard.ready());
  BodyClassifier* classifier = &standard;
  std::unique_ptr<BodyClassifier> custom;
  if (flags & 4) {
    custom = std::make_unique<BodyClassifier>(std::size_t{limit} * 4, 1u + limit % 16);
    FUZZ_CHECK(custom->ready());
    classifier = custom.get();
  }
  const BodyKind kind = classifier->classify(body);
  FUZZ_CHECK(classifier->classify(body) == kind);
  FUZZ_CHECK((kind == BodyKind::binary) == !rg::proto::utf8_valid(body));
  if (kind == BodyKind::json) {
    simdjson::dom::element e;
    FUZZ_CHECK(reader().parse(rg::fuzz::chars(body).data(), body.size()).get(e) == simdjson::SUCCESS);
    FUZZ_CHECK(!body.empty());
    if (flags & 4) FUZZ_CHECK(body.size() <= std::size_t{limit} * 4);
  }
  if (kind == BodyKind::text && !(flags & 4) && !body.empty()) {
    // Valid UTF-8, within the standard limits, yet not JSON by simdjson
    // (at depth 64): not JSON by simdjson's reading at full depth either,
    // unless nested deeper than 64.
    simdjson::dom::element e;
    if (body.size() <= 64 * 1024 && reader().parse(rg::fuzz::chars(body).data(), body.size()).get(e) == simdjson::SUCCESS)
      FUZZ_CHECK(std::count(body.begin(), body.end(), '[') + std::count(body.begin(), body.end(), '{') > 64);
  }

  const std::string channel = name_from(name_len, seed);
  const std::string id = name_from(id_len, static_cast<std::uint8_t>(seed + 1));
  const std::string user = (flags & 2) ? name_from(id_len, static_cast<std::uint8_t>(seed + 2)) : std::string();
  const MessageSpec m{channel, id, body, kind, (flags & 1) ? Envelope::raw : Envelope::json, user};
  const std::size_t need = message_frame_bytes_max(body.size());
  FUZZ_CHECK(need != SIZE_MAX);
  Bytes buf(need);
  const MessageFrame f = build_message_frame(buf, m);
  check_frame(f, m, kind);
  // A smaller buffer: the same frame, or nothing (ASan watches the end).
  const std::size_t small = std::min<std::size_t>(cut, f.frame.size() + 10);
  Bytes tight(small);
  const MessageFrame g = build_message_frame(tight, m);
  if (g.ok()) {
    FUZZ_CHECK(std::equal(g.frame.begin(), g.frame.end(), f.frame.begin(), f.frame.end()));
    FUZZ_CHECK(g.opcode == f.opcode);
  } else {
    // Refused only when the payload and the 10-byte header gap do not fit
    // (an empty payload needs one byte more: the builder wants the gap plus
    // at least one byte).
    FUZZ_CHECK(small < f.payload.size() + 10 || (f.payload.empty() && small == 10));
  }
  return 0;
}
