#include "tools/load/plan.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "proto/pubsub.h"
#include "tools/load/fanout.h"

namespace rg::load {

namespace {

bool parse_u64(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc{} && r.ptr == text.data() + text.size();
}

bool parse_double(std::string_view text, double& out) {
  if (text.empty()) return false;
  // std::from_chars for double is in g++ 11+.
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc{} && r.ptr == text.data() + text.size() && std::isfinite(out);
}

bool parse_rate(std::string_view text, double& out) {
  return parse_double(text, out) && out >= 0 && out <= rate_max_per_s;
}

struct ModeDefaults {
  std::uint64_t connections;
  double rate_per_s;
  std::uint64_t duration_ms;
};

ModeDefaults defaults_for(Mode mode) {
  switch (mode) {
    case Mode::hold: return {1'000, 1'000, 10'000};
    case Mode::ramp: return {1'000, 0, 0};
    case Mode::flood: return {10'000, 0, 30'000};
    case Mode::echo: return {100, 0, 10'000};
    case Mode::fanout: return {100, 0, 60'000};  // duration: the longest publishing phase
  }
  return {1'000, 1'000, 10'000};
}

// fanout: --rate moves to the publisher (subscribers connect unpaced), and
// the plan must fit the publish board and the channel name rules.
bool check_fanout(Options& o, bool have_rate, std::string& error) {
  if (have_rate) o.publish_rate_per_s = o.rate_per_s;
  // Subscribers connect at --connect-rate: a million unpaced connects on
  // one host outrun the listen backlogs and most time out.
  o.rate_per_s = o.connect_rate_per_s;
  if (o.size_bytes > fanout::fanout_size_bytes_max) {
    error = "--size " + std::to_string(o.size_bytes) + " is more than a fanout body may be (" +
            std::to_string(fanout::fanout_size_bytes_max) + " bytes, the server's default max_publish_size)";
    return false;
  }
  if (o.channels > o.connections) {
    error = "--channels " + std::to_string(o.channels) + " is more than --connections " +
            std::to_string(o.connections) + ": every channel needs a subscriber";
    return false;
  }
  if (o.messages > fanout_publishes_max / o.channels) {
    error = "fanout plan of " + std::to_string(o.channels) + " channels x " + std::to_string(o.messages) +
            " messages is above " + std::to_string(fanout_publishes_max) + " publishes";
    return false;
  }
  // The longest name is the last channel's.
  const std::string longest = o.channel_prefix + std::to_string(o.channels - 1);
  if (const auto check = proto::pubsub::check_name(longest); !check.ok()) {
    error = "channel name '" + longest + "' (from --channel-prefix): " +
            std::string(proto::pubsub::name_error_text(check.error));
    return false;
  }
  std::vector<Target> apis;
  return parse_apis(o.api_url, apis, error);
}

}  // namespace

std::string_view mode_name(Mode mode) noexcept {
  switch (mode) {
    case Mode::hold: return "hold";
    case Mode::ramp: return "ramp";
    case Mode::flood: return "flood";
    case Mode::echo: return "echo";
    case Mode::fanout: return "fanout";
  }
  return "?";
}

bool parse_duration_ms(std::string_view text, std::uint64_t& ms) {
  double scale_ms = 1000.0;  // a bare number is seconds
  if (text.ends_with("ms")) {
    scale_ms = 1.0;
    text.remove_suffix(2);
  } else if (text.ends_with("s")) {
    text.remove_suffix(1);
  } else if (text.ends_with("m")) {
    scale_ms = 60'000.0;
    text.remove_suffix(1);
  } else if (text.ends_with("h")) {
    scale_ms = 3'600'000.0;
    text.remove_suffix(1);
  }
  double value = 0;
  if (!parse_double(text, value) || value < 0) return false;
  const double total = value * scale_ms;
  if (total > static_cast<double>(duration_ms_max)) return false;
  ms = static_cast<std::uint64_t>(std::llround(total));
  return true;
}

std::string help_text() {
  return R"(ringgate-load: io_uring load generator for WebSocket servers (ringgate and others)

usage: ringgate-load MODE [options] ws://HOST[:PORT]/PATH
       ringgate-load MODE [options] --tls-ca FILE wss://HOST[:PORT]/PATH

HOST is a numeric IPv4 address, [IPv6] or localhost.  A wss:// target makes
every connection of every mode speak TLS (see "wss://" below).  Only loopback targets
(127.0.0.0/8, ::1) are accepted, unless the tool runs inside a network
namespace other than the initial one.  Every run stops by itself: it is
bounded by --connections and by --duration (or --hold per ramp step).

modes:
  hold    open --connections at --rate, answer pings, keep them --duration
          seconds after the last one opened, then close them cleanly
          (close 1000, wait for the server's close or EOF).
  ramp    for each rate in --rates: open --connections at that rate, hold
          --hold, count upgrades and disconnects after success, close all.
  flood   connect as fast as possible (or at --rate), never closing, until
          --connections attempts or --duration; classify every attempt and
          report the first one that did not upgrade (the breaking point).
          Then watch the open connections for --hold (late closes such as
          1013).  Without --verify-echo the run ends there and the sockets
          are dropped with the ring; with it they are checked, then closed
          cleanly.
  echo    --connections connections each keep --inflight messages of --size
          bytes in flight for --duration; every echo is checked byte for byte.
  fanout  pub/sub delivery check.  --connections subscribers connect
          (unpaced) to PATH?channels=PREFIXi with i = subscriber mod
          --channels, and are ready once the server's {"type":"subscribed"}
          frame arrives.  A publisher thread then POSTs --messages messages
          per channel (round robin over channels) to --api at --rate per
          second, each body {"seq":S,"ts_ns":T} (S per channel from 0, T the
          CLOCK_MONOTONIC send time).  Every subscriber checks the sequence
          of its channel (in order, duplicated, out of order, lost) and times
          each delivery; the run waits up to --settle for the last ones,
          then closes every subscriber cleanly.

options:
  --connections N        connections (ramp: per step).  Defaults: hold 1000,
                         ramp 1000, flood 10000, echo 100, fanout 100.
  --rate R               new connections per second, token bucket; 0 means as
                         fast as possible.  Defaults: hold 1000, others 0.
                         fanout: publishes per second over all channels
                         (default 1000; 0: each as soon as the last one was
                         answered); subscribers connect as fast as possible.
  --rates R1,R2,...      ramp steps (default 50,100,1000,5000,20000), at most 64.
  --duration D           hold: seconds kept after the last connection opened
                         (default 10s); flood: longest run (default 30s); echo:
                         measured seconds (default 10s); fanout: longest
                         publishing phase (default 60s), publishes not sent
                         by then count as unsent.  Units: ms, s, m, h; a bare
                         number is seconds.
  --hold D               ramp: how long each step holds its connections; flood:
                         how long the open connections are watched (for
                         late closes such as 1013) after the last attempt
                         resolved (default 2s).
  --close-timeout D      longest wait for the server's close or EOF after our
                         close frame (5s); then the connection is dropped.
  --handshake-timeout D  longest wait from connect start to the 101 (10s);
                         the attempt counts as timed_out.
  --threads N            at least N threads, one io_uring each (default 1);
                         raised to ceil(connections / RLIMIT_NOFILE), since a
                         ring's direct-descriptor table holds at most
                         RLIMIT_NOFILE slots.
  --sources N            source addresses 127.0.0.2 .. 127.0.0.(N+1) for an
                         IPv4 loopback target.  Default: as many as the port
                         budget needs (half of ip_local_port_range per
                         source/destination pair); a smaller N that cannot fit
                         is refused.  Attempts take the sources round robin
                         (attempt k from source k mod N, across all threads),
                         so in every mode each source gets attempted/N +- 1;
                         the JSON's by_source says what each one got.
  --inflight K           echo: messages in flight per connection (1, at most 4096).
  --size S               echo, --verify-echo: payload bytes per message (20;
                         binary >= 12, text >= 20, at most 16 MiB).
                         fanout: publish bodies are padded to S bytes with a
                         "pad" member (at most 64 KiB; below ~70 the body is
                         left as is), so deliveries can fill socket buffers.
  --binary | --text      echo, --verify-echo: message type (default binary).
  --verify-echo          flood: after the --hold watch, send one --size byte
                         message (binary unless --text, masked) on every
                         connection still open and check its echo byte for
                         byte; each gets --close-timeout to answer.  No echo
                         in time, a wrong one, or a close counts as failed
                         (held_checked = held_echoed + held_echo_failed).
                         Then every connection is closed (close 1000), with
                         --close-timeout for the server's answer.
  --channels M           fanout: channels (default 10, at most --connections);
                         subscriber i takes channel i mod M.
  --messages K           fanout: messages per channel (default 100); M x K is
                         at most 10,000,000 publishes.
  --api URL[,URL...]     fanout: the publish API, http://HOST[:PORT][/PREFIX]
                         (default http://127.0.0.1:9090, ringgate's admin
                         listener); POST PREFIX/publish/NAME, one keep-alive
                         connection.  Loopback only, like the target.  Up to
                         16 URLs (a fleet's nodes): publish i goes to URL
                         i mod n, still one request in flight, so each
                         channel's order is the order published.  An answer
                         may give "recipients" (one node) or "nodes" (through
                         a backplane, where each node counts its own).
  --api-token T          fanout: sent as Authorization: Bearer T.
  --connect-rate R       fanout: subscribers connect at R per second (default
                         0: as fast as the slots allow; pace large runs).
  --channel-prefix P     fanout: channel names are P0 .. P(M-1) (default
                         "fanout-"); names are 1..128 bytes of [A-Za-z0-9._:-].
  --settle D             fanout: longest wait for deliveries after the last
                         publish was answered (default 10s); ends as soon as
                         every expected delivery arrived.
  --stall-percent P      fanout: P% of the subscribers (0 .. 100, default 0)
                         stop reading once publishing begins: every
                         (100/P)-th in channel order, floor(N x P / 100) in
                         all, each channel its share.  Their receive is
                         cancelled, so their kernel buffers fill and the
                         server must deal with slow consumers; they stay open
                         and are not checked (not in expected, lost, latency
                         or the verdict).  At the close phase each is read
                         again, before any close of ours, until the server's
                         close frame, EOF or reset (stalled_closed_by_server)
                         or 250 ms without data (--close-timeout at most),
                         then we close it (stalled_closed_by_tool).
  --seed N               seed for keys and masks (default: from the clock).
  --json                 print one JSON object as the last line of stdout.
  --help                 this text.

wss:// (TLS 1.2 and 1.3, BoringSSL; ALPN http/1.1; the default port is 443):
  --tls-ca FILE          verify the server's certificate chain against the CA
                         certificate(s) in FILE (PEM), and its name (see
                         --tls-server-name).  A wss:// run needs this or
                         --tls-insecure; a failed verification fails the
                         attempt (tls_failed, reason verify_*).
  --tls-insecure         do not verify the server's certificate at all; must be
                         asked for explicitly, and excludes --tls-ca.
  --tls-server-name N    the name sent as SNI and checked against the
                         certificate (default: the URL's host as written, e.g.
                         localhost).  An address is checked against the
                         certificate's IP entries and sent as no SNI.
  --tls-resume           resume TLS sessions: each thread keeps the newest
                         session ticket a server sent it and offers it on its
                         next connections.  The report counts full and resumed
                         handshakes apart (connections that start before a
                         thread's first ticket arrives are full).
  --tls-max-version V    1.2 or 1.3 (default 1.3; 1.2 is the minimum).

  The report adds a tls section: handshakes full and resumed (by version),
  their latency from TCP connected to handshake done, handshakes per second
  and client CPU per handshake over the opening phase, and every handshake
  that began and did not finish, by reason (verify_untrusted, verify_name,
  verify_expired, verify_other, alert_NAME for a fatal alert from the server,
  protocol, eof, reset, timeout, aborted, internal) with the first one in
  words.  Memory: no buffers of its own per idle connection (one BIO and a
  pool of 32 KiB record buffers per thread, held only while ciphertext waits
  or is in flight), certificates shared by all connections; see
  client_rss_per_connection in the report.

output: a progress line on stderr every second; a table on stdout at the
end; with --json, a JSON summary as the last stdout line.  Client CPU time
(getrusage user+sys) and utilisation are reported next to every figure.

exit codes: 0 run completed (see the report for failures), 1 the run could
not start (kernel, memory), 2 bad usage or a refused plan/target, 3 fanout
only: the delivery check failed (messages lost, duplicated, out of order,
misrouted or malformed; subscribers not all ready in time; publishes left
unsent or none answered 200; or an interrupt).  Publishes the API refused
(e.g. 503) are reported but do not fail the check by themselves, and
neither does anything that happens to --stall-percent subscribers.
)";
}

ParseResult parse_options(int argc, const char* const* argv, Options& o, std::string& error) {
  o = Options{};
  bool have_mode = false, have_connections = false, have_rate = false, have_duration = false;
  bool text_flag = false, binary_flag = false;
  std::string_view fanout_flag;  // the first fanout-only option seen
  std::string_view tls_flag;     // the last --tls-* option seen
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") return ParseResult::help;
    if (!arg.starts_with("--")) {
      if (!have_mode) {
        if (arg == "hold") o.mode = Mode::hold;
        else if (arg == "ramp") o.mode = Mode::ramp;
        else if (arg == "flood") o.mode = Mode::flood;
        else if (arg == "echo") o.mode = Mode::echo;
        else if (arg == "fanout") o.mode = Mode::fanout;
        else {
          error = "unknown mode '" + std::string(arg) + "' (hold, ramp, flood, echo or fanout)";
          return ParseResult::error;
        }
        have_mode = true;
      } else if (o.url.empty()) {
        o.url = arg;
      } else {
        error = "unexpected argument '" + std::string(arg) + "'";
        return ParseResult::error;
      }
      continue;
    }
    std::string_view name = arg;
    std::string_view value;
    bool have_value = false;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      have_value = true;
    }
    if (name == "--json") { o.json = true; continue; }
    if (name == "--tls-insecure") { o.tls_insecure = true; tls_flag = name; continue; }
    if (name == "--tls-resume") { o.tls_resume = true; tls_flag = name; continue; }
    if (name == "--verify-echo") { o.verify_echo = true; continue; }
    if (name == "--text") { o.payload = PayloadKind::text; text_flag = true; continue; }
    if (name == "--binary") { o.payload = PayloadKind::binary; binary_flag = true; continue; }
    if (!have_value) {
      if (i + 1 >= argc) {
        error = std::string(name) + " needs a value";
        return ParseResult::error;
      }
      value = argv[++i];
    }
    const auto bad = [&](std::string_view what) {
      error = "bad value for " + std::string(name) + ": '" + std::string(value) + "' (" + std::string(what) + ")";
      return ParseResult::error;
    };
    std::uint64_t n = 0;
    if (name == "--connections") {
      if (!parse_u64(value, n) || n == 0 || n > connections_max) return bad("1 .. 10000000");
      o.connections = n;
      have_connections = true;
    } else if (name == "--rate") {
      if (!parse_rate(value, o.rate_per_s)) return bad("connections per second, 0 .. 10000000");
      have_rate = true;
    } else if (name == "--rates") {
      o.rates_per_s.clear();
      std::string_view rest = value;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        double r = 0;
        if (!parse_rate(item, r) || r == 0) return bad("comma-separated rates, each 1 .. 10000000");
        o.rates_per_s.push_back(r);
        if (o.rates_per_s.size() > ramp_steps_max) return bad("at most 64 steps");
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
      if (o.rates_per_s.empty()) return bad("at least one rate");
    } else if (name == "--duration") {
      if (!parse_duration_ms(value, o.duration_ms)) return bad("a duration up to 24h, e.g. 10s or 500ms");
      have_duration = true;
    } else if (name == "--hold") {
      if (!parse_duration_ms(value, o.hold_ms)) return bad("a duration up to 24h");
    } else if (name == "--close-timeout") {
      if (!parse_duration_ms(value, o.close_timeout_ms) || o.close_timeout_ms == 0) return bad("a positive duration");
    } else if (name == "--handshake-timeout") {
      if (!parse_duration_ms(value, o.handshake_timeout_ms) || o.handshake_timeout_ms == 0)
        return bad("a positive duration");
    } else if (name == "--threads") {
      if (!parse_u64(value, n) || n == 0 || n > threads_max) return bad("1 .. 512");
      o.threads = static_cast<std::uint32_t>(n);
    } else if (name == "--sources") {
      if (!parse_u64(value, n) || n == 0 || n > sources_max) return bad("1 .. 250");
      o.sources = static_cast<std::uint32_t>(n);
    } else if (name == "--inflight") {
      if (!parse_u64(value, n) || n == 0 || n > inflight_max) return bad("1 .. 4096");
      o.inflight = static_cast<std::uint32_t>(n);
    } else if (name == "--size") {
      if (!parse_u64(value, n) || n > size_bytes_max) return bad("bytes, at most 16 MiB");
      o.size_bytes = static_cast<std::uint32_t>(n);
    } else if (name == "--seed") {
      if (!parse_u64(value, n)) return bad("an unsigned integer");
      o.seed = n;
    } else if (name == "--channels") {
      if (!parse_u64(value, n) || n == 0 || n > connections_max) return bad("1 .. 10000000");
      o.channels = static_cast<std::uint32_t>(n);
      fanout_flag = name;
    } else if (name == "--messages") {
      if (!parse_u64(value, n) || n == 0 || n > fanout_publishes_max) return bad("1 .. 10000000 per channel");
      o.messages = n;
      fanout_flag = name;
    } else if (name == "--api") {
      o.api_url = value;
      fanout_flag = name;
    } else if (name == "--connect-rate") {
      if (!parse_rate(value, o.connect_rate_per_s)) return bad("subscribers per second, 0 .. 10000000");
      fanout_flag = name;
    } else if (name == "--api-token") {
      // Visible ASCII only: the token goes into a header line verbatim.
      if (value.empty() || value.size() > api_token_bytes_max ||
          std::any_of(value.begin(), value.end(), [](char c) { return c <= 0x20 || c >= 0x7F; }))
        return bad("1 .. 4096 visible ASCII characters");
      o.api_token = value;
      fanout_flag = name;
    } else if (name == "--channel-prefix") {
      o.channel_prefix = value;
      fanout_flag = name;
    } else if (name == "--settle") {
      if (!parse_duration_ms(value, o.settle_ms)) return bad("a duration up to 24h");
      fanout_flag = name;
    } else if (name == "--tls-ca") {
      if (value.empty()) return bad("a PEM file of CA certificates");
      o.tls_ca_file = value;
      tls_flag = name;
    } else if (name == "--tls-server-name") {
      if (value.empty() || value.size() > tls_server_name_bytes_max ||
          std::any_of(value.begin(), value.end(), [](char c) { return c <= 0x20 || c >= 0x7F || c == '/'; }))
        return bad("a DNS name or an address, 1 .. 253 visible ASCII characters");
      o.tls_server_name = value;
      tls_flag = name;
    } else if (name == "--tls-max-version") {
      if (value == "1.2") o.tls_max_version = TlsVersion::v1_2;
      else if (value == "1.3") o.tls_max_version = TlsVersion::v1_3;
      else return bad("1.2 or 1.3");
      tls_flag = name;
    } else if (name == "--stall-percent") {
      if (!parse_u64(value, n) || n > 100) return bad("a whole percentage, 0 .. 100");
      o.stall_percent = static_cast<std::uint32_t>(n);
      fanout_flag = name;
    } else {
      error = "unknown option " + std::string(name) + " (see --help)";
      return ParseResult::error;
    }
  }
  if (!have_mode) {
    error = "missing MODE (hold, ramp, flood, echo or fanout); see --help";
    return ParseResult::error;
  }
  if (o.url.empty()) {
    error = "missing target URL ws://HOST:PORT/PATH";
    return ParseResult::error;
  }
  o.tls = o.url.starts_with("wss://");
  if (!o.tls && !tls_flag.empty()) {
    error = std::string(tls_flag) + " is for wss:// targets; the target is " + o.url;
    return ParseResult::error;
  }
  if (o.tls && !o.tls_ca_file.empty() && o.tls_insecure) {
    error = "--tls-ca and --tls-insecure exclude each other (--tls-ca verifies the server's certificate)";
    return ParseResult::error;
  }
  if (o.tls && o.tls_ca_file.empty() && !o.tls_insecure) {
    error = "wss:// needs --tls-ca FILE, the CA certificate(s) to verify the server's certificate against, or "
            "--tls-insecure to connect without verifying it";
    return ParseResult::error;
  }
  if (text_flag && binary_flag) {
    error = "--text and --binary exclude each other";
    return ParseResult::error;
  }
  const ModeDefaults d = defaults_for(o.mode);
  if (!have_connections) o.connections = d.connections;
  if (!have_rate) o.rate_per_s = d.rate_per_s;
  if (!have_duration) o.duration_ms = d.duration_ms;
  if (o.mode == Mode::ramp && o.rates_per_s.empty()) o.rates_per_s = {50, 100, 1'000, 5'000, 20'000};
  if (o.mode == Mode::fanout) {
    if (!check_fanout(o, have_rate, error)) return ParseResult::error;
  } else if (!fanout_flag.empty()) {
    error = std::string(fanout_flag) + " is a fanout option";
    return ParseResult::error;
  }
  if (o.verify_echo && o.mode != Mode::flood) {
    error = "--verify-echo is a flood option (echo mode checks every echo already)";
    return ParseResult::error;
  }
  if (o.mode == Mode::echo || o.verify_echo) {
    // --verify-echo sends one message per connection: a window of one.
    const std::uint64_t inflight = o.mode == Mode::echo ? o.inflight : 1;
    const std::uint32_t min_size = o.payload == PayloadKind::text ? 20 : 12;
    if (o.size_bytes < min_size) {
      error = "--size must be at least " + std::to_string(min_size) + " bytes for " +
              (o.payload == PayloadKind::text ? "text" : "binary") +
              " messages (they carry the connection id and a sequence number)";
      return ParseResult::error;
    }
    // 14 bytes of header per frame, two staging halves per connection.
    const std::uint64_t staging = o.connections * 2 * inflight * (std::uint64_t{o.size_bytes} + 14);
    if (staging > send_staging_bytes_max) {
      error = "echo plan needs " + std::to_string(staging >> 20) + " MiB of send staging (connections x 2 x inflight x " +
              "frame); the limit is " + std::to_string(send_staging_bytes_max >> 20) + " MiB";
      return ParseResult::error;
    }
  }
  return ParseResult::run;
}

// ---------------------------------------------------------------- target

bool parse_target(std::string_view url, Target& t, std::string& error) {
  t = Target{};
  std::string_view rest;
  if (url.starts_with("ws://")) {
    rest = url.substr(5);
  } else if (url.starts_with("wss://")) {
    rest = url.substr(6);
    t.tls = true;
    t.port = 443;
  } else {
    error = "target must be ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH, got '" + std::string(url) + "'";
    return false;
  }
  const std::uint16_t default_port = t.port;
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  t.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (t.path.size() > path_bytes_max) {
    error = "path longer than 1024 bytes";
    return false;
  }
  for (const char c : t.path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) {
      error = "path contains spaces or control characters";
      return false;
    }
  }
  std::string_view host, port_text;
  if (authority.starts_with("[")) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "unterminated [IPv6] host in '" + std::string(url) + "'";
      return false;
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        error = "bad authority '" + std::string(authority) + "'";
        return false;
      }
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (host.empty()) {
    error = "missing host in '" + std::string(url) + "'";
    return false;
  }
  if (!port_text.empty() || authority.ends_with(":")) {
    std::uint64_t port = 0;
    if (!parse_u64(port_text, port) || port == 0 || port > 65535) {
      error = "bad port '" + std::string(port_text) + "'";
      return false;
    }
    t.port = static_cast<std::uint16_t>(port);
  }
  t.name = std::string(host);
  t.host = host == "localhost" ? "127.0.0.1" : std::string(host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&t.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&t.addr);
  if (inet_pton(AF_INET, t.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(t.port);
    t.family = AF_INET;
    t.addr_len = sizeof *v4;
    t.loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  } else if (inet_pton(AF_INET6, t.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(t.port);
    t.family = AF_INET6;
    t.addr_len = sizeof *v6;
    t.loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
  } else {
    error = "host '" + std::string(host) + "' is not a numeric IPv4/IPv6 address or localhost (no DNS lookups)";
    return false;
  }
  const std::string host_part = t.family == AF_INET6 ? "[" + t.host + "]" : t.host;
  t.host_header = t.port == default_port ? host_part : host_part + ":" + std::to_string(t.port);
  return true;
}

bool parse_api(std::string_view url, Target& api, std::string& error) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) {
    error = "--api must be http://HOST[:PORT][/PREFIX], got '" + std::string(url) + "'";
    return false;
  }
  // The same hosts and ports as a ws:// target; only the scheme differs.
  if (!parse_target("ws://" + std::string(url.substr(scheme.size())), api, error)) {
    error = "--api: " + error;
    return false;
  }
  if (api.path.find_first_of("?#") != std::string::npos) {
    error = "--api takes no query or fragment: '" + std::string(url) + "'";
    return false;
  }
  while (api.path.ends_with("/")) api.path.pop_back();
  return true;
}

bool parse_apis(std::string_view urls, std::vector<Target>& apis, std::string& error) {
  apis.clear();
  for (;;) {
    const std::size_t comma = urls.find(',');
    Target api;
    if (!parse_api(urls.substr(0, comma), api, error)) return false;
    if (apis.size() == apis_max) {
      error = "--api takes at most 16 URLs";
      return false;
    }
    apis.push_back(std::move(api));
    if (comma == std::string_view::npos) return true;
    urls.remove_prefix(comma + 1);
  }
}

NetNamespace current_net_namespace() {
  struct stat self {}, init {};
  if (stat("/proc/self/ns/net", &self) != 0 || stat("/proc/1/ns/net", &init) != 0) return NetNamespace::initial;
  return (self.st_ino == init.st_ino && self.st_dev == init.st_dev) ? NetNamespace::initial : NetNamespace::other;
}

std::string find_default_route(std::string_view ipv4_table, std::string_view ipv6_table) {
  constexpr unsigned long rtf_up = 0x0001, rtf_reject = 0x0200;
  const auto usable = [&](const std::string& iface, unsigned long flags) {
    return (flags & rtf_up) && !(flags & rtf_reject) && iface != "lo";
  };
  {
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex, one header line)
    std::istringstream in{std::string(ipv4_table)};
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream f{line};
      std::string iface, dest, gateway, flags;
      if (!(f >> iface >> dest >> gateway >> flags)) continue;
      if (std::strtoul(dest.c_str(), nullptr, 16) == 0 && usable(iface, std::strtoul(flags.c_str(), nullptr, 16)))
        return "an IPv4 default route via " + iface;
    }
  }
  {
    // dest plen src splen nexthop metric refcnt use flags iface (hex, no header)
    std::istringstream in{std::string(ipv6_table)};
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f{line};
      std::string dest, plen, src, splen, nexthop, metric, refcnt, use, flags, iface;
      if (!(f >> dest >> plen >> src >> splen >> nexthop >> metric >> refcnt >> use >> flags >> iface)) continue;
      if (dest.find_first_not_of('0') == std::string::npos && std::strtoul(plen.c_str(), nullptr, 16) == 0 &&
          usable(iface, std::strtoul(flags.c_str(), nullptr, 16)))
        return "an IPv6 default route via " + iface;
    }
  }
  return "";
}

std::string current_default_route() {
  const auto slurp = [](const char* path, std::string& text) {
    std::ifstream f(path);
    if (!f) return false;
    std::ostringstream s;
    s << f.rdbuf();
    text = s.str();
    return true;
  };
  std::string v4, v6;
  if (!slurp("/proc/net/route", v4)) return "an unreadable /proc/net/route";
  // No IPv6 at all (ipv6.disable=1) leaves no table: no IPv6 route either.
  if (!slurp("/proc/net/ipv6_route", v6)) v6.clear();
  return find_default_route(v4, v6);
}

bool target_allowed(const Target& t, NetNamespace ns, std::string_view default_route, std::string& error) {
  if (t.loopback) return true;
  if (ns == NetNamespace::other && default_route.empty()) return true;
  error = "refusing target " + t.host + ": ringgate-load only loads loopback addresses (127.0.0.0/8, ::1), or any "
          "address from inside a network namespace other than the initial one (e.g. `unshare -n` or `ip netns "
          "exec`) that has no default route; ";
  if (ns == NetNamespace::initial)
    error += "this is the initial network namespace";
  else
    error += "this namespace has " + std::string(default_route) + ", so it can reach real hosts";
  return false;
}

// ---------------------------------------------------------------- ports

bool parse_port_range(std::string_view text, PortRange& range) {
  std::istringstream in{std::string(text)};
  std::uint32_t low = 0, high = 0;
  if (!(in >> low >> high) || low == 0 || high > 65535 || low > high) return false;
  range = {low, high};
  return true;
}

bool read_port_range(PortRange& range, std::string& error) {
  std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
  std::string text;
  if (!f || !std::getline(f, text) || !parse_port_range(text, range)) {
    error = "cannot read /proc/sys/net/ipv4/ip_local_port_range";
    return false;
  }
  return true;
}

bool plan_sources(std::uint64_t concurrent, const PortRange& range, std::uint32_t sources_flag, const Target& target,
                  SourcePlan& plan, std::string& error) {
  plan = SourcePlan{};
  plan.ports_per_pair = (range.high - range.low + 1) / 2;
  if (plan.ports_per_pair == 0) plan.ports_per_pair = 1;
  const std::uint64_t needed = (concurrent + plan.ports_per_pair - 1) / plan.ports_per_pair;
  plan.sources_needed = static_cast<std::uint32_t>(std::min<std::uint64_t>(needed, UINT32_MAX));
  plan.spread = target.family == AF_INET && target.loopback;
  const std::string why = std::to_string(plan.ports_per_pair) +
                          " ports per source/destination pair from ip_local_port_range " +
                          std::to_string(range.low) + "-" + std::to_string(range.high);
  if (!plan.spread) {
    // One source: the kernel picks it.  127.0.0.x spreading needs an IPv4
    // loopback target.
    if (sources_flag > 1) {
      error = "--sources needs an IPv4 loopback target (sources are 127.0.0.2 and up)";
      return false;
    }
    plan.sources = 1;
    if (plan.sources_needed > 1) {
      error = "plan needs " + std::to_string(plan.sources_needed) + " source addresses for " +
              std::to_string(concurrent) + " connections (" + why + "), but only an IPv4 loopback target can use more "
              "than one";
      return false;
    }
    return true;
  }
  if (plan.sources_needed > sources_max) {
    error = "plan needs " + std::to_string(plan.sources_needed) + " source addresses for " + std::to_string(concurrent) +
            " connections (" + why + "); at most " + std::to_string(sources_max) + " are supported";
    return false;
  }
  if (sources_flag != 0 && sources_flag < plan.sources_needed) {
    error = "plan needs " + std::to_string(plan.sources_needed) + " source addresses for " + std::to_string(concurrent) +
            " connections (" + why + "), got --sources " + std::to_string(sources_flag);
    return false;
  }
  plan.sources = sources_flag != 0 ? sources_flag : std::max<std::uint32_t>(1, plan.sources_needed);
  return true;
}

std::uint32_t source_ipv4(std::uint32_t index) noexcept { return 0x7F000002u + index; }

std::string source_name(const SourcePlan& plan, int family, std::uint32_t index) {
  if (!plan.spread) return family == AF_INET6 ? "::" : "0.0.0.0";
  const std::uint32_t a = source_ipv4(index);
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xFF) + "." + std::to_string((a >> 8) & 0xFF) +
         "." + std::to_string(a & 0xFF);
}

// ---------------------------------------------------------------- threads

std::uint32_t plan_threads(std::uint64_t concurrent, std::uint32_t slots_per_thread, std::uint32_t threads_flag) noexcept {
  const std::uint64_t slots = std::max<std::uint32_t>(1, slots_per_thread);
  const std::uint64_t needed = (concurrent + slots - 1) / slots;
  return static_cast<std::uint32_t>(std::max<std::uint64_t>({threads_flag, needed, 1}));
}

std::uint64_t concurrent_connections(const Options& o) noexcept { return o.connections; }

}  // namespace rg::load
