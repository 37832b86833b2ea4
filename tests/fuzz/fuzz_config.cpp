// config/config.h: apply_toml (the --config file), apply_option (one flag),
// parse_size and parse_duration_ms.
//
// Input: [mode] [text...]
//   mode bits 0-1  0, 3: the text is a TOML document
//                  1: "key=value" for apply_option (split at the first '=')
//                  2: a size and a duration
// What must hold: no crash or hang on any document; a refusal names the
// file first; the same document gives the same answer every time, and one
// that applied applies again; sizes and durations round-trip through their
// plain numbers.
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"
#include "fuzz_support.h"

namespace {

using rg::server::Config;

// Known toml++ 3.3.0 bugs found by this target (tests/unit/test_config.cpp,
// FuzzFindings) are guarded in config/config.cpp: non-ASCII is refused
// before toml++ sees it, and its assertions are no-ops.  Checked here: a
// document with a non-ASCII byte is always refused.
bool non_ascii(std::string_view s) {
  for (const char ch : s)
    if (static_cast<unsigned char>(ch) >= 0x80) return true;
  return false;
}

void check_toml(const std::string& text) {
  Config a;
  std::string error_a;
  const bool ok = rg::server::apply_toml(text, "fuzz.toml", a, error_a);
  if (non_ascii(text)) FUZZ_CHECK(!ok);
  if (!ok) {
    FUZZ_CHECK(error_a.starts_with("fuzz.toml"));
  }
  Config b;
  std::string error_b;
  FUZZ_CHECK(rg::server::apply_toml(text, "fuzz.toml", b, error_b) == ok);
  FUZZ_CHECK(error_a == error_b);
  if (ok) {
    std::string again;
    FUZZ_CHECK(rg::server::apply_toml(text, "fuzz.toml", a, again));
    FUZZ_CHECK(a.listen_host == b.listen_host && a.listen_port == b.listen_port && a.echo_path == b.echo_path &&
               a.subprotocols == b.subprotocols && a.max_message_size == b.max_message_size &&
               a.raw_channels == b.raw_channels && a.buffer_drain_threshold == b.buffer_drain_threshold);
  }
}

void check_option(const std::string& text) {
  const std::size_t eq = text.find('=');
  const std::string key = text.substr(0, eq);
  const std::string value = eq == std::string::npos ? std::string() : text.substr(eq + 1);
  Config c;
  std::string error;
  if (!rg::server::apply_option(key, value, c, error)) {
    FUZZ_CHECK(!error.empty());
  } else {
    Config d;
    std::string again;
    FUZZ_CHECK(rg::server::apply_option(key, value, d, again));
  }
}

void check_units(const std::string& text) {
  std::uint64_t bytes = 0;
  if (rg::server::parse_size(text, bytes)) {
    std::uint64_t plain = 0;
    FUZZ_CHECK(rg::server::parse_size(std::to_string(bytes), plain) && plain == bytes);
  }
  std::uint64_t ms = 0;
  if (rg::server::parse_duration_ms(text, ms)) {
    std::uint64_t plain = 0;
    FUZZ_CHECK(rg::server::parse_duration_ms(std::to_string(ms) + "ms", plain) && plain == ms);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rg::fuzz::Input in(data, size);
  const std::uint8_t mode = in.byte();
  const std::string text(rg::fuzz::chars(in.rest()));
  switch (mode & 3) {
    case 1:
      check_option(text);
      break;
    case 2:
      check_units(text);
      break;
    default:
      check_toml(text);
      break;
  }
  return 0;
}
