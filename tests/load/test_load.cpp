// Unit tests for ringgate-load's pure parts: the histogram, the plan
// (options, target, sources, threads), the client handshake, the echo
// payloads and fanout's accounting.

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdio>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "proto/http_upgrade.h"
#include "proto/pubsub.h"
#include "tools/load/engine.h"
#include "tools/load/fanout.h"
#include "tools/load/handshake.h"
#include "tools/load/histogram.h"
#include "tools/load/payload.h"
#include "tools/load/plan.h"
#include "tools/load/report.h"
#include "tools/load/tls_client.h"

namespace rg::load {
namespace {

// ---------------------------------------------------------------- histogram

TEST(Histogram, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.max(), 0u);
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram h;
  for (std::uint64_t v = 1; v <= 100; ++v) h.record(v);
  EXPECT_EQ(h.percentile(50), 50u);
  EXPECT_EQ(h.percentile(99), 99u);
  EXPECT_EQ(h.percentile(100), 100u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 100u);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(Histogram, BucketsAreContiguousAndCoverTheRange) {
  EXPECT_EQ(Histogram::lowest_in_bucket(0), 0u);
  for (std::size_t i = 1; i < Histogram::bucket_count; ++i)
    ASSERT_EQ(Histogram::lowest_in_bucket(i), Histogram::highest_in_bucket(i - 1) + 1) << i;
  EXPECT_EQ(Histogram::highest_in_bucket(Histogram::bucket_count - 1), Histogram::value_max_us);
}

TEST(Histogram, RelativeErrorWithinOneSixtyFourth) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t v = rng() >> (rng() % 40 + 24);  // spread over many powers of two
    const std::size_t b = Histogram::index_of(v);
    ASSERT_LE(Histogram::lowest_in_bucket(b), v);
    ASSERT_GE(Histogram::highest_in_bucket(b), v);
    const double width = static_cast<double>(Histogram::highest_in_bucket(b) - Histogram::lowest_in_bucket(b));
    ASSERT_LE(width, static_cast<double>(v) / 64.0 + 1) << v;
  }
}

