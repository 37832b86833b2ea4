// The TLS 1.3 key schedule's last steps, the ones kernel TLS needs: from a
// traffic secret to the AEAD key and IV (RFC 8446 7.3), the next secret of a
// KeyUpdate (7.2), and the `tls12_crypto_info_*` struct that
// setsockopt(SOL_TLS, TLS_TX or TLS_RX) takes.  The handshake itself, and so
// the secrets, stay with BoringSSL; this file starts where it hands them over.
//
// Pure: no sockets, no allocation, no exceptions.  Every function answers a
// Status, and its output is meaningful only when that is Status::ok.  The
// outputs are key material: a caller wipes them (OPENSSL_cleanse) once the
// kernel has them.
#pragma once

#include <linux/tls.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

namespace rg::proto::tls {

// The three TLS 1.3 suites kernel TLS implements (RFC 8446 B.4 code points).
enum class CipherSuite : std::uint16_t {
  aes_128_gcm_sha256 = 0x1301,
  aes_256_gcm_sha384 = 0x1302,
  chacha20_poly1305_sha256 = 0x1303,
};

enum class Hash : std::uint8_t { sha256, sha384 };

inline constexpr std::size_t sha256_bytes = 32;
inline constexpr std::size_t sha384_bytes = 48;
inline constexpr std::size_t secret_bytes_max = sha384_bytes;  // a traffic secret is Hash.length
inline constexpr std::size_t key_bytes_max = 32;               // AES-256 and ChaCha20
inline constexpr std::size_t iv_bytes = 12;                    // every TLS 1.3 AEAD (RFC 8446 5.3)

// HkdfLabel (RFC 8446 7.1): uint16 length, then label<7..255> = "tls13 " +
// Label, then context<0..255>.  So a Label is at most 249 bytes.
inline constexpr std::string_view label_prefix = "tls13 ";
inline constexpr std::size_t label_bytes_max = 255 - label_prefix.size();
inline constexpr std::size_t context_bytes_max = 255;
inline constexpr std::size_t hkdf_label_bytes_max = 2 + 1 + 255 + 1 + context_bytes_max;

// The Labels this file expands with (RFC 8446 7.2 and 7.3), named so that
// the tests check the very strings the code uses.
inline constexpr std::string_view label_key = "key";
inline constexpr std::string_view label_iv = "iv";
inline constexpr std::string_view label_traffic_update = "traffic upd";

enum class Status : std::uint8_t {
  ok,
  unknown_suite,     // not one of the three CipherSuite values
  bad_secret_size,   // the secret is not Hash.length bytes for the suite
  bad_key_size,      // TrafficKeys whose key length does not match its suite
  label_too_long,    // Label over label_bytes_max
  context_too_long,  // context over context_bytes_max
  bad_output_size,   // 0, or more than the HKDF-Expand limit (255 * Hash.length)
  buffer_too_small,  // the output span cannot hold the encoded HkdfLabel
  crypto_failed,     // BoringSSL's HKDF_expand answered 0
};
[[nodiscard]] std::string_view status_text(Status s) noexcept;  // "bad_secret_size", ...

struct SuiteParams {
  Hash hash = Hash::sha256;
  std::size_t hash_bytes = 0;       // Hash.length, also the size of every traffic secret
  std::size_t key_bytes = 0;        // AEAD key
  std::uint16_t kernel_cipher = 0;  // TLS_CIPHER_* of <linux/tls.h>
};
// Status::unknown_suite for anything but the three suites.
[[nodiscard]] Status suite_params(CipherSuite suite, SuiteParams& out) noexcept;

// ---------------------------------------------------------------- HKDF

// The serialised HkdfLabel for `label` (without the "tls13 " prefix, which is
// added), `context` and the output `length`, written to the front of `out`;
// `out_bytes` is how much of it.  RFC 8448 prints these as "info".
[[nodiscard]] Status encode_hkdf_label(std::string_view label, std::span<const std::uint8_t> context,
                                       std::size_t length, std::span<std::uint8_t> out,
                                       std::size_t& out_bytes) noexcept;

// HKDF-Expand-Label(secret, label, context, out.size()) (RFC 8446 7.1), with
// BoringSSL's HKDF_expand.  `secret` is used as the PRK as it is; the
// traffic secrets are already HKDF outputs of Hash.length bytes.
[[nodiscard]] Status hkdf_expand_label(Hash hash, std::span<const std::uint8_t> secret, std::string_view label,
                                       std::span<const std::uint8_t> context, std::span<std::uint8_t> out) noexcept;

// ---------------------------------------------------------------- traffic keys

struct TrafficKeys {
  CipherSuite suite = CipherSuite::aes_128_gcm_sha256;
  std::array<std::uint8_t, key_bytes_max> key{};
  std::size_t key_bytes = 0;  // of `key`, 16 or 32
  std::array<std::uint8_t, iv_bytes> iv{};

