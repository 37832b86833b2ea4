// Secrets (control/secrets.h): reading, the strength rules, comparison.
#include "control/secrets.h"

#include <absl/strings/str_format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "proto/jwt.h"

namespace rg::server {

namespace {

const char* setting(SecretKind kind) { return kind == SecretKind::hs256_key ? "jwt_secret_file" : "api_token_file"; }

// The command that makes a good secret: 32 random bytes as base64 text, 44
// bytes (the newline base64 adds is the one dropped on reading).
std::string how_to_make(const std::string& path) {
  return absl::StrFormat("make one with: head -c 32 /dev/urandom | base64 > %s", path);
}

}  // namespace

Secret read_secret(const std::string& path, SecretKind kind) {
  Secret out;
  const char* key = setting(kind);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    out.error = absl::StrFormat("%s %s: %s", key, path, std::strerror(errno));
    return out;
  }
  char buf[4096];
  for (std::size_t n; out.bytes.size() <= secret_file_bytes_max && (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
    out.bytes.append(buf, n);
  std::fclose(f);
  if (!out.bytes.empty() && out.bytes.back() == '\n') out.bytes.pop_back();
  if (!out.bytes.empty() && out.bytes.back() == '\r') out.bytes.pop_back();

  const std::size_t max = kind == SecretKind::hs256_key ? proto::jwt::key_bytes_max : api_token_bytes_max;
  const bool hs256 = kind == SecretKind::hs256_key;
  const char* what = hs256 ? "an HS256 key" : "an API token";
  if (out.bytes.size() < secret_bytes_min) {
    out.error = absl::StrFormat("%s %s holds %d byte%s; %s must be at least %d bytes (%s); %s", key, path,
                                out.bytes.size(), out.bytes.size() == 1 ? "" : "s", what, secret_bytes_min,
                                hs256 ? "RFC 7518 3.2: no shorter than the 256-bit hash" : "256 bits, like the JWT key",
                                how_to_make(path));
  } else if (out.bytes.size() > max) {
    out.error = absl::StrFormat("%s %s holds more than %d bytes, the most %s may have here; %s", key, path, max, what,
                                how_to_make(path));
  } else if (kind == SecretKind::api_token) {
    for (const char c : out.bytes) {
      if (c <= 0x20 || c >= 0x7F) {
        out.error = absl::StrFormat(
            "%s %s holds a space, control or non-ASCII byte, which cannot travel in an Authorization header; %s",
            key, path, how_to_make(path));
        break;
      }
    }
  }
  if (!out.ok()) out.bytes.clear();
  return out;
}

bool same_secret(std::string_view a, std::string_view b) noexcept {
  // The length is not secret (it is the configured token's); the bytes are.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace rg::server
