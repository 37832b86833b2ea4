// The PROXY protocol (version 2) on connections from balancers
// (proxy_protocol_from).  HAProxy with send-proxy-v2 puts a binary header
// before the client's first byte, below TLS, saying whose connection it is.
// The worker reads it before anything else, then counts the connection per
// IP under the client's address, and hands the bytes after it to the byte
// stream.  A connection from any other address that opens with a PROXY
// header is refused: otherwise a client could name any address it likes.
#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

namespace proxy = rg::proto::proxy;

void Worker::on_handshake_wire(std::uint32_t slot, std::span<const std::uint8_t> wire) {
  const Conn& k = conns_[slot];
  if (awaiting_proxy(slot)) {
    handle_proxy_bytes(slot, wire);
    return;
  }
  // Only a connection's first bytes can be a header: nothing parsed yet
  // (no parse slot held, no TLS handshake begun).
  const bool first_bytes = (k.flags & f_tls) ? !tls_.started(slot) : k.aux == nil && k.pending_const == Const::none;
  if (first_bytes && proxy::looks_like_proxy(wire)) {
    refuse_proxy(slot, Refusal::proxy_untrusted,
                 "PROXY protocol header from an address not listed in proxy_protocol_from");
    return;
  }
  stream_of(k).on_recv(slot, wire);
}

void Worker::handle_proxy_bytes(std::uint32_t slot, std::span<const std::uint8_t> wire) {
  Conn& k = conns_[slot];
  proxy::Parser* parser;
  if (k.flags & f_aux_parser) {
    parser = &parsers_[k.aux].proxy;
  } else {
    proxy_scratch_ = proxy::Parser{};
    parser = &proxy_scratch_;
  }
  const proxy::Parser::Result r = parser->feed(wire);
  if (r.status == proxy::Parser::Status::need_more) {
    if (parser == &proxy_scratch_) {
      // The header arrived split: its parse state needs a home until the rest comes.
      k.aux = acquire_parser();
      if (k.aux == nil) {
        set_awaiting_proxy(slot, false);
        answer_const(slot, Const::busy_http, Refusal::busy);
        return;
      }
      k.flags |= f_aux_parser;
      parsers_[k.aux].proxy = proxy_scratch_;
    }
    return;
  }
  if (r.status == proxy::Parser::Status::error) {
    refuse_proxy(slot, Refusal::proxy_header, parser->error_reason());
    return;
  }
  const proxy::Header header = parser->header();
  release_aux(k);
  set_awaiting_proxy(slot, false);
  counters_.proxy_headers_total[header.command == proxy::Command::proxy ? 1 : 0].add();
  if (header.has_source && per_ip_) {
    const PeerAddress client = header.family == proxy::Family::inet ? PeerAddress::v4(header.source_address.data())
                                                                     : PeerAddress{header.source_address};
    const std::uint32_t key = PerIpCounts::key(client.storage());
    if (shared_.per_ip.add(id_, key) > config_.per_ip_limit) {
      shared_.per_ip.remove(id_, key);
      answer_const(slot, Const::per_ip_http, Refusal::per_ip);
      return;
    }
    ip_keys_[slot] = key;
  }
  // The bytes after the header are the client's: a ClientHello or a request.
  const std::span<const std::uint8_t> rest = wire.subspan(r.consumed);
  if (!rest.empty()) stream_of(k).on_recv(slot, rest);
}

// A malformed header from a balancer (a misconfiguration: worth a warning),
// or a header from an address that is no balancer.  Plain connections get
// 400 naming what was wrong; TLS ones, whose handshake has not begun, a
// plaintext alert.
void Worker::refuse_proxy(std::uint32_t slot, Refusal why, std::string_view reason) {
  Conn& k = conns_[slot];
  set_awaiting_proxy(slot, false);
  std::uint64_t dropped = 0;
  if (conn_log_.allow(now_ms_, dropped))
    RG_LOG(warn, "worker %u: refused a connection's PROXY header (%s): %s (%u similar lines suppressed)", id_,
           refusal_name(why), std::string(reason), dropped);
  if (k.flags & f_tls) {
    release_aux(k);
    answer_const(slot, Const::proxy_http, why);
    return;
  }
  answer_error(slot, 400, reason, 0, why);
}

}  // namespace rg::server
