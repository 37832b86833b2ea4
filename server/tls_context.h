// The TLS configuration every worker's connections are made from, and how a
// reload (SIGHUP) replaces it without dropping a connection.
//
// A TlsContext is built once from the configuration's files, on the main
// thread, and never changes: one BoringSSL SSL_CTX per certificate (the
// default one from tls_cert_file, one per tls_sni_certs entry), all with the
// same policy (TLS 1.2 and 1.3, modern AEAD suites only, ALPN http/1.1,
// session tickets, no server-side session cache, no renegotiation), and the
// session-ticket keys (tls_ticket_key_file, or BoringSSL's own).  A
// ClientHello's SNI picks the certificate whose subjectAltName covers it,
// else the default.
//
// TlsContexts holds the current one.  A reload builds a new TlsContext and
// publishes it: workers make new connections' SSLs from it, while each
// existing connection keeps a reference to the one it was made from (its
// certificate stays its own until it closes).  The last reference frees it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"

struct ssl_ctx_st;

namespace rg::server {

class TlsContext {
 public:
  // A session-ticket key, as in the key file: name, HMAC-SHA256 key,
  // AES-256-CBC key (the layout nginx's ssl_session_ticket_key uses, so one
  // file can serve both).
  struct TicketKey {
    std::array<std::uint8_t, 16> name;
    std::array<std::uint8_t, 32> hmac;
    std::array<std::uint8_t, 32> aes;
  };
  static constexpr std::size_t ticket_key_bytes = 80;
  static constexpr std::size_t ticket_keys_max = 16;

  struct Certificate {
    ssl_ctx_st* ctx = nullptr;
    std::string cert_file;
    std::vector<std::string> names;  // subjectAltName DNS names (SNI is matched against these)
    std::string subject;
    std::string key_description;     // "ECDSA 256", "RSA 2048", ...
    std::int64_t not_after_s = 0;    // notAfter, seconds since the epoch
  };

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Loads every certificate, key and the ticket keys the configuration
  // names.  Null with `error` naming the file and what is wrong with it.
  [[nodiscard]] static std::shared_ptr<TlsContext> load(const Config& config, std::string& error);

  // The default certificate's context: connections start here, and SNI
  // switches them.
  [[nodiscard]] ssl_ctx_st* ctx() const noexcept { return certificates_.front().ctx; }
  [[nodiscard]] const std::vector<Certificate>& certificates() const noexcept { return certificates_; }
  // The soonest notAfter of all certificates (the expiry gauge).
  [[nodiscard]] std::int64_t not_after_s() const noexcept;
  // Ticket keys from tls_ticket_key_file (0: BoringSSL's own, per process).
  [[nodiscard]] std::size_t ticket_keys() const noexcept { return ticket_keys_.size(); }

  // The BoringSSL callbacks (public so the C callbacks can reach them).
  [[nodiscard]] const Certificate* certificate_for(const char* server_name) const noexcept;
  [[nodiscard]] const TicketKey* ticket_key(const std::uint8_t* name) const noexcept;
  [[nodiscard]] const TicketKey& current_ticket_key() const noexcept { return ticket_keys_.front(); }
  [[nodiscard]] bool is_current_ticket_key(const TicketKey* key) const noexcept { return key == &ticket_keys_.front(); }

 private:
  TlsContext() = default;
  bool add_certificate(const Config& config, const std::string& cert_file, const std::string& key_file,
                       std::string& error);

  std::vector<Certificate> certificates_;
  std::vector<TicketKey> ticket_keys_;
};

// Parses a ticket key file's bytes: one or more 80-byte keys, newest first.
// False with `error` saying what is wrong and how to make a good one.
[[nodiscard]] bool parse_ticket_keys(std::string_view bytes, const std::string& path,
                                     std::vector<TlsContext::TicketKey>& keys, std::string& error);

// The current TlsContext, replaced by reloads.  Workers check generation()
// (one relaxed load) before each new TLS connection and take current() only
// when it moved.
class TlsContexts {
 public:
  void publish(std::shared_ptr<const TlsContext> context);
  [[nodiscard]] std::shared_ptr<const TlsContext> current() const;
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const TlsContext> current_;
  std::atomic<std::uint64_t> generation_{0};
};

// The last BoringSSL error on this thread as text (and the queue cleared).
[[nodiscard]] std::string tls_error_text();

}  // namespace rg::server
