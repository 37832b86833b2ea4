// The TLS configuration (server/tls_context.h): certificates, keys, policy,
// SNI, session-ticket keys, and the holder reloads publish to.
#include "server/tls_context.h"

#include <openssl/cipher.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <absl/strings/str_format.h>

#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>

#include "proto/tls_names.h"

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

// Which TlsContext an SSL_CTX belongs to (for the ticket callback, which
// BoringSSL gives no argument).
int context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// SNI: switch the connection to the certificate that covers the name; an
// unknown or absent name keeps the default (browsers always send SNI; a
// client that does not still gets an answer).
int select_certificate(SSL* ssl, int*, void* arg) {
  const auto* context = static_cast<const TlsContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const TlsContext::Certificate* c = name ? context->certificate_for(name) : nullptr;
  if (c && c->ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, c->ctx);
  return SSL_TLSEXT_ERR_OK;
}

// Session tickets under the key file's keys: the first one seals, every one
// opens (RFC 5077's construction: AES-256-CBC and HMAC-SHA256, as BoringSSL's
// callback interface demands).  A ticket under an older key is accepted and
// renewed under the current one.
int ticket_key_callback(SSL* ssl, std::uint8_t* key_name, std::uint8_t* iv, EVP_CIPHER_CTX* cipher, HMAC_CTX* hmac,
                        int encrypt) {
  const auto* context = static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  if (!context || context->ticket_keys() == 0) return encrypt ? -1 : 0;
  if (encrypt) {
    const TlsContext::TicketKey& key = context->current_ticket_key();
    if (!RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc()))) return -1;
    std::memcpy(key_name, key.name.data(), key.name.size());
    if (!EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) ||
        !HMAC_Init_ex(hmac, key.hmac.data(), key.hmac.size(), EVP_sha256(), nullptr))
      return -1;
    return 1;
  }
  const TlsContext::TicketKey* key = context->ticket_key(key_name);
  if (!key) return 0;  // not ours (or retired): a full handshake
  if (!EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes.data(), iv) ||
      !HMAC_Init_ex(hmac, key->hmac.data(), key->hmac.size(), EVP_sha256(), nullptr))
    return -1;
  return context->is_current_ticket_key(key) ? 1 : 2;
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

