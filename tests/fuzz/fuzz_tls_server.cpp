// The server side of TLS as ringgate configures it: server/tls_context.cpp's
// SSL_CTX policy, SNI certificate selection (proto/tls_names.h), ALPN and
// session-ticket callbacks, with BoringSSL's record layer and handshake
// behind them, driven as server/tls_stream.cpp drives it (tls_harness.h).
//
// Input: [flags] [read size] [plan bytes...] [body...]
//   flags bit 0     the body starts with a ClientHello in fields (below),
//                   else it is the client's bytes as they are
//         bits 1-3  how many plan bytes follow (read sizes, fuzz_support.h's
//                   cuts); 0: the split feeding goes byte by byte
//         bit 4     the split feeding's SSL_read takes (read size + 1) bytes
//                   at a time instead of 16 KiB
// ClientHello in fields, every length but the extensions' own computed here:
//   [legacy_version: 2] [random: 32] [session_id length: 1] [session_id]
//   [cipher_suites length: 2] [suites] [compression length: 1] [methods]
//   [extension count: 1] then per extension [type: 2] [length: 2] [data]
//   (a length past the input's end takes what is left); server_name (0) data
//   is one host name, wrapped in its list here, and ALPN (16) data is the
//   protocol list without its length.  Handshake header and record header
//   (records of at most 16 KiB) are added; the rest of the body follows as it
//   is (the client's next flights).  make_tls_seeds.py writes both forms from
//   real clients' transcripts.
//
// The client's bytes are fed three times, each to a new server SSL: whole,
// whole again, and cut at the plan's points.  What must hold:
//  - every feeding ends in the same class (wants more input, handshake done
//    and open, the peer's close_notify read, fatal error), a fatal one with
//    the same SSL_get_error answer and the same reason (the first error of the
//    SSL library in BoringSSL's queue), with the same plaintext read, the
//    same version, resumption, ALPN and certificate when the handshake is
//    done;
//  - the output of the cut feeding is the whole feeding's when two whole
//    feedings wrote the same (the random stream is fixed, so output differs
//    only where BoringSSL's own randomness, ECDSA nonces, enters);
//  - ALPN is http/1.1 or nothing; SNI lands on the certificate
//    TlsContext::certificate_for names (the default when none), which
//    covers the name; ticket_key and certificate_for read only their inputs
//    (ASan: exact-size copies of the SNI and of the ticket's first 16
//    bytes); no leak, no crash, no error left in BoringSSL's queue.
// How far BoringSSL got (its messages, alerts, state and reason codes) is
// fed back to libFuzzer as extra counters, as BoringSSL is not instrumented.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "proto/tls_names.h"
#include "tls_harness.h"

