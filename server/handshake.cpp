// The HTTP upgrade: parsing the request (in one piece, or split across reads
// with a parse slot from the pool), the endpoint's checks, admission at the
// upgrade (server/admission.h), and every answer a handshake can end in: the
// 101, an error with its reason, or a constant built once at start-up.
#include <cstring>
#include <ctime>
#include <optional>

#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

// The answers every connection may be given, built once.
void Worker::build_constant_answers() {
  const auto text = [this](Const what) -> ConstAnswer& { return consts_[static_cast<std::size_t>(what)]; };
  const auto http_refusal = [&](Const what, std::uint16_t status, std::string_view message) {
    text(what).len = http::build_refusal(text(what).bytes, status, message, config_.retry_after_s);
  };
  const auto ws_close = [&](Const what, std::uint16_t code, std::string_view reason) {
    ConstAnswer& a = text(what);
    a.len = ws::build_close_frame({reinterpret_cast<std::uint8_t*>(a.bytes.data()), a.bytes.size()}, code, reason);
  };
  http_refusal(Const::busy_http, 503, "Server at maximum connection capacity");
  http_refusal(Const::per_ip_http, 429, "Too many connections from your address (per_ip_limit)");
  http_refusal(Const::rate_http, 503,
               "Server is accepting new connections at its configured rate limit (accept_rate)");
  text(Const::shutdown_http).len =
      http::build_error(text(Const::shutdown_http).bytes, 503, "server shutting down", config_.retry_after_s);
  text(Const::proxy_http).len =
      http::build_error(text(Const::proxy_http).bytes, 400, "PROXY protocol header refused", 0);
  ws_close(Const::busy_ws, 1013, "server busy: too many active sessions");
  ws_close(Const::shutdown_ws, 1001, "server shutting down");
  ws_close(Const::idle_ws, 1000, "idle timeout");
  // FIN + ping, empty, unmasked.
  text(Const::ping_ws).bytes[0] = static_cast<char>(0x89);
  text(Const::ping_ws).len = 2;
}

std::uint32_t Worker::acquire_parser() {
  return parsers_.acquire([&] { return new (std::nothrow) ParseSlot(http_limits_); });
}

void Worker::handle_handshake_bytes(std::uint32_t slot, std::span<const std::uint8_t> data) {
  Conn& k = conns_[slot];
  if (k.pending_const != Const::none || (k.aux != nil && !(k.flags & f_aux_parser))) return;  // answered already
  http::UpgradeParser* parser;
  if (k.flags & f_aux_parser) {
    parser = &parsers_[k.aux].parser;
  } else {
    scratch_ = http::UpgradeParser(http_limits_);
    parser = &scratch_;
  }
  const auto r = parser->feed(data);
  if (r.status == http::UpgradeParser::Status::need_more) {
    if (parser == &scratch_) {
      // The request arrived split: its parse state now needs a home.
      k.aux = acquire_parser();
      if (k.aux == nil) {
        answer_const(slot, Const::busy_http, Refusal::busy);
        return;
      }
      k.flags |= f_aux_parser;
      parsers_[k.aux].parser = scratch_;
    }
    return;
  }
  if (r.status == http::UpgradeParser::Status::error) {
    answer_error(slot, parser->error_status(), parser->error_reason(), 0);
    return;
  }
  const http::Decision d = http::decide(*parser, policy_);
  if (d.status != 101) {
    answer_error(slot, d.status, d.reason, 0);
    return;
  }
  if (d.route == http::Route::pubsub && !check_pubsub_request(slot, *parser)) return;  // answered
  if (d.route == http::Route::echo && config_.echo_auth == Auth::jwt && !check_token(slot, *parser)) return;
  UpgradeFigures figures;
  figures.kernel_refuse = shared_.kernel.refuse.load(std::memory_order_relaxed);
  figures.buffered_bytes = shared_.buffered_bytes();
  figures.max_buffered_bytes = shared_.max_buffered_bytes;
  figures.refuse_percent = config_.kernel_refuse_percent;
  figures.max_connections = shared_.max_connections;
  // The global budgets first, without counting: a storm of refusals on them
  // must not hammer the shared open_connections lines.
  std::optional<Refusal> why = admit_upgrade(figures);
  if (!why) {
    // Count, then compare the sum: when two workers admit at once each sees
    // the other's count (sequentially consistent: a locked add and plain
    // loads on x86), so max_connections is never exceeded; the race costs
    // at most a spare refusal.
    counters_.open_connections.fetch_add(1);
    figures.open_connections = shared_.open_connections();
    why = admit_upgrade(figures);
    if (why) counters_.open_connections.fetch_sub(1, std::memory_order_relaxed);
  }
  if (why) {
    refuse_capacity(slot, *parser, d.subprotocol, *why);
    return;
  }
  const std::uint32_t response = responses_.take();
  if (response == nil || (d.route == http::Route::pubsub && !open_pubsub(slot, *parser))) {
    if (response != nil) responses_.give(response);
    counters_.open_connections.fetch_sub(1, std::memory_order_relaxed);
    release_aux(k);
    answer_const(slot, Const::busy_http, Refusal::busy);
    return;
  }
  {
    const std::uint32_t started_at = k.deadline_ms - static_cast<std::uint32_t>(config_.handshake_timeout_ms);
    counters_.handshake_ms.record(rel_now() - started_at);
  }
  Response& out = responses_[response];
  out.len = static_cast<std::uint16_t>(http::build_switching_protocols(out.bytes, parser->key(), d.subprotocol));
  out.sent = 0;
  release_aux(k);  // the parser (if any) is done; `d` and the key are used up
  k.aux = response;
  k.state = State::open;
  k.endpoint = d.route == http::Route::pubsub ? Endpoint::pubsub : Endpoint::echo;
  k.last_rx_ms = rel_now();
  arm_heartbeat(slot);
  k.flags |= f_upgraded;  // open_connections was counted above
  counters_.upgraded_total.add();
  // Bytes after the request already belong to the WebSocket stream.
  const std::span<const std::uint8_t> rest = data.subspan(r.consumed);
  pump_send(slot);
  if (k.sub != nil) subscribe_at_connect(slot);
  if (!rest.empty()) handle_ws_bytes(slot, rest);
}