  [[nodiscard]] std::span<const std::uint8_t> key_view() const noexcept { return {key.data(), key_bytes}; }
};

struct TrafficKeysResult {
  Status status = Status::ok;
  TrafficKeys keys;  // meaningful only when ok()
  [[nodiscard]] bool ok() const noexcept { return status == Status::ok; }
};

// [sender]_write_key = HKDF-Expand-Label(secret, "key", "", key_length)
// [sender]_write_iv  = HKDF-Expand-Label(secret, "iv", "", 12)   (RFC 8446 7.3)
[[nodiscard]] TrafficKeysResult derive_traffic_keys(CipherSuite suite, std::span<const std::uint8_t> secret) noexcept;

// ---------------------------------------------------------------- key update

struct Secret {
  std::array<std::uint8_t, secret_bytes_max> bytes{};
  std::size_t size = 0;

  [[nodiscard]] std::span<const std::uint8_t> view() const noexcept { return {bytes.data(), size}; }
};

struct SecretResult {
  Status status = Status::ok;
  Secret secret;  // meaningful only when ok()
  [[nodiscard]] bool ok() const noexcept { return status == Status::ok; }
};

// application_traffic_secret_N+1 =
//     HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length)   (RFC 8446 7.2)
// The keys of the new secret come from derive_traffic_keys, and its records
// count from sequence number 0 again (RFC 8446 5.3).
[[nodiscard]] SecretResult next_application_traffic_secret(CipherSuite suite,
                                                           std::span<const std::uint8_t> secret) noexcept;

// ---------------------------------------------------------------- kernel TLS

// What setsockopt(fd, SOL_TLS, TLS_TX or TLS_RX, bytes().data(),
// bytes().size()) takes, for TLS 1.3.
struct KernelCryptoInfo {
  using Variant =
      std::variant<tls12_crypto_info_aes_gcm_128, tls12_crypto_info_aes_gcm_256, tls12_crypto_info_chacha20_poly1305>;
  Variant info;

  [[nodiscard]] std::span<const std::byte> bytes() const noexcept;
};

struct KernelCryptoInfoResult {
  Status status = Status::ok;
  KernelCryptoInfo crypto;  // meaningful only when ok()
  [[nodiscard]] bool ok() const noexcept { return status == Status::ok; }
};

// The crypto_info for `keys` with the next record to be sent (TLS_TX) or
// received (TLS_RX) numbered `record_sequence`; the kernel keeps counting
// from there.  AES-GCM splits the 12-byte IV into salt (first 4 bytes) and
// iv (last 8); the kernel's ChaCha20-Poly1305 struct has no salt and takes
// all 12 bytes as iv (TLS_CIPHER_CHACHA20_POLY1305_SALT_SIZE is 0).  Either
// way the kernel puts salt || iv back together as the per-connection nonce
// and XORs the sequence number into its last 8 bytes (RFC 8446 5.3).
// rec_seq is the sequence number big-endian.
[[nodiscard]] KernelCryptoInfoResult kernel_crypto_info(const TrafficKeys& keys,
                                                        std::uint64_t record_sequence) noexcept;

}  // namespace rg::proto::tls
