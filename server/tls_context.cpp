// The TLS configuration (server/tls_context.h): certificate, key, policy.
#include "server/tls_context.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <absl/strings/str_format.h>

#include <cstring>
#include <ctime>

namespace rg::server {

namespace {

// ALPN: WebSocket over TLS is HTTP/1.1 (RFC 6455 4.1); a client offering
// only h2 is told no application protocol rather than refused, as browsers
// always offer http/1.1 for a wss:// URL.
int select_alpn(SSL*, const std::uint8_t** out, std::uint8_t* out_len, const std::uint8_t* in, unsigned in_len,
                void*) {
  static constexpr std::uint8_t http11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};
  for (unsigned i = 0; i < in_len;) {
    const unsigned len = in[i];
    if (i + 1 + len > in_len) break;
    if (len == sizeof http11 && std::memcmp(in + i + 1, http11, sizeof http11) == 0) {
      *out = in + i + 1;
      *out_len = static_cast<std::uint8_t>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

std::int64_t posix_time(const ASN1_TIME* t) {
  if (!t) return 0;
  // Days and seconds from the epoch to `t`.
  ASN1_TIME* epoch = ASN1_TIME_set(nullptr, 0);
  int days = 0;
  int seconds = 0;
  const bool ok = epoch && ASN1_TIME_diff(&days, &seconds, epoch, t) == 1;
  ASN1_TIME_free(epoch);
  return ok ? std::int64_t{days} * 86400 + seconds : 0;
}

}  // namespace

std::string tls_error_text() {
  const std::uint32_t e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(e, text, sizeof text);
  return text;
}

TlsContext::~TlsContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

bool TlsContext::load(const Config& config, std::string& error) {
  if (config.tls_cert_file.empty() || config.tls_key_file.empty()) {
    error = "tls_listen needs tls_cert_file (a PEM certificate chain, leaf first) and tls_key_file (its key)";
    return false;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (!ctx) {
    error = "cannot create a TLS context: " + tls_error_text();
    return false;
  }
  const auto fail = [&](std::string message) {
    SSL_CTX_free(ctx);
    error = std::move(message);
    return false;
  };
  ERR_clear_error();
  if (!SSL_CTX_use_certificate_chain_file(ctx, config.tls_cert_file.c_str()))
    return fail("tls_cert_file " + config.tls_cert_file + ": " + tls_error_text());
  if (!SSL_CTX_use_PrivateKey_file(ctx, config.tls_key_file.c_str(), SSL_FILETYPE_PEM)) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return fail("tls_key_file " + config.tls_key_file + " is not the key of tls_cert_file " + config.tls_cert_file);
    }
    return fail("tls_key_file " + config.tls_key_file + ": " + tls_error_text());
  }
  if (!SSL_CTX_check_private_key(ctx))
    return fail("tls_key_file " + config.tls_key_file + " is not the key of tls_cert_file " + config.tls_cert_file);
  const std::uint16_t min_version = config.tls_min_version == TlsVersion::v1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (!SSL_CTX_set_min_proto_version(ctx, min_version) || !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
    return fail("cannot set the TLS versions: " + tls_error_text());
  // TLS 1.2: forward-secret AEAD suites only (TLS 1.3's are all AEAD and
  // not configurable in BoringSSL).
  if (!SSL_CTX_set_strict_cipher_list(ctx,
                                      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"))
    return fail("cannot set the TLS 1.2 cipher suites: " + tls_error_text());
  // Resumption by tickets only: a server-side cache would be memory per
  // session, and would not follow a client to another node.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);

  X509* leaf = SSL_CTX_get0_certificate(ctx);
  not_after_s_ = leaf ? posix_time(X509_get0_notAfter(leaf)) : 0;
  if (leaf) {
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(leaf), name, sizeof name);
    subject_ = name;
    EVP_PKEY* key = X509_get_pubkey(leaf);  // a reference of our own
    const int id = key ? EVP_PKEY_id(key) : 0;
    key_description_ = id == EVP_PKEY_EC   ? absl::StrFormat("ECDSA %d", EVP_PKEY_bits(key))
                       : id == EVP_PKEY_RSA ? absl::StrFormat("RSA %d", EVP_PKEY_bits(key))
                       : id == EVP_PKEY_ED25519 ? std::string("Ed25519")
                                                : std::string("key type ") + std::to_string(id);
    EVP_PKEY_free(key);
  }
  if (ctx_) SSL_CTX_free(ctx_);
  ctx_ = ctx;
  return true;
}

}  // namespace rg::server