// A refusal for lack of capacity: the JSON 503, or with reject = close an
// upgrade followed at once by close 1013, for clients that only understand
// close codes.  Either way the connection then lingers until the client goes.
void Worker::refuse_capacity(std::uint32_t slot, const http::UpgradeParser& parser, std::string_view subprotocol,
                             Refusal why) {
  Conn& k = conns_[slot];
  const std::uint32_t response = reject_with_close_ ? responses_.take() : nil;
  if (response == nil) {
    release_aux(k);
    answer_const(slot, Const::busy_http, why);
    return;
  }
  static constexpr std::string_view reason = "server at maximum connection capacity, try again later";
  Response& out = responses_[response];
  const std::size_t n = http::build_switching_protocols(out.bytes, parser.key(), subprotocol);
  static_assert(http::response_bytes_max >= 300 + ws::close_frame_bytes(reason));
  const std::size_t close = ws::build_close_frame(
      {reinterpret_cast<std::uint8_t*>(out.bytes.data()) + n, out.bytes.size() - n}, 1013, reason);
  out.len = static_cast<std::uint16_t>(n + close);
  out.sent = 0;
  release_aux(k);  // after the key was used
  k.aux = response;
  count_refusal(why);
  start_linger(slot);
}

void Worker::answer_error(std::uint32_t slot, std::uint16_t status, std::string_view reason,
                          std::uint32_t retry_after_s, std::optional<Refusal> why) {
  Conn& k = conns_[slot];
  // Reasons are string literals, never parser memory, so the parser can go.
  release_aux(k);
  k.aux = responses_.take();
  if (k.aux == nil) {
    answer_const(slot, Const::busy_http, Refusal::busy);  // what the client is told
    return;
  }
  count_refusal(why ? *why : refusal_for_status(status));
  Response& out = responses_[k.aux];
  out.len = static_cast<std::uint16_t>(http::build_error(out.bytes, status, reason, retry_after_s));
  out.sent = 0;
  RG_LOG(debug, "worker %u: slot %u answered %d: %s", id_, slot, status, std::string(reason));
  start_linger(slot);
  pump_send(slot);
}

std::span<const std::uint8_t> Worker::const_answer(Const what) const noexcept {
  const ConstAnswer& a = consts_[static_cast<std::size_t>(what)];
  return {reinterpret_cast<const std::uint8_t*>(a.bytes.data()), a.len};
}

void Worker::answer_const(std::uint32_t slot, Const what, Refusal why) {
  Conn& k = conns_[slot];
  if (what == Const::busy_ws) counters_.busy_closes_total.add();
  else count_refusal(why);
  // Refused before its TLS handshake began: it is no handshake in flight.
  if ((k.flags & f_tls) && !tls_.started(slot)) tls_.refuse(slot);
  k.pending_const = what;
  start_linger(slot);
  pump_send(slot);
}


// With auth = jwt (pub/sub) or echo_auth = jwt (echo): the token from
// ?token= or Authorization: Bearer, verified into claims_.  Answers 401 and
// returns false when it is missing or bad.
bool Worker::check_token(std::uint32_t slot, const http::UpgradeParser& parser) {
  RG_ASSERT(verifier_ != nullptr);
  bool in_query = false;
  std::string_view token = pubsub::query_param(parser.query(), "token", in_query);
  if (!in_query) token = parser.bearer_token();
  if (token.empty()) {
    answer_error(slot, 401, "a token is required: pass ?token=JWT or Authorization: Bearer JWT", 0);
    return false;
  }
  claims_ = verifier_->verify(token, static_cast<std::int64_t>(time(nullptr)));
  if (!claims_.ok()) {
    answer_error(slot, 401, jwt::error_message(claims_.error), 0);
    return false;
  }
  return true;
}

}  // namespace rg::server
