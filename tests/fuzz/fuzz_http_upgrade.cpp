// proto/http_upgrade.h: UpgradeParser and decide().
//
// Input: [flags] [plan bytes...] [request bytes...]
//   flags bits 0-1  limits: default, small, from the next 4 input bytes, default
//         bit 2     policy: echo only / echo + pub/sub + subprotocols
//         bits 3-5  how many plan bytes follow (read sizes, fuzz_support.h cuts())
// The request (with whatever follows it) is fed whole, in the plan's reads
// and byte by byte: every feeding must see the same thing.  Then the
// properties a result must have, and the responses built from it.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "proto/http_upgrade.h"

namespace {

using namespace rg::proto::http;
using rg::fuzz::Input;
using Status = UpgradeParser::Status;

struct Outcome {
  Status status = Status::need_more;
  std::size_t consumed = 0;
  std::uint16_t error_status = 0;
  std::string error_reason;
  Method method = Method::unknown;
  std::string path, query, version, key, ws_version, protocols, bearer;
  bool path_too_long = false, query_truncated = false, host = false, upgrade_seen = false, upgrade_ws = false,
       connection_upgrade = false;
  std::uint8_t key_count = 0, ws_version_count = 0, authorization_count = 0;
  std::uint32_t headers = 0;
  // decide(), when complete
  std::uint16_t decided = 0;
  std::string decided_reason, subprotocol;
  Route route = Route::echo;