TEST(Histogram, PercentilesOfAUniformSpread) {
  Histogram h;
  for (std::uint64_t v = 1; v <= 1'000'000; ++v) h.record(v);
  const auto near = [](std::uint64_t got, double want) {
    return std::abs(static_cast<double>(got) - want) <= want / 64.0 + 1;
  };
  EXPECT_TRUE(near(h.percentile(50), 500'000)) << h.percentile(50);
  EXPECT_TRUE(near(h.percentile(90), 900'000)) << h.percentile(90);
  EXPECT_TRUE(near(h.percentile(99), 990'000)) << h.percentile(99);
  EXPECT_TRUE(near(h.percentile(99.9), 999'000)) << h.percentile(99.9);
  EXPECT_EQ(h.percentile(100), 1'000'000u);
  EXPECT_EQ(h.max(), 1'000'000u);
}

TEST(Histogram, PercentileNeverExceedsMaxOrUndercutsMin) {
  Histogram h;
  h.record(1000);
  EXPECT_EQ(h.percentile(0), 1000u);
  EXPECT_EQ(h.percentile(50), 1000u);
  EXPECT_EQ(h.percentile(100), 1000u);
}

TEST(Histogram, ClampsBeyondTheRange) {
  Histogram h;
  h.record(Histogram::value_max_us + 12345);
  EXPECT_EQ(h.clamped(), 1u);
  EXPECT_EQ(h.max(), Histogram::value_max_us);
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  Histogram a, b, all;
  std::mt19937_64 rng(11);
  for (int i = 0; i < 50000; ++i) {
    const std::uint64_t v = rng() % 5'000'000;
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.min(), all.min());
  for (const double p : {1.0, 50.0, 90.0, 99.0, 99.9, 100.0}) EXPECT_EQ(a.percentile(p), all.percentile(p)) << p;
}

TEST(Histogram, P999OfAThousandIsTheNineHundredNinetyNinthValue) {
  // 999 values of 1 and one of 100: p99.9 is rank ceil(1000 * 0.999) = 999, a 1.
  rg::load::Histogram h;
  for (int i = 0; i < 999; ++i) h.record(1);
  h.record(100);
  EXPECT_EQ(h.percentile(99.9), 1u);
  EXPECT_EQ(h.percentile_permille(999), 1u);
  EXPECT_EQ(h.percentile(100), 100u);
  h.record(1);  // n = 1001: rank ceil(1000.0) = 1000 is still a 1
  EXPECT_EQ(h.percentile(99.9), 1u);
  h.record(100);  // n = 1002: rank ceil(1000.998) = 1001, the first 100
  EXPECT_EQ(h.percentile(99.9), 100u);
}

// ---------------------------------------------------------------- options

std::vector<const char*> argv_of(std::initializer_list<const char*> args) {
  std::vector<const char*> v{"ringgate-load"};
  v.insert(v.end(), args);
  return v;
}

ParseResult parse(std::initializer_list<const char*> args, Options& o, std::string& error) {
  const auto v = argv_of(args);
  return parse_options(static_cast<int>(v.size()), v.data(), o, error);
}

TEST(Options, PerModeDefaults) {
  Options o;
  std::string error;
  ASSERT_EQ(parse({"hold", "ws://127.0.0.1:9/"}, o, error), ParseResult::run) << error;
  EXPECT_EQ(o.connections, 1000u);
  EXPECT_EQ(o.rate_per_s, 1000);
  EXPECT_EQ(o.duration_ms, 10'000u);
  ASSERT_EQ(parse({"ramp", "ws://127.0.0.1:9/"}, o, error), ParseResult::run) << error;
  EXPECT_EQ(o.rates_per_s, (std::vector<double>{50, 100, 1000, 5000, 20000}));
  EXPECT_EQ(o.hold_ms, 2000u);
  ASSERT_EQ(parse({"flood", "ws://127.0.0.1:9/"}, o, error), ParseResult::run) << error;
  EXPECT_EQ(o.rate_per_s, 0);
  EXPECT_EQ(o.handshake_timeout_ms, 10'000u);
  EXPECT_EQ(o.close_timeout_ms, 5'000u);
}

TEST(Options, ParsesEveryFlag) {
  Options o;
  std::string error;
  ASSERT_EQ(parse({"echo", "--connections", "7", "--rate=50.5", "--duration", "1500ms", "--hold", "3s",
                   "--close-timeout", "2", "--handshake-timeout", "1m", "--threads", "3", "--sources", "4",
                   "--inflight", "16", "--size", "64", "--text", "--json", "--seed", "42", "ws://127.0.0.1:9/e"},
                  o, error),
            ParseResult::run)
      << error;
  EXPECT_EQ(o.mode, Mode::echo);
  EXPECT_EQ(o.connections, 7u);
  EXPECT_DOUBLE_EQ(o.rate_per_s, 50.5);
  EXPECT_EQ(o.duration_ms, 1500u);
  EXPECT_EQ(o.hold_ms, 3000u);
  EXPECT_EQ(o.close_timeout_ms, 2000u);
  EXPECT_EQ(o.handshake_timeout_ms, 60'000u);
  EXPECT_EQ(o.threads, 3u);
  EXPECT_EQ(o.sources, 4u);
  EXPECT_EQ(o.inflight, 16u);
  EXPECT_EQ(o.size_bytes, 64u);
  EXPECT_EQ(o.payload, PayloadKind::text);
  EXPECT_TRUE(o.json);
  EXPECT_EQ(o.seed, 42u);
}

TEST(Options, RejectsBadInput) {
  Options o;
  std::string error;
  EXPECT_EQ(parse({"hold"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"dance", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"hold", "--connections", "0", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"hold", "--connections", "x", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"hold", "--threads", "513", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"ramp", "--rates", "10,,20", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"hold", "--frobnicate", "1", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"echo", "--size", "11", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"echo", "--text", "--size", "19", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"echo", "--connections", "100000", "--inflight", "4096", "--size", "65536", "ws://127.0.0.1:9/"},
                  o, error),
            ParseResult::error);
  EXPECT_NE(error.find("send staging"), std::string::npos) << error;
  EXPECT_EQ(parse({"hold", "--help"}, o, error), ParseResult::help);
}

TEST(Options, VerifyEchoIsAFloodOptionWithAMessageThatCarriesItsIds) {
  Options o;
  std::string error;
  ASSERT_EQ(parse({"flood", "--verify-echo", "ws://127.0.0.1:9/"}, o, error), ParseResult::run) << error;
  EXPECT_TRUE(o.verify_echo);
  EXPECT_EQ(o.size_bytes, 20u);
  ASSERT_EQ(parse({"flood", "ws://127.0.0.1:9/"}, o, error), ParseResult::run) << error;
  EXPECT_FALSE(o.verify_echo);
  for (const char* mode : {"hold", "ramp", "echo"}) {
    EXPECT_EQ(parse({mode, "--verify-echo", "ws://127.0.0.1:9/"}, o, error), ParseResult::error) << mode;
    EXPECT_NE(error.find("flood"), std::string::npos) << error;
  }
  EXPECT_EQ(parse({"flood", "--verify-echo", "--size", "11", "ws://127.0.0.1:9/"}, o, error), ParseResult::error);
  EXPECT_EQ(parse({"flood", "--verify-echo", "--text", "--size", "19", "ws://127.0.0.1:9/"}, o, error),
            ParseResult::error);
  // A plain flood does not send messages: --size is not checked.
  EXPECT_EQ(parse({"flood", "--size", "1", "ws://127.0.0.1:9/"}, o, error), ParseResult::run) << error;
  // One message per connection: the staging bound counts a window of one,
  // whatever --inflight says.
  EXPECT_EQ(parse({"flood", "--verify-echo", "--connections", "100000", "--inflight", "4096", "--size", "1000",
                   "ws://127.0.0.1:9/"},
                  o, error),
            ParseResult::run)
      << error;
}

TEST(Options, HelpDocumentsEveryFlag) {
  const std::string help = help_text();
  for (const char* flag : {"--connections", "--rate ", "--rates", "--duration", "--hold", "--close-timeout",
                           "--handshake-timeout", "--threads", "--sources", "--inflight", "--size", "--binary",
                           "--text", "--verify-echo", "--seed", "--json", "--help", "--channels", "--messages",
                           "--api ", "--api-token", "--channel-prefix", "--settle", "--stall-percent", "fanout",
                           "wss://", "--tls-ca", "--tls-insecure", "--tls-server-name", "--tls-resume",
                           "--tls-max-version"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
}

TEST(Options, WssNeedsACaOrAnExplicitInsecure) {
  Options o;
  std::string error;
  EXPECT_EQ(parse({"hold", "wss://127.0.0.1:8443/"}, o, error), ParseResult::error);
  EXPECT_NE(error.find("--tls-ca"), std::string::npos) << error;
  EXPECT_NE(error.find("--tls-insecure"), std::string::npos) << error;
  ASSERT_EQ(parse({"hold", "--tls-ca", "/x/ca.pem", "wss://127.0.0.1:8443/"}, o, error), ParseResult::run) << error;
  EXPECT_TRUE(o.tls);
  EXPECT_EQ(o.tls_ca_file, "/x/ca.pem");
  EXPECT_FALSE(o.tls_insecure);
  EXPECT_FALSE(o.tls_resume);
  EXPECT_EQ(o.tls_max_version, TlsVersion::v1_3);
  EXPECT_EQ(o.tls_server_name, "");
  ASSERT_EQ(parse({"echo", "--tls-insecure", "wss://127.0.0.1:8443/"}, o, error), ParseResult::run) << error;
  EXPECT_TRUE(o.tls_insecure);
  EXPECT_TRUE(o.tls_ca_file.empty());
  EXPECT_EQ(parse({"hold", "--tls-insecure", "--tls-ca", "ca.pem", "wss://127.0.0.1:8443/"}, o, error),
            ParseResult::error);
  EXPECT_NE(error.find("exclude each other"), std::string::npos) << error;
  ASSERT_EQ(parse({"hold", "ws://127.0.0.1:8080/"}, o, error), ParseResult::run) << error;
  EXPECT_FALSE(o.tls);
}

TEST(Options, TlsFlags) {
  Options o;
  std::string error;
  ASSERT_EQ(parse({"flood", "--tls-ca=ca.pem", "--tls-server-name", "gw.example", "--tls-resume", "--tls-max-version",
                   "1.2", "wss://127.0.0.1:8443/echo"},
                  o, error),
            ParseResult::run)
      << error;
  EXPECT_EQ(o.tls_ca_file, "ca.pem");
  EXPECT_EQ(o.tls_server_name, "gw.example");
  EXPECT_TRUE(o.tls_resume);
  EXPECT_EQ(o.tls_max_version, TlsVersion::v1_2);
  ASSERT_EQ(parse({"fanout", "--tls-ca", "ca.pem", "--tls-max-version", "1.3", "wss://127.0.0.1:8443/ws"}, o, error),
            ParseResult::run)
      << error;
  EXPECT_EQ(o.tls_max_version, TlsVersion::v1_3);
  // Bad values.
  for (const char* v : {"1.1", "1.0", "tls1.3", "", "13"})
    EXPECT_EQ(parse({"hold", "--tls-ca", "ca.pem", "--tls-max-version", v, "wss://127.0.0.1:1/"}, o, error),
              ParseResult::error)
        << v;
  EXPECT_EQ(parse({"hold", "--tls-ca", "", "wss://127.0.0.1:1/"}, o, error), ParseResult::error);
  for (const char* v : {"", "a b", "host/path", "caf\xc3\xa9"})
    EXPECT_EQ(parse({"hold", "--tls-ca", "ca.pem", "--tls-server-name", v, "wss://127.0.0.1:1/"}, o, error),
              ParseResult::error)
        << v;
  const std::string long_name(254, 'a');
  EXPECT_EQ(parse({"hold", "--tls-ca", "ca.pem", "--tls-server-name", long_name.c_str(), "wss://127.0.0.1:1/"}, o,
                  error),
            ParseResult::error);
  // TLS options need a wss:// target.
  for (const auto& flags : std::vector<std::vector<const char*>>{{"--tls-ca", "ca.pem"},
                                                                 {"--tls-insecure"},
                                                                 {"--tls-resume"},
                                                                 {"--tls-server-name", "localhost"},
                                                                 {"--tls-max-version", "1.2"}}) {
    std::vector<const char*> args{"ringgate-load", "hold"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("ws://127.0.0.1:8080/");
    EXPECT_EQ(parse_options(static_cast<int>(args.size()), args.data(), o, error), ParseResult::error) << flags[0];
    EXPECT_NE(error.find("wss://"), std::string::npos) << error;
  }
}

TEST(Options, FanoutDefaults) {
  Options o;
  std::string error;
  ASSERT_EQ(parse({"fanout", "ws://127.0.0.1:8080/ws"}, o, error), ParseResult::run) << error;
  EXPECT_EQ(o.mode, Mode::fanout);
  EXPECT_EQ(mode_name(o.mode), "fanout");
  EXPECT_EQ(o.connections, 100u);
  EXPECT_EQ(o.channels, 10u);
  EXPECT_EQ(o.messages, 100u);
  EXPECT_EQ(o.rate_per_s, 0);  // subscribers connect unpaced
  EXPECT_EQ(o.publish_rate_per_s, 1000);
  EXPECT_EQ(o.api_url, "http://127.0.0.1:9090");
  EXPECT_EQ(o.api_token, "");
  EXPECT_EQ(o.channel_prefix, "fanout-");
  EXPECT_EQ(o.settle_ms, 10'000u);
  EXPECT_EQ(o.duration_ms, 60'000u);
  EXPECT_EQ(o.stall_percent, 0u);  // every subscriber reads
}

TEST(Options, FanoutFlags) {
  Options o;
  std::string error;
  ASSERT_EQ(parse({"fanout", "ws://127.0.0.1:8080/ws", "--connections", "50", "--channels", "5", "--rate", "250",
                   "--messages", "20", "--api", "http://127.0.0.1:9091/admin/", "--api-token", "s3cr.t",
                   "--channel-prefix=room:", "--settle", "2s", "--threads", "2", "--sources", "3", "--json",
                   "--stall-percent", "10"},
                  o, error),
            ParseResult::run)
      << error;
  EXPECT_EQ(o.connections, 50u);
  EXPECT_EQ(o.channels, 5u);
  EXPECT_EQ(o.messages, 20u);
  EXPECT_EQ(o.publish_rate_per_s, 250);
  EXPECT_EQ(o.rate_per_s, 0);
  EXPECT_EQ(o.api_url, "http://127.0.0.1:9091/admin/");
  EXPECT_EQ(o.api_token, "s3cr.t");
  EXPECT_EQ(o.channel_prefix, "room:");
  EXPECT_EQ(o.settle_ms, 2'000u);
  EXPECT_EQ(o.threads, 2u);
  EXPECT_EQ(o.sources, 3u);
  EXPECT_EQ(o.stall_percent, 10u);
  for (const char* p : {"0", "100"}) {
    ASSERT_EQ(parse({"fanout", "--stall-percent", p, "ws://127.0.0.1:8080/ws"}, o, error), ParseResult::run) << error;
    EXPECT_EQ(o.stall_percent, std::stoul(p));
  }
  ASSERT_EQ(parse({"fanout", "--stall-percent=25", "ws://127.0.0.1:8080/ws"}, o, error), ParseResult::run) << error;
  EXPECT_EQ(o.stall_percent, 25u);
  ASSERT_EQ(parse({"fanout", "--rate", "0", "ws://127.0.0.1:8080/ws"}, o, error), ParseResult::run) << error;
  EXPECT_EQ(o.publish_rate_per_s, 0);  // as fast as answers come back
  ASSERT_EQ(parse({"fanout", "--connect-rate", "12000", "--rate", "2", "ws://127.0.0.1:8080/ws"}, o, error),
            ParseResult::run)
      << error;
  EXPECT_EQ(o.rate_per_s, 12000);  // subscribers paced, publishes at their own rate
  EXPECT_EQ(o.publish_rate_per_s, 2);

  Target api;
  ASSERT_TRUE(parse_api("http://127.0.0.1:9091/admin/", api, error)) << error;
  EXPECT_EQ(api.path, "/admin");  // requests go to /admin/publish/NAME
  EXPECT_EQ(api.port, 9091);
  EXPECT_EQ(api.host_header, "127.0.0.1:9091");
  ASSERT_TRUE(parse_api("http://[::1]:9090", api, error)) << error;
  EXPECT_EQ(api.path, "");
  EXPECT_TRUE(api.loopback);
  ASSERT_TRUE(parse_api("http://localhost", api, error)) << error;
  EXPECT_EQ(api.port, 80);

  // A fleet's nodes: publishes go to each in turn.
  std::vector<Target> apis;
  ASSERT_TRUE(parse_apis("http://127.0.0.2:9090,http://127.0.0.3:9091/admin,http://[::1]:9092", apis, error)) << error;
  ASSERT_EQ(apis.size(), 3u);
  EXPECT_EQ(apis[0].host_header, "127.0.0.2:9090");
  EXPECT_EQ(apis[1].path, "/admin");
  EXPECT_EQ(apis[2].port, 9092);
  ASSERT_EQ(parse({"fanout", "--api", "http://127.0.0.2:9090,http://127.0.0.3:9090", "ws://127.0.0.1:8080/ws"}, o,
                  error),
            ParseResult::run)
      << error;
}

TEST(Options, FanoutRejects) {
  Options o;
  std::string error;
  const auto refused = [&](std::initializer_list<const char*> args, const char* why) {
    EXPECT_EQ(parse(args, o, error), ParseResult::error) << why;
    EXPECT_NE(error.find(why), std::string::npos) << error;
  };
  refused({"fanout", "--connections", "4", "--channels", "5", "ws://127.0.0.1:9/"}, "every channel needs a subscriber");
  refused({"fanout", "--connections", "1000", "--channels", "1000", "--messages", "10001", "ws://127.0.0.1:9/"},
          "above 10000000 publishes");
  refused({"fanout", "--channel-prefix", "a b", "ws://127.0.0.1:9/"}, "[A-Za-z0-9._:-]");
  const std::string long_prefix(127, 'p');  // p...p9 is 128 bytes, fine; --channels 11 makes p...p10
  EXPECT_EQ(parse({"fanout", "--channel-prefix", long_prefix.c_str(), "ws://127.0.0.1:9/"}, o, error),
            ParseResult::run)
      << error;
  refused({"fanout", "--channel-prefix", long_prefix.c_str(), "--channels", "11", "ws://127.0.0.1:9/"},
          "longer than 128 bytes");
  refused({"fanout", "--api", "https://127.0.0.1:9090", "ws://127.0.0.1:9/"}, "http://HOST");
  refused({"fanout", "--api", "http://127.0.0.1:9090/x?y=1", "ws://127.0.0.1:9/"}, "no query");
  refused({"fanout", "--api", "http://example.com/", "ws://127.0.0.1:9/"}, "no DNS");
  refused({"fanout", "--api", "http://127.0.0.1:9090,", "ws://127.0.0.1:9/"}, "http://HOST");
  refused({"fanout", "--api", "http://127.0.0.1:9090,http://example.com", "ws://127.0.0.1:9/"}, "no DNS");
  std::string seventeen = "http://127.0.0.1:1";
  for (int i = 2; i <= 17; ++i) seventeen += ",http://127.0.0.1:" + std::to_string(i);
  refused({"fanout", "--api", seventeen.c_str(), "ws://127.0.0.1:9/"}, "at most 16");
  refused({"fanout", "--api-token", "a\r\nX-Evil: 1", "ws://127.0.0.1:9/"}, "visible ASCII");
  refused({"fanout", "--messages", "0", "ws://127.0.0.1:9/"}, "--messages");
  refused({"fanout", "--channels", "0", "ws://127.0.0.1:9/"}, "--channels");
  refused({"fanout", "--settle", "soon", "ws://127.0.0.1:9/"}, "--settle");
  for (const char* bad : {"101", "-1", "10.5", "x", "", "1000000000000000000000"})
    refused({"fanout", "--stall-percent", bad, "ws://127.0.0.1:9/"}, "0 .. 100");
  refused({"fanout", "--stall-percent"}, "needs a value");
  for (const char* mode : {"hold", "ramp", "flood", "echo"}) {
    refused({mode, "--stall-percent", "10", "ws://127.0.0.1:9/"}, "--stall-percent is a fanout option");
    refused({mode, "--channels", "2", "ws://127.0.0.1:9/"}, "--channels is a fanout option");
    refused({mode, "--api-token", "t", "ws://127.0.0.1:9/"}, "--api-token is a fanout option");
    refused({mode, "--connect-rate", "5", "ws://127.0.0.1:9/"}, "--connect-rate is a fanout option");
  }
  refused({"fanout", "--verify-echo", "ws://127.0.0.1:9/"}, "flood");
}

TEST(Durations, Units) {
  std::uint64_t ms = 0;
  EXPECT_TRUE(parse_duration_ms("2", ms));
  EXPECT_EQ(ms, 2000u);
  EXPECT_TRUE(parse_duration_ms("0.25s", ms));
  EXPECT_EQ(ms, 250u);
  EXPECT_TRUE(parse_duration_ms("750ms", ms));
  EXPECT_EQ(ms, 750u);
  EXPECT_TRUE(parse_duration_ms("2m", ms));
  EXPECT_EQ(ms, 120'000u);
  EXPECT_FALSE(parse_duration_ms("-1", ms));
  EXPECT_FALSE(parse_duration_ms("abc", ms));
  EXPECT_FALSE(parse_duration_ms("25h", ms));
}

// ---------------------------------------------------------------- target

TEST(Target, ParsesIpv4Ipv6AndLocalhost) {
  Target t;
  std::string error;
  ASSERT_TRUE(parse_target("ws://127.0.0.1:8080/echo", t, error)) << error;
  EXPECT_EQ(t.port, 8080);
  EXPECT_EQ(t.path, "/echo");
  EXPECT_EQ(t.host_header, "127.0.0.1:8080");
  EXPECT_TRUE(t.loopback);
  ASSERT_TRUE(parse_target("ws://[::1]:9000", t, error)) << error;
  EXPECT_EQ(t.family, AF_INET6);
  EXPECT_EQ(t.path, "/");
  EXPECT_EQ(t.host_header, "[::1]:9000");
  EXPECT_TRUE(t.loopback);
  ASSERT_TRUE(parse_target("ws://localhost/x?y=1", t, error)) << error;
  EXPECT_EQ(t.port, 80);
  EXPECT_EQ(t.host_header, "127.0.0.1");
  EXPECT_EQ(t.path, "/x?y=1");
  ASSERT_TRUE(parse_target("ws://127.9.8.7:1/", t, error));
  EXPECT_TRUE(t.loopback);
  ASSERT_TRUE(parse_target("ws://192.0.2.1:80/", t, error));
  EXPECT_FALSE(t.loopback);
  ASSERT_TRUE(parse_target("ws://[2001:db8::1]:80/", t, error));
  EXPECT_FALSE(t.loopback);
}

TEST(Target, WssKeepsTheNameAndDefaultsToPort443) {
  Target t;
  std::string error;
  ASSERT_TRUE(parse_target("wss://localhost:8443/echo", t, error)) << error;
  EXPECT_TRUE(t.tls);
  EXPECT_EQ(t.name, "localhost");  // the server name to verify and send as SNI
  EXPECT_EQ(t.host, "127.0.0.1");  // where to connect
  EXPECT_EQ(t.port, 8443);
  EXPECT_EQ(t.host_header, "127.0.0.1:8443");
  EXPECT_EQ(t.path, "/echo");
  EXPECT_TRUE(t.loopback);
  ASSERT_TRUE(parse_target("wss://127.0.0.1/", t, error)) << error;
  EXPECT_EQ(t.port, 443);
  EXPECT_EQ(t.host_header, "127.0.0.1");  // the scheme's default port is left out
  EXPECT_EQ(t.name, "127.0.0.1");
  ASSERT_TRUE(parse_target("wss://127.0.0.1:80/", t, error)) << error;
  EXPECT_EQ(t.host_header, "127.0.0.1:80");
  ASSERT_TRUE(parse_target("wss://[::1]:9443/ws", t, error)) << error;
  EXPECT_EQ(t.family, AF_INET6);
  EXPECT_EQ(t.name, "::1");
  EXPECT_EQ(t.host_header, "[::1]:9443");
  ASSERT_TRUE(parse_target("ws://localhost:8080/", t, error)) << error;
  EXPECT_FALSE(t.tls);
  EXPECT_EQ(t.name, "localhost");
  ASSERT_TRUE(parse_target("ws://127.0.0.1:443/", t, error)) << error;
  EXPECT_EQ(t.host_header, "127.0.0.1:443");
}

TEST(Target, RejectsWhatItCannotUse) {
  Target t;
  std::string error;
  EXPECT_FALSE(parse_target("http://127.0.0.1/", t, error));
  EXPECT_FALSE(parse_target("wsss://127.0.0.1/", t, error));
  EXPECT_FALSE(parse_target("https://127.0.0.1/", t, error));
  EXPECT_FALSE(parse_target("ws://example.com/", t, error));  // no DNS
  EXPECT_FALSE(parse_target("wss://example.com/", t, error));
  EXPECT_FALSE(parse_target("wss://127.0.0.1:0/", t, error));
  EXPECT_FALSE(parse_target("ws://127.0.0.1:0/", t, error));
  EXPECT_FALSE(parse_target("ws://127.0.0.1:70000/", t, error));
  EXPECT_FALSE(parse_target("ws://[::1/", t, error));
  EXPECT_FALSE(parse_target("ws://127.0.0.1/a b", t, error));
}

TEST(Target, OnlyLoopbackOutsideANamespace) {
  Target t;
  std::string error;
  ASSERT_TRUE(parse_target("ws://192.0.2.1:80/", t, error));
  EXPECT_FALSE(target_allowed(t, NetNamespace::initial, "", error));
  EXPECT_NE(error.find("loopback"), std::string::npos);
  EXPECT_TRUE(target_allowed(t, NetNamespace::other, "", error));
  ASSERT_TRUE(parse_target("ws://127.0.0.1:80/", t, error));
  EXPECT_TRUE(target_allowed(t, NetNamespace::initial, "", error));
  EXPECT_TRUE(target_allowed(t, NetNamespace::initial, "an IPv4 default route via eth0", error));
  ASSERT_TRUE(parse_target("ws://[::1]:80/", t, error));
  EXPECT_TRUE(target_allowed(t, NetNamespace::initial, "", error));
}

TEST(Target, NamespaceWithADefaultRouteIsRefused) {
  Target t;
  std::string error;
  ASSERT_TRUE(parse_target("ws://192.0.2.1:80/", t, error));
  EXPECT_FALSE(target_allowed(t, NetNamespace::other, "an IPv4 default route via veth0", error));
  EXPECT_NE(error.find("default route via veth0"), std::string::npos) << error;
}

TEST(Target, FindsDefaultRoutes) {
  const std::string v4_header =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";
  const std::string v4_default = "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
  const std::string v4_subnet = "veth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
  const std::string v6_default =
      "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
      "fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth1\n";
  const std::string v6_reject =
      "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
      "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
  const std::string v6_local =
      "00000000000000000000000000000001 80 00000000000000000000000000000000 00 "
      "00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n";
  EXPECT_EQ(find_default_route(v4_header, ""), "");
  EXPECT_EQ(find_default_route(v4_header + v4_subnet, v6_reject + v6_local), "");
  EXPECT_EQ(find_default_route(v4_header + v4_subnet + v4_default, ""), "an IPv4 default route via eth0");
  EXPECT_EQ(find_default_route(v4_header + v4_subnet, v6_local + v6_default), "an IPv6 default route via eth1");
}

// ---------------------------------------------------------------- plan

TEST(Plan, SourcesFromHalfThePortRange) {
  Target t;
  std::string error;
  ASSERT_TRUE(parse_target("ws://127.0.0.1:80/", t, error));
  const PortRange range{32768, 60999};
  SourcePlan p;
  ASSERT_TRUE(plan_sources(30000, range, 0, t, p, error)) << error;
  EXPECT_EQ(p.ports_per_pair, 14116u);
  EXPECT_EQ(p.sources_needed, 3u);
  EXPECT_EQ(p.sources, 3u);
  EXPECT_TRUE(p.spread);
  ASSERT_TRUE(plan_sources(14116, range, 0, t, p, error));
  EXPECT_EQ(p.sources, 1u);
  ASSERT_TRUE(plan_sources(14117, range, 0, t, p, error));
  EXPECT_EQ(p.sources, 2u);
  ASSERT_TRUE(plan_sources(10, range, 5, t, p, error));  // more than needed is fine
  EXPECT_EQ(p.sources, 5u);
}

TEST(Plan, RefusesAPlanThatCannotFit) {
  Target t;
  std::string error;
  ASSERT_TRUE(parse_target("ws://127.0.0.1:80/", t, error));
  SourcePlan p;
  EXPECT_FALSE(plan_sources(100000, {32768, 60999}, 2, t, p, error));
  EXPECT_EQ(error,
            "plan needs 8 source addresses for 100000 connections (14116 ports per source/destination pair from "
            "ip_local_port_range 32768-60999), got --sources 2");
  ASSERT_TRUE(parse_target("ws://[::1]:80/", t, error));
  EXPECT_FALSE(plan_sources(20000, {32768, 60999}, 0, t, p, error));
  EXPECT_FALSE(plan_sources(10, {32768, 60999}, 2, t, p, error));
  ASSERT_TRUE(plan_sources(10000, {32768, 60999}, 0, t, p, error)) << error;
  EXPECT_FALSE(p.spread);
}

TEST(Plan, PortRangeText) {
  PortRange r;
  EXPECT_TRUE(parse_port_range("32768\t60999\n", r));
  EXPECT_EQ(r.low, 32768u);
  EXPECT_EQ(r.high, 60999u);
  EXPECT_FALSE(parse_port_range("60999 32768", r));
  EXPECT_FALSE(parse_port_range("", r));
}

TEST(Plan, SourceAddresses) {
  EXPECT_EQ(source_ipv4(0), 0x7F000002u);  // 127.0.0.2
  EXPECT_EQ(source_ipv4(249), 0x7F0000FBu);  // 127.0.0.251
  SourcePlan spread;
  spread.spread = true;
  EXPECT_EQ(source_name(spread, AF_INET, 0), "127.0.0.2");
  EXPECT_EQ(source_name(spread, AF_INET, 249), "127.0.0.251");
  SourcePlan kernel;  // not spread: the kernel picks the address
  EXPECT_EQ(source_name(kernel, AF_INET, 0), "0.0.0.0");
  EXPECT_EQ(source_name(kernel, AF_INET6, 0), "::");
}

TEST(Plan, AttemptsTakeTheSourcesRoundRobin) {
  // What every thread of a run does: thread i makes share_of(N, T, i)
  // attempts, numbered by attempt_number, each from source_of(number).
  for (const std::uint32_t threads : {1u, 2u, 3u, 7u}) {
    for (const std::uint64_t attempts : {1ull, 5ull, 600ull, 601ull, 1000ull, 9999ull}) {
      for (const std::uint32_t sources : {1u, 3u, 5u, 250u}) {
        std::vector<std::uint64_t> per_source(sources, 0);
        std::vector<bool> seen(attempts, false);
        for (std::uint32_t t = 0; t < threads; ++t) {
          for (std::uint64_t local = 0; local < share_of(attempts, threads, t); ++local) {
            const std::uint64_t n = attempt_number(local, threads, t);
            ASSERT_LT(n, attempts) << threads << " " << attempts;
            ASSERT_FALSE(seen[n]) << n;
            seen[n] = true;
            ++per_source[source_of(n, sources)];
          }
        }
        const std::uint64_t low = attempts / sources;
        for (std::uint32_t src = 0; src < sources; ++src) {
          EXPECT_GE(per_source[src], low) << threads << " threads, " << attempts << " attempts, source " << src;
          EXPECT_LE(per_source[src], low + 1) << threads << " threads, " << attempts << " attempts, source " << src;
        }
      }
    }
  }
}

TEST(Plan, ThreadsFromTableSlots) {
  EXPECT_EQ(plan_threads(30000, 20000, 1), 2u);
  EXPECT_EQ(plan_threads(20000, 20000, 1), 1u);
  EXPECT_EQ(plan_threads(100, 20000, 4), 4u);
  EXPECT_EQ(plan_threads(1'000'000, 20000, 1), 50u);
  EXPECT_EQ(share_of(30000, 2, 0) + share_of(30000, 2, 1), 30000u);
  EXPECT_EQ(share_of(10, 3, 0), 4u);
  EXPECT_EQ(share_of(10, 3, 2), 3u);
}

// ---------------------------------------------------------------- handshake

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TEST(Handshake, KeyIsBase64OfSixteenBytes) {
  const handshake::Key key = handshake::make_key(0x0123456789ABCDEFull, 0xFEDCBA9876543210ull);
  EXPECT_TRUE(proto::http::key_valid({key.data(), key.size()}));
  EXPECT_NE(handshake::make_key(1, 2), handshake::make_key(1, 3));
}

TEST(Handshake, RequestIsWhatTheServerParserAccepts) {
  const handshake::Key key = handshake::make_key(1, 2);
  std::array<std::uint8_t, handshake::request_bytes_max> buf{};
  const std::size_t n = handshake::build_request(buf, "127.0.0.1:8080", "/echo", key);
  ASSERT_GT(n, 0u);
  proto::http::UpgradeParser parser;
  const auto r = parser.feed({buf.data(), n});
  ASSERT_EQ(r.status, proto::http::UpgradeParser::Status::complete);
  EXPECT_EQ(r.consumed, n);
  const proto::http::Decision d = proto::http::decide(parser, {});
  EXPECT_EQ(d.status, 101);
  EXPECT_EQ(parser.key(), std::string_view(key.data(), key.size()));
  std::array<std::uint8_t, 16> tiny{};
  EXPECT_EQ(handshake::build_request(tiny, "h", "/", key), 0u);
}

TEST(Handshake, ReadsTheServersOwn101) {
  const handshake::Key key = handshake::make_key(5, 6);
  const std::string_view k(key.data(), key.size());
  std::array<char, proto::http::response_bytes_max> out{};
  const std::size_t n = proto::http::build_switching_protocols(out, k, "");
  std::string wire(out.data(), n);
  wire += "\x81\x02hi";  // a frame right behind the headers
  const auto r = handshake::parse_response(bytes_of(wire), proto::http::accept_key(k));
  ASSERT_EQ(r.status, handshake::Status::complete);
  EXPECT_EQ(r.code, 101);
  EXPECT_TRUE(r.accept_matches);
  EXPECT_TRUE(r.upgrade_websocket);
  EXPECT_EQ(r.header_bytes, n);
  // Every split of the response: incomplete until the blank line.
  for (std::size_t cut = 0; cut < n; ++cut)
    EXPECT_EQ(handshake::parse_response(bytes_of(std::string_view(wire).substr(0, cut)), proto::http::accept_key(k))
                  .status,
              handshake::Status::need_more)
        << cut;
  // Another key's accept does not match.
  const handshake::Key other = handshake::make_key(7, 8);
  EXPECT_FALSE(handshake::parse_response(bytes_of(wire), proto::http::accept_key({other.data(), other.size()}))
                   .accept_matches);
}

TEST(Handshake, ReadsRejections) {
  const proto::http::AcceptKey accept{};
  std::array<char, proto::http::response_bytes_max> out{};
  std::size_t n = proto::http::build_error(out, 503, "full", 60);
  auto r = handshake::parse_response(bytes_of({out.data(), n}), accept);
  ASSERT_EQ(r.status, handshake::Status::complete);
  EXPECT_EQ(r.code, 503);
  EXPECT_TRUE(r.retry_after);
  n = proto::http::build_error(out, 503, "full", 0);
  r = handshake::parse_response(bytes_of({out.data(), n}), accept);
  EXPECT_EQ(r.code, 503);
  EXPECT_FALSE(r.retry_after);
  r = handshake::parse_response(bytes_of("HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\n\r\n"), accept);
  EXPECT_EQ(r.code, 429);
  EXPECT_TRUE(r.retry_after);
  EXPECT_EQ(handshake::parse_response(bytes_of("SSH-2.0-OpenSSH\r\n"), accept).status, handshake::Status::malformed);
  EXPECT_EQ(handshake::parse_response(bytes_of("HTTP/1.1 1x1 Nope\r\n\r\n"), accept).status,
            handshake::Status::malformed);
  const std::string huge = "HTTP/1.1 200 OK\r\nX: " + std::string(5000, 'a');
  EXPECT_EQ(handshake::parse_response(bytes_of(huge), accept).status, handshake::Status::malformed);
}

TEST(Handshake, RefusalsSplitOnRetryAfter) {
  const proto::http::AcceptKey accept{};
  const auto outcome_of = [&](std::string_view wire) {
    const auto r = handshake::parse_response(bytes_of(wire), accept);
    EXPECT_EQ(r.status, handshake::Status::complete) << wire;
    return http_outcome(r.code, r.retry_after);
  };
  EXPECT_EQ(outcome_of("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n\r\n"), Outcome::http_429_retry_after);
  EXPECT_EQ(outcome_of("HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n"),
            Outcome::http_429_no_retry_after);
  EXPECT_EQ(outcome_of("HTTP/1.1 503 Service Unavailable\r\nretry-after: 30\r\n\r\n"), Outcome::http_503_retry_after);
  EXPECT_EQ(outcome_of("HTTP/1.1 503 Service Unavailable\r\n\r\n"), Outcome::http_503_no_retry_after);
  // Retry-After on another status does not make it one of the pairs.
  EXPECT_EQ(outcome_of("HTTP/1.1 400 Bad Request\r\nRetry-After: 1\r\n\r\n"), Outcome::other);
  EXPECT_EQ(outcome_of("HTTP/1.1 500 Internal Server Error\r\n\r\n"), Outcome::other);
  // The server's own 429 (proto/http_upgrade builds it) lands in the pair.
  std::array<char, proto::http::response_bytes_max> out{};
  std::size_t n = proto::http::build_error(out, 429, "slow down", 5);
  EXPECT_EQ(outcome_of({out.data(), n}), Outcome::http_429_retry_after);
  n = proto::http::build_error(out, 429, "slow down", 0);
  EXPECT_EQ(outcome_of({out.data(), n}), Outcome::http_429_no_retry_after);
}

TEST(Outcomes, NamesAreDistinctAndJsonSafe) {
  std::vector<std::string_view> names;
  for (std::size_t i = 0; i < outcome_count; ++i) {
    const std::string_view name = outcome_name(static_cast<Outcome>(i));
    EXPECT_NE(name, "?") << i;
    EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_"), std::string_view::npos) << name;
    for (const auto seen : names) EXPECT_NE(seen, name);
    names.push_back(name);
  }
  EXPECT_EQ(outcome_name(Outcome::http_429_retry_after), "http_429_retry_after");
  EXPECT_EQ(outcome_name(Outcome::http_429_no_retry_after), "http_429_no_retry_after");
}

// ---------------------------------------------------------------- by source

TEST(BySource, RowsMergeAndListOnlyNonZeroClasses) {
  std::vector<SourceCounts> a(3), b(3);
  a[0].attempted = 4;
  a[0].outcomes[static_cast<std::size_t>(Outcome::upgraded)] = 3;
  a[0].outcomes[static_cast<std::size_t>(Outcome::http_429_retry_after)] = 1;
  b[0].attempted = 2;
  b[0].outcomes[static_cast<std::size_t>(Outcome::http_503_retry_after)] = 2;
  b[2].attempted = 1;
  b[2].outcomes[static_cast<std::size_t>(Outcome::close_1013)] = 1;
  for (std::size_t i = 0; i < a.size(); ++i) a[i].merge(b[i]);
  EXPECT_EQ(a[0].attempted, 6u);
  SourcePlan plan;
  plan.spread = true;
  plan.sources = 3;
  EXPECT_EQ(by_source_json(a, plan, AF_INET),
            "[{\"source\":\"127.0.0.2\",\"attempted\":6,\"upgraded\":3,\"http_503_retry_after\":2,"
            "\"http_429_retry_after\":1},"
            "{\"source\":\"127.0.0.3\",\"attempted\":0},"
            "{\"source\":\"127.0.0.4\",\"attempted\":1,\"close_1013\":1}]");
  EXPECT_EQ(by_source_json({}, plan, AF_INET), "[]");
}

TEST(BySource, InTheJsonSummaryAndTheTable) {
  Options o;
  std::string error;
  ASSERT_EQ(parse_options(3, std::array<const char*, 3>{"ringgate-load", "flood", "ws://127.0.0.1:9/"}.data(), o,
                          error),
            ParseResult::run)
      << error;
  Target t;
  ASSERT_TRUE(parse_target(o.url, t, error)) << error;
  RunReport r;
  r.options = &o;
  r.target = &t;
  r.sources.spread = true;
  r.sources.sources = 2;
  r.by_source.resize(2);
  r.by_source[0].attempted = 2;
  r.by_source[0].outcomes[0] = 2;
  r.by_source[1].attempted = 1;
  r.by_source[1].outcomes[static_cast<std::size_t>(Outcome::http_503_no_retry_after)] = 1;
  const std::string json = format_json(r);
  EXPECT_NE(json.find(",\"by_source\":[{\"source\":\"127.0.0.2\",\"attempted\":2,\"upgraded\":2},"
                      "{\"source\":\"127.0.0.3\",\"attempted\":1,\"http_503_no_retry_after\":1}],"),
            std::string::npos)
      << json;
  const std::string table = format_table(r);
  EXPECT_NE(table.find("by source (2): attempted 1 (127.0.0.3) .. 2 (127.0.0.2), upgraded 0 (127.0.0.3) .. 2 "
                       "(127.0.0.2)"),
            std::string::npos)
      << table;
}

// ---------------------------------------------------------------- fanout report

TEST(FanoutReport, ChecksAndJson) {
  Options o;
  std::string error;
  ASSERT_EQ(parse({"fanout", "--connections", "50", "--channels", "5", "--messages", "20", "ws://127.0.0.1:9/ws"}, o,
                  error),
            ParseResult::run)
      << error;
  RunReport r;
  r.options = &o;
  r.fanout.subscribers_ready = 50;
  r.fanout.tally.publishes_ok = 99;
  r.fanout.tally.publishes_failed = 1;
  r.fanout.publish.failed_by_status[503] = 1;
  EXPECT_TRUE(fanout_failures(r).empty());  // a refused publish alone does not fail the run
  const std::string passed = format_json(r);
  for (const char* key : {"\"subscribers_ready\":50", "\"publishes_ok\":99", "\"publishes_failed\":1",
                          "\"publish_failures\":{\"http_503\":1}", "\"recipients\":", "\"expected_deliveries\":",
                          "\"deliveries\":", "\"lost\":0", "\"duplicated\":0", "\"out_of_order\":0",
                          "\"latency_us\":{", "\"last_delivery_us\":{", "\"publish_rate\":", "\"passed\":true",
                          "\"failed_checks\":[]"})
    EXPECT_NE(passed.find(key), std::string::npos) << key << " in " << passed;
  EXPECT_NE(format_table(r).find("check: PASSED"), std::string::npos);

  r.fanout.subscribers_ready = 48;
  r.fanout.tally.lost = 1;
  r.total.fanout.duplicated = 1;
  r.total.fanout.out_of_order = 2;
  EXPECT_EQ(fanout_failures(r), (std::vector<std::string>{"subscribers ready 48 of 50", "lost 1", "duplicated 1",
                                                           "out_of_order 2"}));
  const std::string failed = format_json(r);
  EXPECT_NE(failed.find("\"passed\":false,\"failed_checks\":[\"subscribers ready 48 of 50\",\"lost 1\","),
            std::string::npos)
      << failed;
  EXPECT_NE(format_table(r).find("check: FAILED (subscribers ready 48 of 50, lost 1, duplicated 1, out_of_order 2)"),
            std::string::npos)
      << format_table(r);

  // Stalled subscribers: reported, never a failure by themselves.
  Options so;
  ASSERT_EQ(parse({"fanout", "--connections", "50", "--channels", "5", "--messages", "20", "--stall-percent", "10",
                   "ws://127.0.0.1:9/ws"},
                  so, error),
            ParseResult::run)
      << error;
  RunReport st;
  st.options = &so;
  st.fanout.subscribers_ready = 50;
  st.fanout.tally.publishes_ok = 100;
  st.fanout.tally.expected = 900;
  st.fanout.tally.delivered = 900;
  st.total.fanout.stalled = 5;
  st.total.fanout.stalled_received = 2;
  st.total.fanout.stalled_drained = 98;
  st.total.fanout.stalled_closed_by_server = 4;
  st.total.fanout.stalled_closed_by_tool = 1;
  EXPECT_TRUE(fanout_failures(st).empty());
  const std::string stalled = format_json(st);
  for (const char* key : {"\"stall_percent\":10", "\"stalled\":5", "\"subscribers_checked\":45",
                          "\"stalled_received\":2", "\"stalled_drained\":98", "\"stalled_closed_by_server\":4",
                          "\"stalled_closed_by_tool\":1", "\"expected_deliveries\":900", "\"lost\":0",
                          "\"passed\":true"})
    EXPECT_NE(stalled.find(key), std::string::npos) << key << " in " << stalled;
  const std::string stalled_table = format_table(st);
  EXPECT_NE(stalled_table.find("stalled (--stall-percent 10): 5 of the ready stopped reading, not checked (45 "
                               "checked); read 2 messages before they stopped, 98 when drained at close; closed by "
                               "the server 4, by the tool 1"),
            std::string::npos)
      << stalled_table;
  EXPECT_NE(stalled_table.find("check: PASSED"), std::string::npos);
  // Without --stall-percent the table says nothing of it; the JSON keeps the keys.
  EXPECT_EQ(format_table(r).find("stalled"), std::string::npos);
  EXPECT_NE(format_json(r).find("\"stalled\":0"), std::string::npos);

  RunReport none;
  none.options = &o;
  none.fanout.subscribers_ready = 50;
  none.fanout.tally.publishes_unsent = 100;
  none.interrupted = true;
  EXPECT_EQ(fanout_failures(none),
            (std::vector<std::string>{"unsent 100", "no publish answered 200 or 202", "interrupted"}));
}

// ---------------------------------------------------------------- payloads

class Payloads : public ::testing::TestWithParam<PayloadKind> {};

TEST_P(Payloads, RoundTripAndChecks) {
  const PayloadKind kind = GetParam();
  for (const std::size_t size : {std::size_t{20}, std::size_t{21}, std::size_t{64}, std::size_t{1000}}) {
    std::vector<std::uint8_t> msg(size);
    payload::fill(msg, kind, 1234, 99);
    EXPECT_EQ(payload::check(msg, kind, size, 1234, 99), payload::Check::ok);
    std::uint32_t c = 0;
    std::uint64_t s = 0;
    ASSERT_TRUE(payload::read_ids(msg, kind, c, s));
    EXPECT_EQ(c, 1234u);
    EXPECT_EQ(s, 99u);
    // The right message at the wrong time: out of order.
    EXPECT_EQ(payload::check(msg, kind, size, 1234, 98), payload::Check::out_of_order);
    // Another connection's message, a flipped byte, a short echo: mismatch.
    EXPECT_EQ(payload::check(msg, kind, size, 1235, 99), payload::Check::mismatch);
    for (std::size_t at : {std::size_t{0}, std::size_t{13}, size - 1}) {
      // With no pattern bytes a corrupted sequence number is just another
      // valid message: that case is out of order, not a mismatch.
      if (size == payload::header_bytes(kind) && at >= 8) continue;
      auto bad = msg;
      bad[at] ^= 0x01;
      EXPECT_EQ(payload::check(bad, kind, size, 1234, 99), payload::Check::mismatch) << size << " @" << at;
    }
    EXPECT_EQ(payload::check({msg.data(), size - 1}, kind, size, 1234, 99), payload::Check::mismatch);
    // Checked in pieces at any offset (fragmented echoes).
    for (std::size_t cut = 0; cut <= size; cut += 7) {
      EXPECT_TRUE(payload::matches({msg.data(), cut}, kind, 1234, 99, 0));
      EXPECT_TRUE(payload::matches({msg.data() + cut, size - cut}, kind, 1234, 99, cut)) << cut;
    }
  }
}

TEST(Payloads, TextIsPrintableAscii) {
  std::vector<std::uint8_t> msg(500);
  payload::fill(msg, PayloadKind::text, 0xFFFFFFFF, 0xFFFFFFFFFFFFull);
  for (const std::uint8_t b : msg) EXPECT_TRUE(b >= 0x21 && b < 0x7F) << int{b};
}

INSTANTIATE_TEST_SUITE_P(Kinds, Payloads, ::testing::Values(PayloadKind::binary, PayloadKind::text));

// ---------------------------------------------------------------- fanout

TEST(Fanout, ChannelNamesAndTheSubscribePath) {
  std::array<char, 64> out{};
  std::size_t n = fanout::channel_name(out, "fanout-", 17);
  EXPECT_EQ(std::string_view(out.data(), n), "fanout-17");
  EXPECT_EQ(fanout::channel_index("fanout-17", "fanout-", 18), 17u);
  EXPECT_EQ(fanout::channel_index("fanout-0", "fanout-", 1), 0u);
  for (const char* name : {"fanout-18", "fanout-017", "fanout-", "fanout-1x", "other-1", "fanout--1"})
    EXPECT_EQ(fanout::channel_index(name, "fanout-", 18), fanout::no_channel) << name;
  n = fanout::subscribe_path(out, "/ws", "c.", 3);
  EXPECT_EQ(std::string_view(out.data(), n), "/ws?channels=c.3");
  n = fanout::subscribe_path(out, "/ws?token=x", "c.", 3);
  EXPECT_EQ(std::string_view(out.data(), n), "/ws?token=x&channels=c.3");
  std::array<char, 8> small{};
  EXPECT_EQ(fanout::subscribe_path(small, "/ws", "c.", 3), 0u);
  EXPECT_EQ(fanout::channel_name(small, "fanout-", 17), 0u);
}

TEST(Fanout, ReadsTheServersOwnFrames) {
  // What proto/pubsub (the server) builds, the tool reads back.
  std::array<char, proto::pubsub::answer_bytes_max> answer{};
  const std::size_t n = proto::pubsub::build_subscribed(answer, "fanout-3");
  fanout::Notice notice = fanout::read_notice({answer.data(), n});
  EXPECT_EQ(notice.kind, fanout::NoticeKind::subscribed);
  EXPECT_EQ(notice.channel, "fanout-3");

  std::array<char, fanout::publish_body_bytes_max> body{};
  const std::size_t body_len = fanout::publish_body(body, 17, 123456789);
  EXPECT_EQ(std::string_view(body.data(), body_len), R"({"seq":17,"ts_ns":123456789})");
  const std::span<const std::uint8_t> body_bytes{reinterpret_cast<const std::uint8_t*>(body.data()), body_len};
  std::vector<std::uint8_t> frame(proto::pubsub::message_frame_bytes_max(body_len));
  // An id full of the characters a scan could trip on, if it looked there.
  const proto::pubsub::MessageFrame m = proto::pubsub::build_message_frame(
      frame, {.channel = "fanout-3", .id = "seq:1.ts_ns:2", .body = body_bytes, .kind = proto::pubsub::BodyKind::json});
  ASSERT_TRUE(m.ok());
  notice = fanout::read_notice({reinterpret_cast<const char*>(m.payload.data()), m.payload.size()});
  EXPECT_EQ(notice.kind, fanout::NoticeKind::message);
  EXPECT_EQ(notice.channel, "fanout-3");
  EXPECT_EQ(notice.seq, 17u);
  EXPECT_EQ(notice.ts_ns, 123456789u);
  // The largest values fit the body.
  EXPECT_EQ(fanout::publish_body(body, UINT64_MAX, UINT64_MAX), 57u);
}

// --size: the body grows to exactly the asked length and still reads back.
TEST(Fanout, PaddedBodiesKeepTheirSequenceAndTime) {
  struct Row {
    std::size_t pad_to;
    std::size_t want;  // 0: unchanged
  };
  const Row rows[] = {{0, 0}, {20, 0}, {37, 0}, {38, 38}, {39, 39}, {4096, 4096}, {65536, 65536}, {65537, 0}};
  for (const Row& r : rows) {
    std::vector<char> body(65536);
    const std::size_t len =
        fanout::publish_body(std::span<char, fanout::publish_body_bytes_max>(body.data(), fanout::publish_body_bytes_max),
                             17, 123456789);
    ASSERT_EQ(len, 28u);
    const std::size_t grown = fanout::pad_body(body, len, r.pad_to);
    EXPECT_EQ(grown, r.want ? r.want : len) << r.pad_to;
    const std::string_view text(body.data(), grown);
    EXPECT_EQ(text.front(), '{');
    EXPECT_EQ(text.back(), '}');
    const std::span<const std::uint8_t> body_bytes{reinterpret_cast<const std::uint8_t*>(body.data()), grown};
    std::vector<std::uint8_t> frame(proto::pubsub::message_frame_bytes_max(grown));
    const proto::pubsub::MessageFrame m = proto::pubsub::build_message_frame(
        frame, {.channel = "c", .id = "1", .body = body_bytes, .kind = proto::pubsub::BodyKind::json});
    ASSERT_TRUE(m.ok()) << r.pad_to;
    const fanout::Notice n = fanout::read_notice({reinterpret_cast<const char*>(m.payload.data()), m.payload.size()});
    EXPECT_EQ(n.kind, fanout::NoticeKind::message) << r.pad_to;
    EXPECT_EQ(n.seq, 17u);
    EXPECT_EQ(n.ts_ns, 123456789u);
  }
}

TEST(Fanout, NoticesThatAreNotOurs) {
  EXPECT_EQ(fanout::read_notice(R"({"type":"error","code":"forbidden_channel","channel":"x"})").kind,
            fanout::NoticeKind::other);
  EXPECT_EQ(fanout::read_notice(R"({"type":"unsubscribed","channel":"x"})").kind, fanout::NoticeKind::other);
  for (const char* text : {"", "not json", R"({"channel":"x"})", R"({"type":"subscribed"})",
                           R"({"type":"message","channel":"x","id":"1","data":"text"})",
                           R"({"type":"message","channel":"x","id":"1","data":{"seq":1}})",
                           R"({"type":"message","channel":"x","id":"1","data":{"seq":-1,"ts_ns":5}})",
                           R"({"type":"message","channel":"x","id":"1"})"})
    EXPECT_EQ(fanout::read_notice(text).kind, fanout::NoticeKind::malformed) << text;
  // Spaces after a colon are fine.
  const fanout::Notice n =
      fanout::read_notice(R"({"type": "message", "channel": "x", "id": "1", "data": {"seq": 4, "ts_ns": 9}})");
  EXPECT_EQ(n.kind, fanout::NoticeKind::message);
  EXPECT_EQ(n.seq, 4u);
}

// Runs sequences through one tracker; `failed` lists publishes the API refused.
fanout::Counts track(std::initializer_list<std::uint64_t> seqs, std::vector<std::uint64_t> failed = {}) {
  fanout::SeqTracker t;
  fanout::Counts c;
  const auto refused = [&](std::uint64_t s) { return std::find(failed.begin(), failed.end(), s) != failed.end(); };
  for (const std::uint64_t s : seqs) c.count(fanout::arrive(t, s, refused));
  return c;
}

TEST(Fanout, InOrderDuplicatedOutOfOrder) {
  fanout::Counts c = track({0, 1, 2, 3});
  EXPECT_EQ(c.received, 4u);
  EXPECT_EQ(c.in_order, 4u);
  EXPECT_EQ(c.out_of_order + c.duplicated + c.gaps, 0u);

  c = track({0, 1, 1, 2, 0});  // 1 again, then 0 again
  EXPECT_EQ(c.in_order, 3u);
  EXPECT_EQ(c.duplicated, 2u);
  EXPECT_EQ(c.out_of_order, 0u);

  c = track({0, 2, 1, 3});  // 2 overtakes 1: one gap, then 1 fills it late
  EXPECT_EQ(c.in_order, 2u);
  EXPECT_EQ(c.out_of_order, 2u);
  EXPECT_EQ(c.gaps, 1u);
  EXPECT_EQ(c.duplicated, 0u);

  c = track({0, 2, 1, 1, 2});  // the late one and the one that overtook it, repeated
  EXPECT_EQ(c.duplicated, 2u);

  c = track({0, 5});  // four skipped in one jump: one event, four sequences
  EXPECT_EQ(c.out_of_order, 1u);
  EXPECT_EQ(c.gaps, 4u);

  c = track({3, 0, 1, 2});  // the first one is not 0
  EXPECT_EQ(c.gaps, 3u);
  EXPECT_EQ(c.out_of_order, 4u);
  EXPECT_EQ(c.duplicated, 0u);
}

TEST(Fanout, SkippingARefusedPublishIsNoGap) {
  fanout::Counts c = track({0, 2, 3}, {1});
  EXPECT_EQ(c.in_order, 3u);
  EXPECT_EQ(c.out_of_order + c.gaps, 0u);
  c = track({0, 3}, {1});  // 1 refused, 2 missing: a gap of one
  EXPECT_EQ(c.out_of_order, 1u);
  EXPECT_EQ(c.gaps, 1u);
}

TEST(Fanout, TheWindowRemembersSixtyFourBehind) {
  fanout::SeqTracker t;
  const auto none = [](std::uint64_t) { return false; };
  EXPECT_EQ(fanout::arrive(t, 0, none).arrival, fanout::Arrival::in_order);
  const fanout::ArrivalResult jump = fanout::arrive(t, 100, none);
  EXPECT_EQ(jump.arrival, fanout::Arrival::ahead);
  EXPECT_EQ(jump.gap, 99u);
  EXPECT_TRUE(jump.delivery());
  // 37..99 are within 64 of the newest (100): late, once; then duplicates.
  EXPECT_EQ(fanout::arrive(t, 37, none).arrival, fanout::Arrival::late);
  EXPECT_EQ(fanout::arrive(t, 37, none).arrival, fanout::Arrival::duplicate);
  EXPECT_EQ(fanout::arrive(t, 100, none).arrival, fanout::Arrival::duplicate);
  // 0 (and anything below 37) is too old to tell: out of order, no delivery.
  const fanout::ArrivalResult old = fanout::arrive(t, 0, none);
  EXPECT_EQ(old.arrival, fanout::Arrival::too_late);
  EXPECT_FALSE(old.delivery());
  EXPECT_EQ(fanout::arrive(t, 36, none).arrival, fanout::Arrival::too_late);
  EXPECT_FALSE(fanout::arrive(t, 99, none).arrival == fanout::Arrival::duplicate);  // 99 never came: late
}

TEST(Fanout, BoardTallyCountsLostPerPublish) {
  fanout::Board board;
  std::string error;
  ASSERT_TRUE(board.init(2, 3, error)) << error;
  board.add_subscriber(0);
  board.add_subscriber(0);
  board.add_subscriber(1);
  // Channel 0: seq 0 reaches both, seq 1 one of two, seq 2 is refused.
  // Channel 1: seq 0 ok and delivered, seq 1 ok and lost, seq 2 never sent.
  board.set_state(board.index(0, 0), fanout::PublishState::ok);
  board.delivered(board.index(0, 0), 40);
  board.delivered(board.index(0, 0), 70);
  board.set_state(board.index(0, 1), fanout::PublishState::ok);
  board.delivered(board.index(0, 1), 90);
  board.set_state(board.index(0, 2), fanout::PublishState::failed);
  board.delivered(board.index(0, 2), 5);  // delivered although refused
  board.set_state(board.index(1, 0), fanout::PublishState::ok);
  board.delivered(board.index(1, 0), 10);
  board.set_state(board.index(1, 1), fanout::PublishState::ok);
  const fanout::Tally t = fanout::tally(board);
  EXPECT_EQ(t.publishes_ok, 4u);
  EXPECT_EQ(t.publishes_failed, 1u);
  EXPECT_EQ(t.publishes_unsent, 1u);
  EXPECT_EQ(t.expected, 2u + 2u + 1u + 1u);
  EXPECT_EQ(t.delivered, 4u);
  EXPECT_EQ(t.lost, 2u);
  EXPECT_EQ(t.delivered_failed, 1u);
  // One sample per ok publish with a delivery: its slowest subscriber.
  EXPECT_EQ(t.last_delivery_us.count(), 3u);
  EXPECT_EQ(t.last_delivery_us.max(), 90u);
  EXPECT_EQ(t.last_delivery_us.min(), 10u);

  EXPECT_FALSE(board.init(1000, fanout::publishes_max / 1000 + 1, error));
  EXPECT_NE(error.find("10000000"), std::string::npos) << error;
}

TEST(Fanout, StallsEveryKthSubscriberInChannelOrder) {
  // 50 subscribers over 5 channels, 10%: the last of each channel's ten
  // (ids 45..49), not the ten of one channel.
  std::vector<std::uint64_t> ids;
  for (std::uint64_t id = 0; id < 50; ++id)
    if (fanout::stalls(id, 50, 5, 10)) ids.push_back(id);
  EXPECT_EQ(ids, (std::vector<std::uint64_t>{45, 46, 47, 48, 49}));
  // 50% of 10 over 2 channels.
  ids.clear();
  for (std::uint64_t id = 0; id < 10; ++id)
    if (fanout::stalls(id, 10, 2, 50)) ids.push_back(id);
  // In channel order 0 2 4 6 8 1 3 5 7 9, every second one: 2 6 1 5 9.
  EXPECT_EQ(ids, (std::vector<std::uint64_t>{1, 2, 5, 6, 9}));
  // floor(N x P / 100) in all, each channel within one of its share.
  for (const std::uint64_t n : {1u, 7u, 50u, 101u, 1000u})
    for (const std::uint32_t m : {1u, 3u, 7u})
      for (const std::uint32_t p : {0u, 1u, 10u, 33u, 50u, 99u, 100u}) {
        if (m > n) continue;
        std::uint64_t total = 0;
        std::vector<std::uint64_t> per_channel(m), size(m);
        for (std::uint64_t id = 0; id < n; ++id) {
          ++size[id % m];
          if (fanout::stalls(id, n, m, p)) {
            ++total;
            ++per_channel[id % m];
          }
        }
        EXPECT_EQ(total, n * p / 100) << n << " " << m << " " << p;
        for (std::uint32_t c = 0; c < m; ++c) {
          const double share = static_cast<double>(size[c] * p) / 100;
          EXPECT_LE(std::abs(static_cast<double>(per_channel[c]) - share), 1.0) << n << " " << m << " " << p << " " << c;
        }
      }
  EXPECT_FALSE(fanout::stalls(50, 50, 5, 100));  // not a subscriber of the run
  EXPECT_FALSE(fanout::stalls(0, 50, 0, 100));
}

// Ten subscribers over two channels, four messages each; subscribers 8 and 9
// (--stall-percent 20) stop reading, 7 never got ready.  Every message
// reaches everyone who reads; the stalled read only the first, then what the
// close phase drains.
TEST(Fanout, StalledSubscribersAreLeftOutOfTheCheck) {
  constexpr std::uint32_t channels = 2, subscribers = 10;
  constexpr std::uint64_t messages = 4;
  fanout::Board board;
  std::string error;
  ASSERT_TRUE(board.init(channels, messages, error)) << error;
  std::array<fanout::Subscriber, subscribers> subs{};
  fanout::Counts counts;
  for (std::uint32_t id = 0; id < subscribers; ++id) {
    subs[id].channel = id % channels;
    if (id == 7) continue;  // not subscribed when publishing began
    fanout::begin_publishing(subs[id], fanout::stalls(id, subscribers, channels, 20), board, counts);
  }
  EXPECT_EQ(counts.ready, 9u);
  EXPECT_EQ(counts.stalled, 2u);
  EXPECT_EQ(subs[8].stall, fanout::Stall::paused);
  EXPECT_EQ(subs[9].stall, fanout::Stall::paused);
  EXPECT_FALSE(subs[8].tracked);
  EXPECT_EQ(board.subscribers(0), 4u);  // 0 2 4 6; 8 is stalled
  EXPECT_EQ(board.subscribers(1), 3u);  // 1 3 5; 7 was late, 9 is stalled

  std::uint64_t checked = 0, delivered = 0;
  for (std::uint64_t seq = 0; seq < messages; ++seq)
    for (std::uint32_t c = 0; c < channels; ++c) {
      board.set_state(board.index(c, seq), fanout::PublishState::ok);
      const fanout::Notice n{.kind = fanout::NoticeKind::message, .channel = {}, .seq = seq, .ts_ns = 1'000};
      for (std::uint32_t id = c; id < subscribers; id += channels) {
        if (subs[id].stall != fanout::Stall::none && seq > 0) continue;  // stopped reading
        const fanout::Taken t = fanout::take_message(subs[id], c, n, 1'000 + 50'000, board, counts);
        EXPECT_FALSE(t.error);
        checked += t.checked;
        delivered += t.delivered;
      }
    }
  // The close phase drains the stalled: counted, still not checked.
  for (const std::uint32_t id : {8u, 9u}) {
    subs[id].stall = fanout::Stall::draining;
    for (std::uint64_t seq = 1; seq < messages; ++seq) {
      const fanout::Notice n{.kind = fanout::NoticeKind::message, .channel = {}, .seq = seq, .ts_ns = 1'000};
      EXPECT_FALSE(fanout::take_message(subs[id], id % channels, n, 9'000'000, board, counts).checked);
    }
  }
  EXPECT_EQ(checked, 7u * messages);
  EXPECT_EQ(delivered, 7u * messages);
  EXPECT_EQ(counts.received, 7u * messages);
  EXPECT_EQ(counts.in_order, 7u * messages);
  EXPECT_EQ(counts.untracked, messages);  // subscriber 7's
  EXPECT_EQ(counts.stalled_received, 2u);
  EXPECT_EQ(counts.stalled_drained, 2u * (messages - 1));
  EXPECT_EQ(counts.latency_us.count(), 7u * messages);
  EXPECT_EQ(counts.latency_us.max(), 50u);  // the drained ones' 9 s never enter it

  const fanout::Tally t = fanout::tally(board);
  EXPECT_EQ(t.expected, 7u * messages);
  EXPECT_EQ(t.delivered, 7u * messages);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.last_delivery_us.count(), channels * messages);
  EXPECT_EQ(t.last_delivery_us.max(), 50u);

  // A checked subscriber that misses one is still lost, stalled or not.
  fanout::Board board2;
  ASSERT_TRUE(board2.init(1, 2, error)) << error;
  fanout::Subscriber a, b;
  fanout::Counts c2;
  fanout::begin_publishing(a, false, board2, c2);
  fanout::begin_publishing(b, true, board2, c2);
  fanout::begin_publishing(b, false, board2, c2);  // once decided, stays stalled
  EXPECT_EQ(c2.ready, 2u);
  board2.set_state(0, fanout::PublishState::ok);
  board2.set_state(1, fanout::PublishState::ok);
  const fanout::Notice n1{.kind = fanout::NoticeKind::message, .channel = {}, .seq = 1, .ts_ns = 0};
  const fanout::Taken gap = fanout::take_message(a, 0, n1, 0, board2, c2);
  EXPECT_TRUE(gap.checked && gap.error && gap.delivered);
  EXPECT_EQ(fanout::tally(board2).lost, 1u);
  EXPECT_EQ(fanout::tally(board2).expected, 2u);

  // How a stalled subscriber ended is counted once; checked ones never.
  fanout::end_stall(b, true, c2);
  fanout::end_stall(b, false, c2);
  fanout::end_stall(a, false, c2);
  EXPECT_EQ(b.stall, fanout::Stall::ended);
  EXPECT_EQ(c2.stalled_closed_by_server, 1u);
  EXPECT_EQ(c2.stalled_closed_by_tool, 0u);
  fanout::Counts merged;
  merged.merge(c2);
  merged.merge(counts);
  EXPECT_EQ(merged.stalled, 3u);
  EXPECT_EQ(merged.stalled_closed_by_server, 1u);
  EXPECT_EQ(merged.stalled_drained, 6u);
}

TEST(Fanout, PublishRequestAndAnswer) {
  std::array<char, 512> out{};
  std::size_t n = fanout::build_publish_request(out, "127.0.0.1:9090", "", "fanout-1", "", R"({"seq":0,"ts_ns":1})");
  EXPECT_EQ(std::string_view(out.data(), n),
            "POST /publish/fanout-1 HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nContent-Type: application/json\r\n"
            "Content-Length: 19\r\n\r\n{\"seq\":0,\"ts_ns\":1}");
  n = fanout::build_publish_request(out, "h", "/api", "c", "t0k", "{}");
  EXPECT_EQ(std::string_view(out.data(), n),
            "POST /api/publish/c HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            "Authorization: Bearer t0k\r\n\r\n{}");
  std::array<char, 16> small{};
  EXPECT_EQ(fanout::build_publish_request(small, "h", "", "c", "", "{}"), 0u);

  const std::string ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 47\r\n\r\n"
                         R"({"channel":"fanout-1","id":"7","recipients":12})";
  fanout::Answer a = fanout::parse_answer(ok);
  ASSERT_EQ(a.status, fanout::AnswerStatus::complete);
  EXPECT_EQ(a.code, 200);
  EXPECT_FALSE(a.close);
  EXPECT_EQ(a.total_bytes(), ok.size());
  std::uint64_t recipients = 0;
  EXPECT_TRUE(fanout::read_recipients(std::string_view(ok).substr(a.header_bytes), recipients));
  EXPECT_EQ(recipients, 12u);
  EXPECT_FALSE(fanout::read_recipients(R"({"error":"x"})", recipients));
  // Through the backplane: the nodes holding subscribers, no total.
  std::uint64_t nodes = 0;
  EXPECT_TRUE(fanout::read_nodes(R"({"channel":"c","id":"1a-2","nodes":3})", nodes));
  EXPECT_EQ(nodes, 3u);
  EXPECT_FALSE(fanout::read_recipients(R"({"channel":"c","id":"1a-2","nodes":3})", recipients));
  EXPECT_FALSE(fanout::read_nodes(R"({"error":"x"})", nodes));

  a = fanout::parse_answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(a.status, fanout::AnswerStatus::complete);
  EXPECT_EQ(a.code, 503);
  EXPECT_TRUE(a.close);
  EXPECT_TRUE(fanout::parse_answer("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
  EXPECT_EQ(fanout::parse_answer("HTTP/1.1 200 OK\r\nContent-Le").status, fanout::AnswerStatus::need_more);
  for (const char* bad : {"garbage\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n",  // no Content-Length
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n"})
    EXPECT_EQ(fanout::parse_answer(bad).status, fanout::AnswerStatus::malformed) << bad;
  EXPECT_EQ(fanout::parse_answer(std::string(fanout::answer_head_bytes_max, 'H')).status,
            fanout::AnswerStatus::malformed);
}


// ---------------------------------------------------------------- wss://

TEST(Tls, FailureAndAlertNamesAreDistinctAndJsonSafe) {
  std::vector<std::string_view> names;
  for (std::size_t i = 0; i < tls::failure_count; ++i) {
    const std::string_view name = tls::failure_name(static_cast<tls::Failure>(i));
    EXPECT_NE(name, "?") << i;
    EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_"), std::string_view::npos) << name;
    for (const auto seen : names) EXPECT_NE(seen, name);
    names.push_back(name);
  }
  EXPECT_EQ(tls::alert_name(80), "internal_error");
  EXPECT_EQ(tls::alert_name(48), "unknown_ca");
  EXPECT_EQ(tls::alert_name(70), "protocol_version");
  EXPECT_EQ(tls::alert_name(200), "");
  for (int a = 0; a < 256; ++a) {
    const std::string_view name = tls::alert_name(static_cast<std::uint8_t>(a));
    EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_"), std::string_view::npos) << name;
  }
  EXPECT_EQ(outcome_name(Outcome::tls_failed), "tls_failed");
  EXPECT_EQ(tls::version_name(TlsVersion::v1_2), "1.2");
  EXPECT_EQ(tls::version_name(TlsVersion::v1_3), "1.3");
}

TEST(Tls, VerificationErrorsByReason) {
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY), tls::Failure::verify_untrusted);
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN), tls::Failure::verify_untrusted);
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT), tls::Failure::verify_untrusted);
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_HOSTNAME_MISMATCH), tls::Failure::verify_name);
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_IP_ADDRESS_MISMATCH), tls::Failure::verify_name);
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_CERT_HAS_EXPIRED), tls::Failure::verify_expired);
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_CERT_NOT_YET_VALID), tls::Failure::verify_expired);
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_CERT_SIGNATURE_FAILURE), tls::Failure::verify_other);
  EXPECT_EQ(tls::verify_failure(X509_V_ERR_INVALID_PURPOSE), tls::Failure::verify_other);
}

TEST(Tls, AlertsFromTheServerAreToldFromOurOwnErrors) {
  std::uint8_t alert = 0;
  EXPECT_EQ(tls::ssl_failure(ERR_LIB_SSL, SSL_R_TLSV1_ALERT_INTERNAL_ERROR, alert), tls::Failure::alert);
  EXPECT_EQ(alert, 80);
  EXPECT_EQ(tls::ssl_failure(ERR_LIB_SSL, SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE, alert), tls::Failure::alert);
  EXPECT_EQ(alert, 40);
  alert = 0;
  EXPECT_EQ(tls::ssl_failure(ERR_LIB_SSL, SSL_R_UNSUPPORTED_PROTOCOL, alert), tls::Failure::protocol);
  EXPECT_EQ(tls::ssl_failure(ERR_LIB_SSL, SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, alert), tls::Failure::protocol);
  EXPECT_EQ(tls::ssl_failure(ERR_LIB_X509, SSL_AD_REASON_OFFSET + 80, alert), tls::Failure::protocol);
  EXPECT_EQ(alert, 0);
}

TEST(Tls, StatsMergeKeepTheEarliestFailure) {
  tls::TlsStats a, b;
  a.handshakes[1][0] = 3;  // TLS 1.3 full
  a.handshakes[1][1] = 5;  // TLS 1.3 resumed
  a.full_us.record(900);
  a.failures[static_cast<std::size_t>(tls::Failure::alert)] = 2;
  a.alerts[80] = 2;
  a.first_failure_attempt = 7;
  a.first_failure = "seventh";
  b.handshakes[0][0] = 1;  // TLS 1.2 full
  b.failures[static_cast<std::size_t>(tls::Failure::timeout)] = 1;
  b.resumed_us.record(100);
  b.first_failure_attempt = 3;
  b.first_failure = "third";
  b.errors_after_handshake = 1;
  a.merge(b);
  EXPECT_EQ(a.full(), 4u);
  EXPECT_EQ(a.resumed(), 5u);
  EXPECT_EQ(a.completed(), 9u);
  EXPECT_EQ(a.failed(), 3u);
  EXPECT_EQ(a.alerts[80], 2u);
  EXPECT_EQ(a.errors_after_handshake, 1u);
  EXPECT_EQ(a.full_us.count(), 1u);
  EXPECT_EQ(a.resumed_us.count(), 1u);
  EXPECT_EQ(a.first_failure, "third");
  StepStats s, t;
  t.tls = a;
  s.merge(t);
  EXPECT_EQ(s.tls.completed(), 9u);
}

TEST(Tls, TheReportHasATlsSectionAndSaysWhyHandshakesFailed) {
  Options o;
  std::string error;
  ASSERT_EQ(parse({"hold", "--connections", "10", "--tls-ca", "/ca.pem", "--tls-resume", "wss://localhost:8443/echo"},
                  o, error),
            ParseResult::run)
      << error;
  Target t;
  ASSERT_TRUE(parse_target(o.url, t, error)) << error;
  RunReport r;
  r.options = &o;
  r.target = &t;
  r.held = 7;
  r.opening = {2.0, 0.5};
  r.rss_start_bytes = 10'000'000;
  r.rss_held_bytes = 10'070'000;
  r.total.tls.handshakes[1][0] = 2;
  r.total.tls.handshakes[1][1] = 6;
  r.total.tls.failures[static_cast<std::size_t>(tls::Failure::verify_untrusted)] = 1;
  r.total.tls.failures[static_cast<std::size_t>(tls::Failure::alert)] = 1;
  r.total.tls.alerts[80] = 1;
  r.total.tls.first_failure = "handshake: certificate verify failed: \"x\"";
  const std::string json = format_json(r);
  for (const char* want :
       {",\"tls\":{\"verify\":true,\"ca_file\":\"/ca.pem\",\"max_version\":\"1.3\",\"resume\":true,",
        "\"handshakes\":8,\"full\":2,\"resumed\":6,\"tls13\":8,\"tls12\":0,\"failed\":2,", "\"handshakes_per_s\":4.0,",
        "\"client_cpu_us_per_handshake\":62500.0,",
        "\"failures\":{\"verify_untrusted\":1,\"verify_name\":0,\"verify_expired\":0,\"verify_other\":0,\"alert\":1,",
        "\"alerts\":{\"internal_error\":1}", "\"first_failure\":\"handshake: certificate verify failed: \\\"x\\\"\"",
        "\"client_rss_per_connection\":10000", "\"open_s\":2.000"})
    EXPECT_NE(json.find(want), std::string::npos) << want << "\n" << json;
  const std::string table = format_table(r);
  for (const char* want : {"tls handshakes: 8 done: full 2, resumed 6 (TLS 1.3 8, TLS 1.2 0); failed 2",
                           "tls failures: verify_untrusted 1 alert_internal_error 1",
                           "tls rate: 4 handshakes/s over the opening 2.00 s",
                           "client memory: RSS 9.5 MiB before connecting, 9.6 MiB with 7 held: 10000 B per connection"})
    EXPECT_NE(table.find(want), std::string::npos) << want << "\n" << table;
  const std::string line = tls_failure_line(r);
  EXPECT_NE(line.find("2 of 10 TLS handshakes failed (verify_untrusted 1 alert_internal_error 1); the first: "
                      "handshake: certificate verify failed"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("is --tls-ca the CA that issued the server's certificate?"), std::string::npos) << line;
  r.total.tls = tls::TlsStats{};
  EXPECT_EQ(tls_failure_line(r), "");
  // A ws:// run has no tls section.
  ASSERT_EQ(parse({"hold", "ws://127.0.0.1:8080/echo"}, o, error), ParseResult::run) << error;
  EXPECT_EQ(format_json(r).find("\"tls\""), std::string::npos);
  EXPECT_EQ(format_table(r).find("tls"), std::string::npos);
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return path;
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  return path;
}

TEST(Tls, AContextRefusesACaFileItCannotUse) {
  Options o;
  std::string error;
  Target t;
  ASSERT_TRUE(parse_target("wss://localhost:8443/", t, error)) << error;
  const auto init = [&](const std::string& ca) {
    ASSERT_EQ(parse({"hold", "--tls-ca", ca.c_str(), "wss://localhost:8443/"}, o, error), ParseResult::run) << error;
    tls::Context c;
    EXPECT_FALSE(c.init(o, t, error)) << ca;
  };
  init("/nonexistent/ca.pem");
  EXPECT_NE(error.find("--tls-ca /nonexistent/ca.pem: No such file or directory"), std::string::npos) << error;
  init(write_temp("empty-ca.pem", "not a certificate\n"));
  EXPECT_NE(error.find("holds no PEM certificate"), std::string::npos) << error;
  init(write_temp("broken-ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"));
  EXPECT_NE(error.find("cannot be read"), std::string::npos) << error;
  // --tls-insecure needs no file; the name decides SNI and what is checked.
  ASSERT_EQ(parse({"hold", "--tls-insecure", "wss://localhost:8443/"}, o, error), ParseResult::run) << error;
  tls::Context c;
  ASSERT_TRUE(c.init(o, t, error)) << error;
  EXPECT_FALSE(c.verify());
  EXPECT_EQ(c.sni(), "localhost");
  ASSERT_TRUE(parse_target("wss://127.0.0.1:8443/", t, error)) << error;
  tls::Context by_address;
  ASSERT_TRUE(by_address.init(o, t, error)) << error;
  EXPECT_EQ(by_address.sni(), "");  // no SNI for an address (RFC 6066 3)
  EXPECT_TRUE(by_address.verify_ip());
  ASSERT_EQ(parse({"hold", "--tls-insecure", "--tls-server-name", "gw.test", "wss://127.0.0.1:8443/"}, o, error),
            ParseResult::run)
      << error;
  tls::Context named;
  ASSERT_TRUE(named.init(o, t, error)) << error;
  EXPECT_EQ(named.sni(), "gw.test");
  EXPECT_EQ(named.verify_name(), "gw.test");
  EXPECT_FALSE(named.verify_ip());
}

}  // namespace
}  // namespace rg::load