namespace {

using rg::fuzz::Bytes;
using rg::fuzz::tls::Connection;
using rg::fuzz::tls::Phase;
using rg::server::TlsContext;

// ---- feedback from inside BoringSSL

// libFuzzer reads the section __libfuzzer_extra_counters as coverage.
#if defined(__clang__)
#define RG_EXTRA_COUNTERS __attribute__((section("__libfuzzer_extra_counters"), used))
#else
#define RG_EXTRA_COUNTERS
#endif
RG_EXTRA_COUNTERS std::array<std::uint8_t, 1 << 12> extra_counters{};

void count(std::uint64_t what) {
  what *= 0x9E3779B97F4A7C15ull;
  std::uint8_t& c = extra_counters[(what >> 40) % extra_counters.size()];
  if (c < 255) ++c;
}

void count_connection(const Connection& c) {
  // Each message in the order it came, paired with the one before it.
  std::uint32_t before = 0;
  for (const std::uint32_t m : c.messages()) {
    count(1ull << 60 | std::uint64_t{before} << 32 | m);
    before = m;
  }
  count(2ull << 60 | reinterpret_cast<std::uintptr_t>(c.state()));
  count(3ull << 60 | std::uint64_t(static_cast<unsigned>(c.phase())) << 32 | static_cast<unsigned>(c.reason()));
  if (c.handshake_done()) count(4ull << 60 | std::uint64_t(SSL_version(c.ssl())) << 1 | SSL_session_reused(c.ssl()));
}

// ---- the ClientHello in fields

void put16(Bytes& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}

void put(Bytes& b, std::span<const std::uint8_t> s) { b.insert(b.end(), s.begin(), s.end()); }

struct Built {
  Bytes stream;
  std::string sni;  // the server_name given in fields, if any
  bool has_sni = false;
  Bytes ticket;  // session_ticket's data, or pre_shared_key's first identity
};

Built client_hello_from_fields(rg::fuzz::Input& in) {
  Bytes body;
  put(body, in.take(2));
  put(body, in.take(32));
  const std::span<const std::uint8_t> sid = in.take(in.byte());
  body.push_back(static_cast<std::uint8_t>(sid.size()));
  put(body, sid);
  const std::span<const std::uint8_t> suites = in.take(in.u16());
  put16(body, suites.size());
  put(body, suites);
  const std::span<const std::uint8_t> methods = in.take(in.byte());
  body.push_back(static_cast<std::uint8_t>(methods.size()));
  put(body, methods);
  Built built;
  const unsigned extensions = in.byte();
  if (extensions > 0) {
    Bytes ext;
    for (unsigned i = 0; i < extensions && !in.empty(); ++i) {
      const std::uint16_t type = in.u16();
      const std::span<const std::uint8_t> data = in.take(in.u16());
      put16(ext, type);
      if (type == 0) {  // server_name: one host_name
        put16(ext, data.size() + 5);
        put16(ext, data.size() + 3);
        ext.push_back(0);
        put16(ext, data.size());
        if (!built.has_sni) built.sni.assign(rg::fuzz::chars(data));
        built.has_sni = true;
      } else if (type == 16) {  // ALPN: the list's length
        put16(ext, data.size() + 2);
        put16(ext, data.size());
      } else {
        put16(ext, data.size());
        if (type == 35) built.ticket.assign(data.begin(), data.end());
        if (type == 41 && data.size() > 4) built.ticket.assign(data.begin() + 4, data.end());
      }
      put(ext, data);
    }
    put16(body, ext.size());
    put(body, ext);
  }
  Bytes hello{1, static_cast<std::uint8_t>(body.size() >> 16), static_cast<std::uint8_t>(body.size() >> 8),
              static_cast<std::uint8_t>(body.size())};
  put(hello, body);
  for (std::size_t at = 0; at < hello.size(); at += 16384) {
    const std::size_t n = std::min<std::size_t>(16384, hello.size() - at);
    built.stream.insert(built.stream.end(), {0x16, 0x03, 0x01});
    put16(built.stream, n);
    built.stream.insert(built.stream.end(), hello.begin() + static_cast<std::ptrdiff_t>(at),
                        hello.begin() + static_cast<std::ptrdiff_t>(at + n));
  }
  put(built.stream, in.rest());
  return built;
}

// ---- one feeding

struct Outcome {
  Phase phase = Phase::handshake;
  bool handshake_done = false;
  bool peer_closed = false;
  int error = 0;
  int reason = 0;
  Bytes plaintext;
  Bytes output;
  // When the handshake is done:
  std::uint16_t version = 0;
  bool resumed = false;
  std::string alpn;
  const ssl_ctx_st* certificate = nullptr;
  bool operator==(const Outcome&) const = default;
};

// The end state without the output (compared apart).
bool same_end(const Outcome& a, const Outcome& b) {
  Outcome x = a;
  Outcome y = b;
  x.output.clear();
  y.output.clear();
  return x == y;
}

void check_certificate(const TlsContext& context, SSL* ssl) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const TlsContext::Certificate* chosen = nullptr;
  if (name) {
    // An exact-size copy, so that ASan sees any read past the name.
    const std::size_t len = std::strlen(name);
    const std::unique_ptr<char[]> copy(new char[len + 1]);
    std::memcpy(copy.get(), name, len + 1);
    chosen = context.certificate_for(copy.get());
    if (chosen) {
      FUZZ_CHECK(std::any_of(chosen->names.begin(), chosen->names.end(),
                             [&](const std::string& n) { return rg::proto::tls::name_matches(n, name); }));
    } else {
      for (const TlsContext::Certificate& c : context.certificates())
        for (const std::string& n : c.names) FUZZ_CHECK(!rg::proto::tls::name_matches(n, name));
    }
  }
  FUZZ_CHECK(SSL_get_SSL_CTX(ssl) == (chosen ? chosen->ctx : context.ctx()));
}

