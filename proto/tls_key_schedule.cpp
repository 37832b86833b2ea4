#include "proto/tls_key_schedule.h"

#include <openssl/digest.h>
#include <openssl/hkdf.h>

#include <cstring>

#ifndef OPENSSL_IS_BORINGSSL
#error "proto/tls_key_schedule.cpp needs BoringSSL (android-libboringssl-dev), not OpenSSL"
#endif

namespace rg::proto::tls {

static_assert(TLS_CIPHER_AES_GCM_128_KEY_SIZE == 16 && TLS_CIPHER_AES_GCM_256_KEY_SIZE == 32 &&
              TLS_CIPHER_CHACHA20_POLY1305_KEY_SIZE == 32);
// The kernel's nonce is salt || iv: 12 bytes for every suite, as TLS 1.3's.
static_assert(TLS_CIPHER_AES_GCM_128_SALT_SIZE + TLS_CIPHER_AES_GCM_128_IV_SIZE == iv_bytes);
static_assert(TLS_CIPHER_AES_GCM_256_SALT_SIZE + TLS_CIPHER_AES_GCM_256_IV_SIZE == iv_bytes);
static_assert(TLS_CIPHER_CHACHA20_POLY1305_SALT_SIZE + TLS_CIPHER_CHACHA20_POLY1305_IV_SIZE == iv_bytes);
static_assert(TLS_CIPHER_AES_GCM_128_REC_SEQ_SIZE == 8 && TLS_CIPHER_AES_GCM_256_REC_SEQ_SIZE == 8 &&
              TLS_CIPHER_CHACHA20_POLY1305_REC_SEQ_SIZE == 8);

std::string_view status_text(Status s) noexcept {
  switch (s) {
    case Status::ok: return "ok";
    case Status::unknown_suite: return "unknown_suite";
    case Status::bad_secret_size: return "bad_secret_size";
    case Status::bad_key_size: return "bad_key_size";
    case Status::label_too_long: return "label_too_long";
    case Status::context_too_long: return "context_too_long";
    case Status::bad_output_size: return "bad_output_size";
    case Status::buffer_too_small: return "buffer_too_small";
    case Status::crypto_failed: return "crypto_failed";
  }
  return "unknown";
}

Status suite_params(CipherSuite suite, SuiteParams& out) noexcept {
  switch (suite) {
    case CipherSuite::aes_128_gcm_sha256:
      out = {Hash::sha256, sha256_bytes, TLS_CIPHER_AES_GCM_128_KEY_SIZE, TLS_CIPHER_AES_GCM_128};
      return Status::ok;
    case CipherSuite::aes_256_gcm_sha384:
      out = {Hash::sha384, sha384_bytes, TLS_CIPHER_AES_GCM_256_KEY_SIZE, TLS_CIPHER_AES_GCM_256};
      return Status::ok;
    case CipherSuite::chacha20_poly1305_sha256:
      out = {Hash::sha256, sha256_bytes, TLS_CIPHER_CHACHA20_POLY1305_KEY_SIZE, TLS_CIPHER_CHACHA20_POLY1305};
      return Status::ok;
  }
  return Status::unknown_suite;
}

namespace {

const EVP_MD* digest_of(Hash hash) noexcept { return hash == Hash::sha384 ? EVP_sha384() : EVP_sha256(); }

std::size_t hash_bytes_of(Hash hash) noexcept { return hash == Hash::sha384 ? sha384_bytes : sha256_bytes; }

}  // namespace

Status encode_hkdf_label(std::string_view label, std::span<const std::uint8_t> context, std::size_t length,
                         std::span<std::uint8_t> out, std::size_t& out_bytes) noexcept {
  out_bytes = 0;
  if (label.size() > label_bytes_max) return Status::label_too_long;
  if (context.size() > context_bytes_max) return Status::context_too_long;
  if (length == 0 || length > 0xFFFF) return Status::bad_output_size;
  const std::size_t full_label_bytes = label_prefix.size() + label.size();
  const std::size_t need = 2 + 1 + full_label_bytes + 1 + context.size();
  if (out.size() < need) return Status::buffer_too_small;

  std::size_t at = 0;
  out[at++] = static_cast<std::uint8_t>(length >> 8);
  out[at++] = static_cast<std::uint8_t>(length & 0xFF);
  out[at++] = static_cast<std::uint8_t>(full_label_bytes);
  std::memcpy(out.data() + at, label_prefix.data(), label_prefix.size());
  at += label_prefix.size();
  if (!label.empty()) std::memcpy(out.data() + at, label.data(), label.size());
  at += label.size();
  out[at++] = static_cast<std::uint8_t>(context.size());
  if (!context.empty()) std::memcpy(out.data() + at, context.data(), context.size());
  at += context.size();
  out_bytes = at;
  return Status::ok;
}

Status hkdf_expand_label(Hash hash, std::span<const std::uint8_t> secret, std::string_view label,
                         std::span<const std::uint8_t> context, std::span<std::uint8_t> out) noexcept {
  // RFC 5869 2.3: L <= 255 * HashLen.  Checked here so that the answer is
  // bad_output_size rather than BoringSSL's generic failure.
  if (out.empty() || out.size() > 255 * hash_bytes_of(hash)) return Status::bad_output_size;
  std::array<std::uint8_t, hkdf_label_bytes_max> info{};
  std::size_t info_bytes = 0;
  const Status encoded = encode_hkdf_label(label, context, out.size(), info, info_bytes);
  if (encoded != Status::ok) return encoded;
  if (HKDF_expand(out.data(), out.size(), digest_of(hash), secret.data(), secret.size(), info.data(), info_bytes) != 1)
    return Status::crypto_failed;
  return Status::ok;
}

namespace {
// The suite's parameters, and a traffic secret of its hash's length.
Status secret_params(CipherSuite suite, std::span<const std::uint8_t> secret, SuiteParams& p) noexcept {
  const Status status = suite_params(suite, p);
  if (status != Status::ok) return status;
  return secret.size() == p.hash_bytes ? Status::ok : Status::bad_secret_size;
}
}  // namespace

TrafficKeysResult derive_traffic_keys(CipherSuite suite, std::span<const std::uint8_t> secret) noexcept {
  TrafficKeysResult r;
  SuiteParams p;
  r.status = secret_params(suite, secret, p);
  if (r.status != Status::ok) return r;
  r.keys.suite = suite;
  r.keys.key_bytes = p.key_bytes;
  r.status = hkdf_expand_label(p.hash, secret, label_key, {}, {r.keys.key.data(), p.key_bytes});
  if (r.status != Status::ok) return r;
  r.status = hkdf_expand_label(p.hash, secret, label_iv, {}, r.keys.iv);
  return r;
}

SecretResult next_application_traffic_secret(CipherSuite suite, std::span<const std::uint8_t> secret) noexcept {
  SecretResult r;
  SuiteParams p;
  r.status = secret_params(suite, secret, p);
  if (r.status != Status::ok) return r;
  r.secret.size = p.hash_bytes;
  r.status = hkdf_expand_label(p.hash, secret, label_traffic_update, {}, {r.secret.bytes.data(), p.hash_bytes});
  return r;
}

// get_if rather than std::visit: visit may throw bad_variant_access (it
// cannot here, the alternatives are plain structs, but this is noexcept).
std::span<const std::byte> KernelCryptoInfo::bytes() const noexcept {
  if (const auto* i = std::get_if<tls12_crypto_info_aes_gcm_128>(&info)) return std::as_bytes(std::span(i, 1));
  if (const auto* i = std::get_if<tls12_crypto_info_aes_gcm_256>(&info)) return std::as_bytes(std::span(i, 1));
  if (const auto* i = std::get_if<tls12_crypto_info_chacha20_poly1305>(&info)) return std::as_bytes(std::span(i, 1));
  return {};
}

namespace {

// The crypto_info of type Info, built in place; the three types differ only
// in their array sizes.
template <typename Info>
KernelCryptoInfo::Variant fill_crypto_info(std::uint16_t cipher, const TrafficKeys& keys,
                                           std::uint64_t record_sequence) noexcept {
  KernelCryptoInfo::Variant v(std::in_place_type<Info>);  // value-initialised: all zero
  Info& info = *std::get_if<Info>(&v);
  info.info.version = TLS_1_3_VERSION;
  info.info.cipher_type = cipher;
  static_assert(sizeof info.salt + sizeof info.iv == iv_bytes);
  // sizeof of a zero-length array is 0 (ChaCha20's salt): the copy is empty.
  std::memcpy(info.salt, keys.iv.data(), sizeof info.salt);
  std::memcpy(info.iv, keys.iv.data() + sizeof info.salt, sizeof info.iv);
  std::memcpy(info.key, keys.key.data(), sizeof info.key);
  static_assert(sizeof info.rec_seq == 8);
  for (std::size_t i = 0; i < 8; ++i) info.rec_seq[i] = static_cast<unsigned char>(record_sequence >> (8 * (7 - i)));
  return v;
}

}  // namespace

KernelCryptoInfoResult kernel_crypto_info(const TrafficKeys& keys, std::uint64_t record_sequence) noexcept {
  KernelCryptoInfoResult r;
  SuiteParams p;
  r.status = suite_params(keys.suite, p);
  if (r.status != Status::ok) return r;
  if (keys.key_bytes != p.key_bytes) {
    r.status = Status::bad_key_size;
    return r;
  }
  switch (keys.suite) {
    case CipherSuite::aes_128_gcm_sha256:
      r.crypto.info = fill_crypto_info<tls12_crypto_info_aes_gcm_128>(p.kernel_cipher, keys, record_sequence);
      break;
    case CipherSuite::aes_256_gcm_sha384:
      r.crypto.info = fill_crypto_info<tls12_crypto_info_aes_gcm_256>(p.kernel_cipher, keys, record_sequence);
      break;
    case CipherSuite::chacha20_poly1305_sha256:
      r.crypto.info = fill_crypto_info<tls12_crypto_info_chacha20_poly1305>(p.kernel_cipher, keys, record_sequence);
      break;
  }
  return r;
}

}  // namespace rg::proto::tls
