// The TLS configuration every worker's connections are made from: one
// BoringSSL SSL_CTX holding the certificate chain, its key and the protocol
// policy (TLS 1.2 and 1.3, modern AEAD suites only, ALPN http/1.1, session
// tickets, no server-side session cache, no renegotiation).  Built once at
// start-up on the main thread; workers only call SSL_new on it, which
// BoringSSL allows from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "config/config.h"

struct ssl_ctx_st;

namespace rg::server {

class TlsContext {
 public:
  TlsContext() = default;
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Loads tls_cert_file and tls_key_file.  False with `error` naming the file
  // and what is wrong with it.
  [[nodiscard]] bool load(const Config& config, std::string& error);

  [[nodiscard]] ssl_ctx_st* ctx() const noexcept { return ctx_; }
  // The leaf certificate's notAfter, seconds since the epoch (for the
  // expiry gauge operators alert on); 0 if unknown.
  [[nodiscard]] std::int64_t not_after_s() const noexcept { return not_after_s_; }
  // "ECDSA P-256", "RSA 2048", ...: for the start-up line.
  [[nodiscard]] const std::string& key_description() const noexcept { return key_description_; }
  [[nodiscard]] const std::string& subject() const noexcept { return subject_; }

 private:
  ssl_ctx_st* ctx_ = nullptr;
  std::int64_t not_after_s_ = 0;
  std::string key_description_;
  std::string subject_;
};

// The last BoringSSL error on this thread as text (and the queue cleared).
[[nodiscard]] std::string tls_error_text();

}  // namespace rg::server