Outcome feed(const TlsContext& context, std::span<const std::uint8_t> stream, const std::vector<std::size_t>* cuts,
             std::size_t read_max) {
  Connection c(context);
  Outcome o;
  if (cuts) {
    rg::fuzz::for_each_read(stream, *cuts, [&](std::span<const std::uint8_t> read, std::size_t) {
      c.feed(read, read_max);
      Bytes out = c.take_output();
      o.output.insert(o.output.end(), out.begin(), out.end());
      return c.phase() != Phase::failed && !c.peer_closed();
    });
  } else {
    c.feed(stream, read_max);
    o.output = c.take_output();
  }
  FUZZ_CHECK(ERR_peek_error() == 0);  // drive() takes every error it causes
  o.phase = c.phase();
  o.handshake_done = c.handshake_done();
  o.peer_closed = c.peer_closed();
  o.error = c.error();
  o.reason = c.reason();
  o.plaintext = c.plaintext();
  if (o.phase == Phase::failed) {
    // A fatal error is SSL_ERROR_SSL (nothing here can fail for want of
    // memory or of a syscall), except:
    //  - where BoringSSL refuses without saying why: an empty server name,
    //    or one with a NUL, gets the unrecognized_name alert and no error in
    //    the queue, which SSL_get_error reports as SSL_ERROR_SYSCALL (corpus:
    //    fields_sni_empty, fields_sni_nul);
    //  - a close_notify alert before the handshake is done ends it with
    //    SSL_ERROR_ZERO_RETURN, which TlsStream::drive, like drive() here,
    //    takes for a failed handshake (finding-close_notify_in_handshake).
    FUZZ_CHECK(o.error == SSL_ERROR_SSL || (o.error == SSL_ERROR_SYSCALL && o.reason == 0) ||
               (o.error == SSL_ERROR_ZERO_RETURN && !o.handshake_done));
  } else {
    FUZZ_CHECK(o.error == 0 && o.reason == 0);
  }
  if (!o.handshake_done) FUZZ_CHECK(o.plaintext.empty());
  if (o.handshake_done) {
    SSL* ssl = c.ssl();
    o.version = static_cast<std::uint16_t>(SSL_version(ssl));
    FUZZ_CHECK(o.version == TLS1_2_VERSION || o.version == TLS1_3_VERSION);
    o.resumed = SSL_session_reused(ssl) == 1;
    const std::uint8_t* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    o.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
    FUZZ_CHECK(o.alpn.empty() || o.alpn == "http/1.1");
    o.certificate = SSL_get_SSL_CTX(ssl);
    check_certificate(context, ssl);
  }
  count_connection(c);
  return o;
}

// The ticket callback's key lookup on a ticket's first 16 bytes, in a copy
// of exactly that size.
void check_ticket_lookup(const TlsContext& context, std::span<const std::uint8_t> ticket) {
  if (ticket.size() < 16) return;
  const std::span<const std::uint8_t> name16 = ticket.first(16);
  const std::unique_ptr<std::uint8_t[]> copy(new std::uint8_t[16]);
  std::memcpy(copy.get(), name16.data(), 16);
  const TlsContext::TicketKey* key = context.ticket_key(copy.get());
  if (key) FUZZ_CHECK(std::memcmp(key->name.data(), copy.get(), 16) == 0);
}

}  // namespace

namespace {
// RINGGATE_FUZZ_VERBOSE=1: one line per input, how the whole feeding ended
// (libFuzzer builds).
bool verbose = false;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)rg::fuzz::tls::context();
  const char* v = std::getenv("RINGGATE_FUZZ_VERBOSE");
  verbose = v && *v == '1';
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const TlsContext& context = rg::fuzz::tls::context();
  rg::fuzz::Input in(data, size);
  const std::uint8_t flags = in.byte();
  const std::uint8_t read_size = in.byte();
  const std::span<const std::uint8_t> plan = in.take((flags >> 1) & 7);
  Built built;
  if (flags & 1) {
    built = client_hello_from_fields(in);
  } else {
    built.stream.assign(in.rest().begin(), in.rest().end());
  }
  const std::span<const std::uint8_t> stream(built.stream);
  const std::vector<std::size_t> cut_points = plan.empty() ? rg::fuzz::byte_by_byte(stream.size())
                                                           : rg::fuzz::cuts(plan, stream.size());
  const std::size_t split_read_max = (flags & 0x10) ? read_size + 1u : 16 * 1024;

  const Outcome whole = feed(context, stream, nullptr, 16 * 1024);
  const Outcome again = feed(context, stream, nullptr, 16 * 1024);
  const Outcome split = feed(context, stream, &cut_points, split_read_max);
  // A connection's end depends on its bytes only, not on the ones before it.
  FUZZ_CHECK(same_end(whole, again));
  FUZZ_CHECK(same_end(whole, split));
  if (whole.output == again.output) FUZZ_CHECK(split.output == whole.output);
  if (verbose) {
    static constexpr const char* phases[] = {"wants more", "open", "failed"};
    std::fprintf(stderr,
                 "fuzz_tls_server: %s%s%s, reason %d, version %#x%s, alpn '%s', %zu plaintext bytes, output %s\n",
                 phases[static_cast<int>(whole.phase)], whole.handshake_done ? " (handshake done)" : "",
                 whole.peer_closed ? " (close_notify read)" : "", whole.reason, whole.version,
                 whole.resumed ? " resumed" : "", whole.alpn.c_str(), whole.plaintext.size(),
                 whole.output == again.output ? "reproducible (compared)" : "not reproducible");
  }

  if (built.has_sni && built.sni.find('\0') == std::string::npos) {
    // certificate_for on the name as given, NUL-terminated in a buffer of
    // its own size (BoringSSL refuses some names before the callback sees them).
    const std::unique_ptr<char[]> copy(new char[built.sni.size() + 1]);
    std::memcpy(copy.get(), built.sni.c_str(), built.sni.size() + 1);
    (void)context.certificate_for(copy.get());
  }
  check_ticket_lookup(context, built.ticket);
  return 0;
}
