// fuzz_proxy_protocol: the PROXY protocol v2 parser, proto/proxy_protocol.h.
// Input: one control byte (its low 3 bits: how many plan bytes follow),
// the plan (where the stream is cut into reads: fuzz_support.h cuts()), then
// the stream a balancer connection would start with.  Properties:
//   - fed whole, in the plan's reads and byte by byte, the parser reaches
//     the same verdict at the same byte, with the same reason or header;
//   - a read that needs more is taken whole; no verdict takes bytes past
//     the read it came in;
//   - a complete header is the signature, version 2, and 16 + its length
//     field bytes, at most header_bytes_max; encode() of what was parsed,
//     with the TLV bytes of the input, gives the input's header back;
//   - looks_like_proxy() is exactly "the signature or 'PROXY ' whole at the
//     start", and is true of every header that parses.
#include <algorithm>
#include <string>

#include "fuzz_support.h"
#include "proto/proxy_protocol.h"

namespace {

using namespace rg::proto::proxy;
using rg::fuzz::Bytes;

struct Outcome {
  Parser::Status status = Parser::Status::need_more;
  std::size_t at = 0;  // the stream's byte after the verdict
  std::string reason;
  Header header;
};

Outcome run(std::span<const std::uint8_t> stream, const std::vector<std::size_t>& cut_points) {
  Parser p;
  Outcome o;
  rg::fuzz::for_each_read(stream, cut_points, [&](std::span<const std::uint8_t> read, std::size_t from) {
    const Parser::Result r = p.feed(read);
    FUZZ_CHECK(r.consumed <= read.size());
    if (r.status == Parser::Status::need_more) {
      FUZZ_CHECK(r.consumed == read.size());
      o.at = from + read.size();
      return true;
    }
    o.status = r.status;
    o.at = from + r.consumed;
    o.reason = std::string(p.error_reason());
    if (r.status == Parser::Status::complete) o.header = p.header();
    return false;
  });
  return o;
}

bool same_header(const Header& a, const Header& b) {
  return a.command == b.command && a.family == b.family && a.has_source == b.has_source &&
         a.source_address == b.source_address && a.source_port == b.source_port &&
         a.destination_address == b.destination_address && a.destination_port == b.destination_port &&
         a.tlv_bytes == b.tlv_bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t control = in.byte();
  const std::span<const std::uint8_t> plan = in.take(control & 7);
  const std::span<const std::uint8_t> stream = in.rest();

  const Outcome whole = run(stream, {});
  const auto agrees = [&](const Outcome& o) {
    FUZZ_CHECK(o.status == whole.status);
    FUZZ_CHECK(o.reason == whole.reason);
    if (o.status != Parser::Status::need_more) FUZZ_CHECK(o.at == whole.at);
    if (o.status == Parser::Status::complete) FUZZ_CHECK(same_header(o.header, whole.header));
  };
  agrees(run(stream, rg::fuzz::cuts(plan, stream.size())));
  if (stream.size() <= 2048) agrees(run(stream, rg::fuzz::byte_by_byte(stream.size())));

  const bool starts_v2 = stream.size() >= signature.size() && std::equal(signature.begin(), signature.end(), stream.begin());
  const std::string_view v1 = "PROXY ";
  const bool starts_v1 = stream.size() >= v1.size() && rg::fuzz::chars(stream.first(v1.size())) == v1;
  FUZZ_CHECK(looks_like_proxy(stream) == (starts_v2 || starts_v1));
  if (whole.status == Parser::Status::error && whole.reason.find("version 1") != std::string::npos)
    FUZZ_CHECK(starts_v1 && whole.at == v1.size());

  if (whole.status == Parser::Status::complete) {
    FUZZ_CHECK(starts_v2 && looks_like_proxy(stream));
    FUZZ_CHECK((stream[12] >> 4) == 2);
    const std::size_t length = static_cast<std::size_t>(stream[14] << 8 | stream[15]);
    FUZZ_CHECK(whole.at == fixed_bytes + length && whole.at <= header_bytes_max);
    const Header& h = whole.header;
    const bool ip = h.family == Family::inet || h.family == Family::inet6;
    const std::uint8_t transport = stream[13] & 0x0F;
    FUZZ_CHECK(h.has_source == (ip && h.command == Command::proxy && transport == 1));
    if (h.family != Family::unix_socket && transport == (ip ? 1 : 0)) {
      const std::size_t block = ip ? (h.family == Family::inet ? 12 : 36) : 0;
      const std::span<const std::uint8_t> tlvs = stream.subspan(fixed_bytes + block, whole.at - fixed_bytes - block);
      FUZZ_CHECK(tlvs.size() == h.tlv_bytes);
      Bytes again(header_bytes_max);
      const std::size_t n = encode(h, tlvs, again);
      FUZZ_CHECK(n == whole.at);
      FUZZ_CHECK(std::equal(again.begin(), again.begin() + static_cast<std::ptrdiff_t>(n), stream.begin()));
    }
  }
  return 0;
}