  bool operator==(const Outcome&) const = default;
};

Outcome run(std::span<const std::uint8_t> stream, const Limits& limits, const UpgradePolicy& policy,
            const std::vector<std::size_t>& cut_points) {
  UpgradeParser p(limits);
  Outcome o;
  rg::fuzz::for_each_read(stream, cut_points, [&](std::span<const std::uint8_t> read, std::size_t) {
    const UpgradeParser::Result r = p.feed(read);
    FUZZ_CHECK(r.consumed <= read.size());
    o.consumed += r.consumed;
    o.status = r.status;
    if (r.status == Status::need_more) FUZZ_CHECK(r.consumed == read.size());
    return r.status == Status::need_more;  // feeding a finished parser is a programmer error
  });
  if (o.status == Status::error) {
    o.error_status = p.error_status();
    o.error_reason = p.error_reason();
  }
  o.method = p.method();
  o.path = p.path();
  o.query = p.query();
  o.version = p.version();
  o.key = p.key();
  o.ws_version = p.ws_version();
  o.protocols = p.protocols();
  o.bearer = p.bearer_token();
  o.path_too_long = p.path_too_long();
  o.query_truncated = p.query_truncated();
  o.host = p.host_seen();
  o.upgrade_seen = p.upgrade_seen();
  o.upgrade_ws = p.upgrade_websocket();
  o.connection_upgrade = p.connection_upgrade();
  o.key_count = p.key_count();
  o.ws_version_count = p.ws_version_count();
  o.authorization_count = p.authorization_count();
  o.headers = p.header_count();
  if (o.status == Status::complete) {
    const Decision d = decide(p, policy);
    o.decided = d.status;
    o.decided_reason = d.reason;
    o.subprotocol = d.subprotocol;
    o.route = d.route;
  }
  return o;
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    if (trim(list.substr(0, comma)) == token) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void check_outcome(const Outcome& o, std::size_t size, const Limits& limits, const UpgradePolicy& policy) {
  FUZZ_CHECK(o.consumed <= size);
  FUZZ_CHECK(o.headers <= limits.headers_max);
  FUZZ_CHECK(o.path.size() <= target_bytes_max);
  FUZZ_CHECK(o.protocols.size() <= protocols_bytes_max);
  FUZZ_CHECK(o.bearer == trim(o.bearer));
  FUZZ_CHECK(o.key_count > 0 || o.key.empty());
  FUZZ_CHECK(o.upgrade_seen || !o.upgrade_ws);
  if (o.path.find('?') != std::string::npos) FUZZ_CHECK(o.query == o.path.substr(o.path.find('?') + 1));
  else FUZZ_CHECK(o.query.empty());

  std::array<char, response_bytes_max> out{};
  switch (o.status) {
    case Status::need_more:
      FUZZ_CHECK(o.consumed == size);
      break;
    case Status::error: {
      FUZZ_CHECK(o.error_status == 400 || o.error_status == 414 || o.error_status == 431);
      FUZZ_CHECK(!o.error_reason.empty());
      FUZZ_CHECK(o.consumed >= 1);
      const std::size_t n = build_error(out, o.error_status, o.error_reason);
      FUZZ_CHECK(n > 0 && n <= out.size());
      FUZZ_CHECK(std::string_view(out.data(), n).starts_with("HTTP/1.1 " + std::to_string(o.error_status) + " "));
      break;
    }
    case Status::complete: {
      FUZZ_CHECK(o.consumed >= 1);
      FUZZ_CHECK(o.bearer.empty() || o.authorization_count == 1);
      const std::string_view path = std::string_view(o.path).substr(0, o.path.find('?'));
      if (o.decided == 101) {
        FUZZ_CHECK(o.decided_reason.empty());
        FUZZ_CHECK(o.method == Method::get && o.version == "HTTP/1.1" && o.host && o.upgrade_ws &&
                   o.connection_upgrade);
        FUZZ_CHECK(o.key_count == 1 && key_valid(o.key));
        FUZZ_CHECK(o.ws_version_count == 1 && o.ws_version == "13");
        FUZZ_CHECK(!o.path_too_long);
        FUZZ_CHECK(o.route == Route::pubsub ? path == policy.pubsub_path : path == policy.echo_path);
        if (!o.subprotocol.empty()) {
          FUZZ_CHECK(has_token(policy.subprotocols, o.subprotocol));
          FUZZ_CHECK(has_token(o.protocols, o.subprotocol));
        }
        const std::size_t n = build_switching_protocols(out, o.key, o.subprotocol);
        FUZZ_CHECK(n > 0 && n <= out.size());
        const std::string_view text(out.data(), n);
        const AcceptKey accept = accept_key(o.key);
        FUZZ_CHECK(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        FUZZ_CHECK(text.find(std::string_view(accept.data(), accept.size())) != std::string_view::npos);
        FUZZ_CHECK(text.ends_with("\r\n\r\n"));
        FUZZ_CHECK(text.find("\r\n\r\n") == n - 4);  // nothing the client sent can end the head early
      } else {
        FUZZ_CHECK(o.decided == 400 || o.decided == 404 || o.decided == 405 || o.decided == 426 ||
                   o.decided == 505);
        FUZZ_CHECK(!o.decided_reason.empty());
        FUZZ_CHECK(o.subprotocol.empty());
        const std::size_t n = build_error(out, o.decided, o.decided_reason, 30);
        FUZZ_CHECK(n > 0 && n <= out.size());
      }
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  const std::uint8_t flags = in.byte();
  Limits limits;
  switch (flags & 3) {
    case 1:
      limits = {64, 256, 8};
      break;
    case 2:
      limits.request_line_bytes_max = 1u + in.byte() * 4u;
      limits.header_bytes_max = 1u + in.u16() % 4096u;
      limits.headers_max = in.byte() % 16u;
      break;
    default:
      break;
  }
  const UpgradePolicy policy = (flags & 4) ? UpgradePolicy{"/echo", "chat, superchat,v2.json", "/ws"}
                                           : UpgradePolicy{"/echo", "", ""};
  const std::span<const std::uint8_t> plan = in.take((flags >> 3) & 7);
  const std::span<const std::uint8_t> stream = in.rest();

  const Outcome whole = run(stream, limits, policy, {});
  check_outcome(whole, stream.size(), limits, policy);
  FUZZ_CHECK(run(stream, limits, policy, rg::fuzz::cuts(plan, stream.size())) == whole);
  if (stream.size() <= 16 * 1024) FUZZ_CHECK(run(stream, limits, policy, rg::fuzz::byte_by_byte(stream.size())) == whole);
  if (whole.status != Status::need_more) {
    // The byte that finished the request (or failed it) is the last one consumed:
    // the bytes up to it say the same, one byte fewer is not enough yet.
    FUZZ_CHECK(run(stream.first(whole.consumed), limits, policy, {}) == whole);
    const Outcome shorter = run(stream.first(whole.consumed - 1), limits, policy, {});
    FUZZ_CHECK(shorter.status == Status::need_more);
  }
  return 0;
}
