// What a run will do, decided before any socket exists: the parsed command
// line, the target and whether it may be loaded, how many source addresses
// the ephemeral-port budget needs, and how many threads (rings) the
// direct-descriptor tables need.  Everything here is pure or reads /proc
// once, so unit tests can drive it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rg::load {

enum class Mode : std::uint8_t { hold, ramp, flood, echo, fanout };
enum class PayloadKind : std::uint8_t { binary, text };
enum class TlsVersion : std::uint8_t { v1_2, v1_3 };

// Limits on the command line: each bounds memory or time sized at start-up.
inline constexpr std::uint64_t connections_max = 10'000'000;  // 500 rings of 20,000 slots
inline constexpr std::uint32_t threads_max = 512;
inline constexpr std::uint32_t sources_max = 250;             // 127.0.0.2 .. 127.0.0.251
inline constexpr std::size_t ramp_steps_max = 64;
inline constexpr double rate_max_per_s = 10'000'000.0;
inline constexpr std::uint64_t duration_ms_max = 24ull * 3600 * 1000;
inline constexpr std::uint32_t inflight_max = 4096;
inline constexpr std::uint32_t size_bytes_max = 16u << 20;  // 16 MiB per echo message
// Echo send staging is 2 x inflight x frame per connection, sized at start:
// refuse plans that would map more than this in total.
inline constexpr std::uint64_t send_staging_bytes_max = 4ull << 30;
inline constexpr std::size_t path_bytes_max = 1024;
// fanout: channels x messages per channel, bounded by the publish board
// (fanout::publishes_max); names are prefix + index, at most 128 bytes.
inline constexpr std::uint64_t fanout_publishes_max = 10'000'000;
inline constexpr std::size_t api_token_bytes_max = 4096;
inline constexpr std::size_t tls_server_name_bytes_max = 253;  // a DNS name (RFC 1035 2.3.4)

struct Options {
  Mode mode = Mode::hold;
  std::string url;
  std::uint64_t connections = 0;  // hold/flood/echo: total; ramp: per step
  double rate_per_s = 0;          // 0: as fast as the slots allow
  std::vector<double> rates_per_s;  // ramp steps
  std::uint64_t duration_ms = 0;
  std::uint64_t hold_ms = 2'000;
  std::uint64_t close_timeout_ms = 5'000;
  std::uint64_t handshake_timeout_ms = 10'000;
  std::uint32_t threads = 1;
  std::uint32_t sources = 0;  // 0: as many as the port budget needs
  std::uint32_t inflight = 1;
  std::uint32_t size_bytes = 20;
  PayloadKind payload = PayloadKind::binary;
  bool verify_echo = false;  // flood: one echo per connection still open at the end
  // fanout: subscribers connect unpaced; --rate paces publishes instead.
  std::uint32_t channels = 10;
  std::uint64_t messages = 100;  // per channel
  double publish_rate_per_s = 1'000;  // 0: each publish as soon as the last was answered
  double connect_rate_per_s = 0;      // fanout --connect-rate: subscribers per second; 0 = unpaced
  std::string api_url = "http://127.0.0.1:9090";
  std::string api_token;
  std::string channel_prefix = "fanout-";
  std::uint64_t settle_ms = 10'000;
  std::uint32_t stall_percent = 0;  // 0..100: subscribers that stop reading when publishing begins
  bool json = false;
  std::uint64_t seed = 0;  // 0: from the clock
  // wss:// targets: every connection of every mode speaks TLS.
  bool tls = false;             // the target URL is wss://
  std::string tls_ca_file;      // --tls-ca: verify the server's chain against these CAs (and its name)
  bool tls_insecure = false;    // --tls-insecure: no verification at all (asked for explicitly)
  std::string tls_server_name;  // --tls-server-name: SNI and the name verified; "" = the URL's host
  bool tls_resume = false;      // --tls-resume: resume from the thread's newest session ticket
  TlsVersion tls_max_version = TlsVersion::v1_3;  // --tls-max-version
};

enum class ParseResult : std::uint8_t { run, help, error };

// Parses argv[1..].  Fills per-mode defaults for what was not given.
[[nodiscard]] ParseResult parse_options(int argc, const char* const* argv, Options& options, std::string& error);
[[nodiscard]] std::string help_text();
[[nodiscard]] std::string_view mode_name(Mode mode) noexcept;

// "2s", "500ms", "1.5s", "1m", or a bare number of seconds.
[[nodiscard]] bool parse_duration_ms(std::string_view text, std::uint64_t& ms);

// ---------------------------------------------------------------- target
struct Target {
  std::string host;         // the address ("localhost" becomes 127.0.0.1; IPv6 without brackets)
  std::string name;         // the host as written in the URL ("localhost" stays): wss's default server name
  bool tls = false;         // wss://
  std::uint16_t port = 80;  // 443 for wss:// without a port
  std::string path = "/";
  std::string host_header;  // Host: value (brackets for IPv6, :port unless 80)
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int family = AF_INET;
  bool loopback = false;    // 127.0.0.0/8 or ::1
};

// ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH] with HOST a numeric
// IPv4 address, [IPv6] or "localhost".  No DNS: a load tool must know
// exactly what it aims at.
[[nodiscard]] bool parse_target(std::string_view url, Target& target, std::string& error);
// fanout's publish API: http://HOST[:PORT][/PREFIX], the same hosts as
// parse_target.  `path` keeps the prefix without a trailing '/' ("" for
// the root); requests go to PREFIX/publish/NAME.
[[nodiscard]] bool parse_api(std::string_view url, Target& api, std::string& error);
// --api URL[,URL...]: up to apis_max publish APIs (a fleet's nodes), each
// as parse_api.  Publishes go to them in turn.
inline constexpr std::size_t apis_max = 16;
[[nodiscard]] bool parse_apis(std::string_view urls, std::vector<Target>& apis, std::string& error);

enum class NetNamespace : std::uint8_t { initial, other };
// Compares the inode of /proc/self/ns/net with /proc/1/ns/net.  Unreadable
// (no permission, no /proc) counts as the initial namespace: when in doubt,
// assume the real network is reachable.
[[nodiscard]] NetNamespace current_net_namespace();

// The first default route (destination 0) in the text of /proc/net/route
// and /proc/net/ipv6_route, described ("IPv4 default route via eth0"), or ""
// when there is none.  Reject routes and routes over lo reach no host and
// are skipped.
[[nodiscard]] std::string find_default_route(std::string_view ipv4_table, std::string_view ipv6_table);
// The same for this process's network namespace; unreadable tables count
// as a default route (when in doubt, assume the real network is reachable).
[[nodiscard]] std::string current_default_route();

// Loopback targets are always allowed; any other only from a network
// namespace other than the initial one (a sandbox the test made) that has
// no default route (`default_route` empty): a namespace with a veth and a
// default route (NAT) reaches real hosts as well as the initial one does.
[[nodiscard]] bool target_allowed(const Target& target, NetNamespace ns, std::string_view default_route,
                                  std::string& error);

// ---------------------------------------------------------------- ports
struct PortRange {
  std::uint32_t low = 32768;
  std::uint32_t high = 60999;
};
[[nodiscard]] bool read_port_range(PortRange& range, std::string& error);
[[nodiscard]] bool parse_port_range(std::string_view text, PortRange& range);

struct SourcePlan {
  std::uint32_t ports_per_pair = 0;  // usable ephemeral ports per (source, destination)
  std::uint32_t sources_needed = 0;
  std::uint32_t sources = 0;         // what the run uses
  bool spread = false;               // bind to 127.0.0.2+ (IPv4 loopback targets)
};

// Linux hands out ephemeral ports of one parity first; past about half the
// range per (source, destination) pair, placement slows sharply (measured:
// p99 handshake 9 ms -> 210 ms), so the budget per pair is half the range.
// `concurrent` is the most connections open at once.  `sources_flag` 0 means
// "as many as needed".  Fails with a message naming the numbers.
[[nodiscard]] bool plan_sources(std::uint64_t concurrent, const PortRange& range, std::uint32_t sources_flag,
                                const Target& target, SourcePlan& plan, std::string& error);

// Source address `index` of a spread plan: 127.0.0.2 + index (host order).
[[nodiscard]] std::uint32_t source_ipv4(std::uint32_t index) noexcept;

// Source `index` as a report names it: "127.0.0.2" and up for a spread plan,
// else the wildcard the sockets bind to ("0.0.0.0" or "::"): the kernel
// picks the address.
[[nodiscard]] std::string source_name(const SourcePlan& plan, int family, std::uint32_t index);

// The run-wide number of the `local`-th attempt of thread `index` of
// `threads`.  Threads take numbers in turn, and thread i makes
// share_of(N, threads, i) attempts, so a run of N attempts numbers them
// exactly 0 .. N-1 whatever the thread count.
[[nodiscard]] constexpr std::uint64_t attempt_number(std::uint64_t local, std::uint32_t threads,
                                                     std::uint32_t index) noexcept {
  return local * threads + index;
}

// Attempt k goes out from source k mod N: round robin over the whole run, so
// each of the N sources gets attempted / N attempts, +- 1.  Per-source
// limits on the server (and tests of them) rely on that spread.
[[nodiscard]] constexpr std::uint32_t source_of(std::uint64_t attempt, std::uint32_t sources) noexcept {
  return sources == 0 ? 0 : static_cast<std::uint32_t>(attempt % sources);
}

// ---------------------------------------------------------------- threads
// One ring per thread, each with a table of `slots_per_thread` direct
// descriptors (the kernel caps a table at RLIMIT_NOFILE), so the run needs
// ceil(concurrent / slots) threads at least.
[[nodiscard]] std::uint32_t plan_threads(std::uint64_t concurrent, std::uint32_t slots_per_thread,
                                         std::uint32_t threads_flag) noexcept;

// The share of `total` that thread `index` of `threads` owns.
[[nodiscard]] constexpr std::uint64_t share_of(std::uint64_t total, std::uint32_t threads, std::uint32_t index) noexcept {
  return total / threads + (index < total % threads ? 1 : 0);
}

// Most connections open at once under `options`.
[[nodiscard]] std::uint64_t concurrent_connections(const Options& options) noexcept;

}  // namespace rg::load
