// Secrets: the HS256 key (jwt_secret_file) and the publish API's bearer token
// (api_token_file).  Read from files, so they never show in the process list;
// held to a minimum length at start-up, so a one-byte key cannot sign tokens
// anyone could guess; compared in constant time.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace rg::server {

// RFC 7518 3.2: an HS256 key must be at least as long as the hash, 256 bits.
// The API token gets the same floor: it guards the same deliveries.
inline constexpr std::size_t secret_bytes_min = 32;
// The API token travels in an Authorization header, within the admin
// parser's 8 KiB of headers; ringgate-load sends at most this many bytes too.
inline constexpr std::size_t api_token_bytes_max = 4096;
// A file is read up to this many bytes (anything longer is refused anyway).
inline constexpr std::size_t secret_file_bytes_max = 64 * 1024;

enum class SecretKind : unsigned char { hs256_key, api_token };

struct Secret {
  std::string bytes;  // the file's bytes, less one trailing newline (editors add one)
  std::string error;  // why it cannot be used: names the setting, the file, and how to make a good one
  [[nodiscard]] bool ok() const noexcept { return error.empty(); }
};

// Reads the secret at `path` and checks it: at least secret_bytes_min bytes,
// at most the kind's maximum (256 for an HS256 key, api_token_bytes_max for
// a token, which must also be visible ASCII to fit in a header).
[[nodiscard]] Secret read_secret(const std::string& path, SecretKind kind);

// Constant-time comparison for bearer tokens: the time taken does not
// depend on where the first difference is.
[[nodiscard]] bool same_secret(std::string_view a, std::string_view b) noexcept;

}  // namespace rg::server