std::vector<std::string> dns_names(X509* leaf) {
  std::vector<std::string> names;
  auto* general = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr));
  if (!general) return names;
  for (std::size_t i = 0; i < sk_GENERAL_NAME_num(general); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(general, i);
    if (n->type != GEN_DNS) continue;
    const ASN1_STRING* s = n->d.dNSName;
    names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(general);
  return names;
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

bool parse_ticket_keys(std::string_view bytes, const std::string& path, std::vector<TlsContext::TicketKey>& keys,
                       std::string& error) {
  const std::string how = "make one with: head -c 80 /dev/urandom > " + path +
                          "; rotate by putting a new key first (cat new old > " + path + ") and sending SIGHUP to "
                          "every node";
  if (bytes.empty() || bytes.size() % TlsContext::ticket_key_bytes != 0 ||
      bytes.size() / TlsContext::ticket_key_bytes > TlsContext::ticket_keys_max) {
    error = absl::StrFormat("tls_ticket_key_file %s holds %d bytes; it must hold 1 to %d keys of %d bytes each, "
                            "newest first (%s)",
                            path, bytes.size(), TlsContext::ticket_keys_max, TlsContext::ticket_key_bytes, how);
    return false;
  }
  keys.clear();
  for (std::size_t at = 0; at < bytes.size(); at += TlsContext::ticket_key_bytes) {
    TlsContext::TicketKey k{};
    std::memcpy(k.name.data(), bytes.data() + at, k.name.size());
    std::memcpy(k.hmac.data(), bytes.data() + at + 16, k.hmac.size());
    std::memcpy(k.aes.data(), bytes.data() + at + 48, k.aes.size());
    for (const auto& other : keys) {
      if (other.name == k.name) {
        error = "tls_ticket_key_file " + path + " holds two keys with the same 16-byte name (" + how + ")";
        return false;
      }
    }
    keys.push_back(k);
  }
  return true;
}

TlsContext::~TlsContext() {
  for (Certificate& c : certificates_)
    if (c.ctx) SSL_CTX_free(c.ctx);
}

std::int64_t TlsContext::not_after_s() const noexcept {
  std::int64_t soonest = 0;
  for (const Certificate& c : certificates_)
    if (c.not_after_s != 0 && (soonest == 0 || c.not_after_s < soonest)) soonest = c.not_after_s;
  return soonest;
}

const TlsContext::Certificate* TlsContext::certificate_for(const char* server_name) const noexcept {
  const std::string_view host(server_name);
  // Exact names before wildcards, in the order the configuration lists them.
  for (const bool wildcard : {false, true})
    for (const Certificate& c : certificates_)
      for (const std::string& n : c.names)
        if ((n.rfind("*.", 0) == 0) == wildcard && proto::tls::name_matches(n, host)) return &c;
  return nullptr;
}

const TlsContext::TicketKey* TlsContext::ticket_key(const std::uint8_t* name) const noexcept {
  for (const TicketKey& k : ticket_keys_)
    if (std::memcmp(k.name.data(), name, k.name.size()) == 0) return &k;
  return nullptr;
}

bool TlsContext::add_certificate(const Config& config, const std::string& cert_file, const std::string& key_file,
                                 std::string& error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (!ctx) {
    error = "cannot create a TLS context: " + tls_error_text();
    return false;
  }
  Certificate c;
  c.ctx = ctx;
  c.cert_file = cert_file;
  certificates_.push_back(c);  // freed with the TlsContext from here on, whatever happens
  ERR_clear_error();
  if (!SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str())) {
    error = "tls certificate " + cert_file + ": " + tls_error_text();
    return false;
  }
  if (!SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM)) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      error = "tls key " + key_file + " is not the key of tls_cert_file " + cert_file;
    } else {
      error = "tls key " + key_file + ": " + tls_error_text();
    }
    return false;
  }
  if (!SSL_CTX_check_private_key(ctx)) {
    error = "tls key " + key_file + " is not the key of tls_cert_file " + cert_file;
    return false;
  }
  const std::uint16_t min_version = config.tls_min_version == TlsVersion::v1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (!SSL_CTX_set_min_proto_version(ctx, min_version) || !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
    error = "cannot set the TLS versions: " + tls_error_text();
    return false;
  }
  // TLS 1.2: forward-secret AEAD suites only (TLS 1.3's are all AEAD and
  // not configurable in BoringSSL).
  if (!SSL_CTX_set_strict_cipher_list(ctx,
                                      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")) {
    error = "cannot set the TLS 1.2 cipher suites: " + tls_error_text();
    return false;
  }
  // Resumption by tickets only: a server-side cache would be memory per
  // session, and would not follow a client to another node.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
  SSL_CTX_set_ex_data(ctx, context_index(), this);
  if (!ticket_keys_.empty()) SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_key_callback);

  Certificate& added = certificates_.back();
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  if (leaf) {
    added.not_after_s = posix_time(X509_get0_notAfter(leaf));
    added.names = dns_names(leaf);
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(leaf), name, sizeof name);
    added.subject = name;
    EVP_PKEY* key = X509_get_pubkey(leaf);  // a reference of our own
    const int id = key ? EVP_PKEY_id(key) : 0;
    added.key_description = id == EVP_PKEY_EC        ? absl::StrFormat("ECDSA %d", EVP_PKEY_bits(key))
                            : id == EVP_PKEY_RSA     ? absl::StrFormat("RSA %d", EVP_PKEY_bits(key))
                            : id == EVP_PKEY_ED25519 ? std::string("Ed25519")
                                                     : std::string("key type ") + std::to_string(id);
    EVP_PKEY_free(key);
  }
  return true;
}

std::shared_ptr<TlsContext> TlsContext::load(const Config& config, std::string& error) {
  if (config.tls_cert_file.empty() || config.tls_key_file.empty()) {
    error = "tls_listen needs tls_cert_file (a PEM certificate chain, leaf first) and tls_key_file (its key)";
    return nullptr;
  }
  std::shared_ptr<TlsContext> context(new TlsContext());
  if (!config.tls_ticket_key_file.empty()) {
    std::ifstream in(config.tls_ticket_key_file, std::ios::binary);
    if (!in) {
      error = "tls_ticket_key_file " + config.tls_ticket_key_file + ": " + std::strerror(errno);
      return nullptr;
    }
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!parse_ticket_keys(bytes, config.tls_ticket_key_file, context->ticket_keys_, error)) return nullptr;
  }
  if (!context->add_certificate(config, config.tls_cert_file, config.tls_key_file, error)) return nullptr;
  for (const std::string& pair : config.tls_sni_certs) {
    const std::size_t colon = pair.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == pair.size()) {
      error = "tls_sni_certs: '" + pair + "' is not CERT_FILE:KEY_FILE";
      return nullptr;
    }
    if (!context->add_certificate(config, pair.substr(0, colon), pair.substr(colon + 1), error)) return nullptr;
    if (context->certificates_.back().names.empty()) {
      error = "tls_sni_certs: " + pair.substr(0, colon) +
              " names no DNS subjectAltName, so no SNI could ever select it";
      return nullptr;
    }
  }
  // Every connection starts on the default context; its SNI callback picks
  // the certificate.
  SSL_CTX_set_tlsext_servername_callback(context->ctx(), select_certificate);
  SSL_CTX_set_tlsext_servername_arg(context->ctx(), context.get());
  return context;
}

void TlsContexts::publish(std::shared_ptr<const TlsContext> context) {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    current_ = std::move(context);
  }
  generation_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<const TlsContext> TlsContexts::current() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return current_;
}

}  // namespace rg::server
