// wss:// for ringgate-load (tools/load/tls_client.h).
#include "tools/load/tls_client.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/mman.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

namespace rg::load::tls {

namespace {

constexpr std::uint32_t nil = UINT32_MAX;

int on_new_session(SSL* ssl, SSL_SESSION* session) {
  return static_cast<Client*>(SSL_get_app_data(ssl))->new_session(session);
}

ssl_verify_result_t accept_any_certificate(SSL*, std::uint8_t*) { return ssl_verify_ok; }

// The chain arrives as CRYPTO_BUFFERs (TLS_with_buffers_method): parsed
// here, checked against --tls-ca and the server name, and freed again, so
// no connection keeps X509 objects.
ssl_verify_result_t verify_certificate(SSL* ssl, std::uint8_t* out_alert) {
  auto* client = static_cast<Client*>(SSL_get_app_data(ssl));
  const auto* context = static_cast<const Context*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(ssl);
  const auto refuse = [&](int x509_error) {
    client->note_verify_error(x509_error);
    *out_alert = static_cast<std::uint8_t>(SSL_alert_from_verify_result(x509_error));
    return ssl_verify_invalid;
  };
  if (chain == nullptr || sk_CRYPTO_BUFFER_num(chain) == 0) return refuse(X509_V_ERR_UNSPECIFIED);
  bssl::UniquePtr<X509> leaf(X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(chain, 0)));
  bssl::UniquePtr<STACK_OF(X509)> intermediates(sk_X509_new_null());
  if (!leaf || !intermediates) return refuse(X509_V_ERR_UNSPECIFIED);
  for (std::size_t i = 1; i < sk_CRYPTO_BUFFER_num(chain); ++i) {
    bssl::UniquePtr<X509> cert(X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(chain, i)));
    if (!cert || !bssl::PushToStack(intermediates.get(), std::move(cert))) return refuse(X509_V_ERR_UNSPECIFIED);
  }
  bssl::UniquePtr<X509_STORE_CTX> store_ctx(X509_STORE_CTX_new());
  if (!store_ctx || !X509_STORE_CTX_init(store_ctx.get(), context->store(), leaf.get(), intermediates.get()) ||
      !X509_STORE_CTX_set_default(store_ctx.get(), "ssl_server"))
    return refuse(X509_V_ERR_UNSPECIFIED);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(store_ctx.get());
  const std::string& name = context->verify_name();
  if (context->verify_ip() ? !X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                           : !X509_VERIFY_PARAM_set1_host(param, name.data(), name.size()))
    return refuse(X509_V_ERR_UNSPECIFIED);
  if (X509_verify_cert(store_ctx.get()) == 1) return ssl_verify_ok;
  const int error = X509_STORE_CTX_get_error(store_ctx.get());
  return refuse(error != X509_V_OK ? error : X509_V_ERR_UNSPECIFIED);
}

bool numeric_address(const std::string& name) {
  in6_addr a6{};
  in_addr a4{};
  return inet_pton(AF_INET, name.c_str(), &a4) == 1 || inet_pton(AF_INET6, name.c_str(), &a6) == 1;
}

std::string lowercase(const char* text) {
  std::string s = text ? text : "?";
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

}  // namespace

// ---------------------------------------------------------------- names

std::string_view failure_name(Failure failure) noexcept {
  switch (failure) {
    case Failure::verify_untrusted: return "verify_untrusted";
    case Failure::verify_name: return "verify_name";
    case Failure::verify_expired: return "verify_expired";
    case Failure::verify_other: return "verify_other";
    case Failure::alert: return "alert";
    case Failure::protocol: return "protocol";
    case Failure::eof: return "eof";
    case Failure::reset: return "reset";
    case Failure::timeout: return "timeout";
    case Failure::aborted: return "aborted";
    case Failure::internal: return "internal";
  }
  return "?";
}

std::string_view alert_name(std::uint8_t description) noexcept {
  switch (description) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 113: return "bad_certificate_status_response";
    case 115: return "unknown_psk_identity";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    default: return "";
  }
}

Failure verify_failure(int x509_error) noexcept {
  switch (x509_error) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH: return Failure::verify_name;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return Failure::verify_expired;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED: return Failure::verify_untrusted;
    default: return Failure::verify_other;
  }
}

Failure ssl_failure(int lib, int reason, std::uint8_t& alert) noexcept {
  if (lib == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
    alert = static_cast<std::uint8_t>(reason - SSL_AD_REASON_OFFSET);
    return Failure::alert;
  }
  return Failure::protocol;
}

std::string_view version_name(TlsVersion version) noexcept { return version == TlsVersion::v1_2 ? "1.2" : "1.3"; }

std::uint64_t TlsStats::failed() const noexcept {
  std::uint64_t n = 0;
  for (const std::uint64_t f : failures) n += f;
  return n;
}

void TlsStats::merge(const TlsStats& o) {
  for (std::size_t v = 0; v < 2; ++v)
    for (std::size_t r = 0; r < 2; ++r) handshakes[v][r] += o.handshakes[v][r];
  for (std::size_t i = 0; i < failure_count; ++i) failures[i] += o.failures[i];
  for (std::size_t i = 0; i < alerts.size(); ++i) alerts[i] += o.alerts[i];
  close_notify_received += o.close_notify_received;
  errors_after_handshake += o.errors_after_handshake;
  record_buffers_high_water += o.record_buffers_high_water;
  full_us.merge(o.full_us);
  resumed_us.merge(o.resumed_us);
  if (o.first_failure_attempt < first_failure_attempt) {
    first_failure_attempt = o.first_failure_attempt;
    first_failure = o.first_failure;
  }
}

// ---------------------------------------------------------------- context

Context::~Context() {
  SSL_CTX_free(ctx_);
  X509_STORE_free(store_);
  CRYPTO_BUFFER_POOL_free(pool_);  // after the context: its sessions hold buffers of the pool
}

bool Context::init(const Options& o, const Target& t, std::string& error) {
  ctx_ = SSL_CTX_new(TLS_with_buffers_method());
  pool_ = CRYPTO_BUFFER_POOL_new();
  if (!ctx_ || !pool_) {
    error = "cannot create the TLS context";
    return false;
  }
  // The server's certificates, identical on every connection, are kept once.
  SSL_CTX_set0_buffer_pool(ctx_, pool_);
  SSL_CTX_set_app_data(ctx_, this);
  const std::uint16_t max = o.tls_max_version == TlsVersion::v1_2 ? TLS1_2_VERSION : TLS1_3_VERSION;
  if (!SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION) || !SSL_CTX_set_max_proto_version(ctx_, max)) {
    error = "cannot set the TLS versions";
    return false;
  }
  // What browsers offer for wss://.
  static constexpr std::uint8_t alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_CTX_set_alpn_protos(ctx_, alpn, sizeof alpn) != 0) {
    error = "cannot set ALPN";
    return false;
  }
  verify_name_ = o.tls_server_name.empty() ? t.name : o.tls_server_name;
  verify_ip_ = numeric_address(verify_name_);
  if (!verify_ip_) sni_ = verify_name_;

  if (o.tls_insecure) {
    SSL_CTX_set_custom_verify(ctx_, SSL_VERIFY_PEER, accept_any_certificate);
  } else {
    bssl::UniquePtr<BIO> file(BIO_new_file(o.tls_ca_file.c_str(), "r"));
    if (!file) {
      const int err = errno;
      ERR_clear_error();
      error = "--tls-ca " + o.tls_ca_file + ": " + (err ? std::strerror(err) : "cannot open");
      return false;
    }
    store_ = X509_STORE_new();
    if (!store_) {
      error = "cannot create the certificate store";
      return false;
    }
    while (bssl::UniquePtr<X509> cert{PEM_read_bio_X509(file.get(), nullptr, nullptr, nullptr)}) {
      if (!X509_STORE_add_cert(store_, cert.get())) {
        ERR_clear_error();  // a duplicate: harmless
        continue;
      }
      ++ca_count_;
    }
    const std::uint32_t last = ERR_peek_last_error();
    ERR_clear_error();
    // The loop ends with PEM's "no start line" at the end of the file;
    // anything else is a damaged certificate.
    if (last != 0 && !(ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)) {
      error = "--tls-ca " + o.tls_ca_file + ": a certificate in it cannot be read (" +
              lowercase(ERR_reason_error_string(last)) + ")";
      return false;
    }
    if (ca_count_ == 0) {
      error = "--tls-ca " + o.tls_ca_file + " holds no PEM certificate (-----BEGIN CERTIFICATE-----)";
      return false;
    }
    SSL_CTX_set_custom_verify(ctx_, SSL_VERIFY_PEER, verify_certificate);
  }

  resume_ = o.tls_resume;
  if (resume_) {
    // Tickets are handed to the thread that made the connection
    // (on_new_session); BoringSSL keeps no cache of its own.
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx_, on_new_session);
  } else {
    // No tickets at all: under TLS 1.2 each would stay in its connection's
    // session, memory an idle connection need not keep.
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
  }
  return true;
}

// ---------------------------------------------------------------- client

Client::~Client() {
  for (Slot& s : slots_) SSL_free(s.ssl);
  SSL_SESSION_free(session_);
  if (buffers_) munmap(buffers_, buffers_bytes_);
}

bool Client::init(std::uint32_t slots, std::string& error) {
  const auto write = [](void* self, std::span<const std::uint8_t> bytes) {
    return static_cast<Client*>(self)->write_out(bytes);
  };
  if (!bio_.init(this, write)) {
    error = "cannot create the TLS BIO";
    return false;
  }
  slots_.assign(slots, Slot{});
  buffers_bytes_ = std::max<std::size_t>(std::size_t{slots} * record_buffer_bytes, record_buffer_bytes);
  void* m = mmap(nullptr, buffers_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    error = "mapping " + std::to_string(slots) + " TLS record buffers: " + std::strerror(errno);
    buffers_ = nullptr;
    return false;
  }
  buffers_ = static_cast<std::uint8_t*>(m);
  free_buffers_.reserve(slots);
  return true;
}

// Ciphertext for the connection being driven, into its record buffer.
std::size_t Client::write_out(std::span<const std::uint8_t> bytes) {
  if (current_ == nil) return 0;
  Slot& s = slots_[current_];
  if (s.out == nil) {
    if (!free_buffers_.empty()) {
      s.out = free_buffers_.back();
      free_buffers_.pop_back();
    } else if (next_buffer_ < slots_.size()) {
      s.out = next_buffer_++;
    } else {
      return 0;  // never: a connection holds at most one
    }
    s.out_len = s.out_sent = s.out_taken = 0;
    ++buffers_in_use_;
    high_water_ = std::max(high_water_, buffers_in_use_);
  }
  const std::uint32_t n =
      std::min<std::uint32_t>(static_cast<std::uint32_t>(bytes.size()), record_buffer_bytes - s.out_len);
  std::memcpy(buffer(s.out) + s.out_len, bytes.data(), n);
  s.out_len += n;
  return n;
}

int Client::new_session(SSL_SESSION* session) {
  SSL_SESSION_free(session_);
  session_ = session;
  return 1;  // ours now
}

bool Client::start(std::uint32_t slot, std::uint64_t now_ns) {
  Slot& s = slots_[slot];
  assert(s.ssl == nullptr && s.out == nil);
  SSL* ssl = SSL_new(context_.ctx());
  if (!ssl) {
    ERR_clear_error();
    return false;
  }
  SSL_set_connect_state(ssl);
  if (!context_.sni().empty() && !SSL_set_tlsext_host_name(ssl, context_.sni().c_str())) {
    ERR_clear_error();
    SSL_free(ssl);
    return false;
  }
  // The configuration (suites, ALPN, verifier) is dropped once the handshake
  // is done: memory an idle connection need not keep.
  SSL_set_shed_handshake_config(ssl, 1);
  SSL_set_app_data(ssl, this);
  BIO_up_ref(bio_.bio());
  SSL_set_bio(ssl, bio_.bio(), bio_.bio());  // takes the one reference for both directions
  if (context_.resume() && session_ != nullptr) SSL_set_session(ssl, session_);
  s = Slot{};
  s.ssl = ssl;
  s.phase = Phase::handshake;
  s.started_ns = now_ns;
  drive(slot, now_ns);  // the ClientHello, as output
  return true;
}

void Client::on_recv(std::uint32_t slot, std::span<const std::uint8_t> wire, std::uint64_t now_ns) {
  Slot& s = slots_[slot];
  if (s.phase != Phase::handshake && s.phase != Phase::open) return;  // after a failure or close_notify: discarded
  const std::span<const std::uint8_t> outer = bio_.input();
  bio_.set_input(wire);
  drive(slot, now_ns);
  bio_.set_input(outer);
}

// Runs the handshake, then reads records until BoringSSL needs more input,
// handing plaintext up as it comes.
void Client::drive(std::uint32_t slot, std::uint64_t now_ns) {
  Slot& s = slots_[slot];
  const std::uint32_t outer = current_;
  current_ = slot;
  if (s.phase == Phase::handshake) {
    verify_error_ = 0;
    const int r = SSL_do_handshake(s.ssl);
    if (r != 1) {
      const int err = SSL_get_error(s.ssl, r);
      if (err != SSL_ERROR_WANT_READ) fail(slot, err);
      current_ = outer;
      return;
    }
    s.phase = Phase::open;
    sink_.tls_handshake_done(slot, SSL_version(s.ssl) == TLS1_3_VERSION, SSL_session_reused(s.ssl) == 1,
                             now_ns - s.started_ns);
  }
  while (s.phase == Phase::open) {
    current_ = slot;
    const int n = SSL_read(s.ssl, plain_.data(), static_cast<int>(plain_.size()));
    if (n > 0) {
      if (!sink_.tls_plain(slot, {plain_.data(), static_cast<std::size_t>(n)})) break;
      continue;
    }
    const int err = SSL_get_error(s.ssl, n);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      // The server's close_notify: nothing more comes.  The engine seals
      // what it still has to say (a close frame's echo), then our
      // close_notify goes (RFC 8446 6.1); the server lingers and reads it.
      s.phase = Phase::closed;
      sink_.tls_peer_closed(slot);
      break;
    }
    fail(slot, err);
    break;
  }
  current_ = outer;
}

void Client::fail(std::uint32_t slot, int ssl_error) {
  Slot& s = slots_[slot];
  Failure failure = Failure::protocol;
  std::uint8_t alert = 0;
  std::string detail;
  if (ssl_error == SSL_ERROR_SSL && verify_error_ != 0) {
    failure = verify_failure(verify_error_);
    detail = "certificate verify failed: " + std::string(X509_verify_cert_error_string(verify_error_)) +
             " (X.509 error " + std::to_string(verify_error_) + ") for " +
             (context_.verify_ip() ? "address " : "name ") + context_.verify_name();
  } else if (ssl_error == SSL_ERROR_SSL) {
    const std::uint32_t e = ERR_peek_error();
    failure = ssl_failure(ERR_GET_LIB(e), ERR_GET_REASON(e), alert);
    if (failure == Failure::alert) {
      const std::string_view name = alert_name(alert);
      detail = "the server sent a fatal alert: " + (name.empty() ? std::string("alert") : std::string(name)) + " (" +
               std::to_string(alert) + ")";
    } else {
      detail = "TLS error: " + lowercase(ERR_reason_error_string(e));
    }
  } else if (ssl_error == SSL_ERROR_WANT_WRITE) {
    failure = Failure::internal;
    detail = "no room for a TLS record";
  } else {
    detail = "TLS error (SSL_get_error " + std::to_string(ssl_error) + ")";
  }
  ERR_clear_error();
  verify_error_ = 0;
  const bool in_handshake = s.phase == Phase::handshake;
  s.phase = Phase::failed;
  sink_.tls_failed(slot, in_handshake, failure, alert, detail);
}

std::uint32_t Client::seal(std::uint32_t slot, std::span<const std::uint8_t> plain) {
  Slot& s = slots_[slot];
  if ((s.phase != Phase::open && s.phase != Phase::closed) || s.notify_sent || plain.empty()) return 0;
  const std::uint32_t used = s.out == nil ? 0 : s.out_len;
  const std::uint32_t overhead = static_cast<std::uint32_t>(SSL_max_seal_overhead(s.ssl)) + alert_reserve_bytes;
  if (record_buffer_bytes - used <= overhead) return 0;
  const std::uint32_t take = static_cast<std::uint32_t>(
      std::min<std::size_t>({plain.size(), record_plaintext_max, std::size_t{record_buffer_bytes - used - overhead}}));
  const std::uint32_t outer = current_;
  current_ = slot;
  const int n = SSL_write(s.ssl, plain.data(), static_cast<int>(take));
  current_ = outer;
  if (n != static_cast<int>(take)) {
    ERR_clear_error();
    return 0;
  }
  return take;
}

void Client::close_notify(std::uint32_t slot) {
  Slot& s = slots_[slot];
  if ((s.phase != Phase::open && s.phase != Phase::closed) || s.notify_sent) return;
  s.notify_sent = true;
  const std::uint32_t outer = current_;
  current_ = slot;
  (void)SSL_shutdown(s.ssl);  // writes close_notify; the server's, if not here yet, is not waited for
  current_ = outer;
  ERR_clear_error();
}

std::span<const std::uint8_t> Client::pending(std::uint32_t slot) const noexcept {
  const Slot& s = slots_[slot];
  if (s.out == nil || s.out_taken == s.out_len) return {};
  return {buffer(s.out) + s.out_taken, s.out_len - s.out_taken};
}

void Client::submitted(std::uint32_t slot, std::uint32_t bytes) noexcept {
  Slot& s = slots_[slot];
  assert(s.out != nil && s.out_taken + bytes <= s.out_len);
  s.out_taken += bytes;
}

void Client::sent(std::uint32_t slot, std::uint32_t bytes) noexcept {
  Slot& s = slots_[slot];
  if (s.out == nil) return;
  s.out_sent = std::min(s.out_sent + bytes, s.out_len);
  s.out_taken = s.out_sent;  // what a short send left goes with the next one
  if (s.out_sent == s.out_len) give_buffer(s);
}

void Client::give_buffer(Slot& s) noexcept {
  if (s.out == nil) return;
  // A burst (every connection's close frame in one turn, an unpaced
  // opening) takes thousands of buffers at once.  Beyond a few warm ones,
  // a buffer given back gives its pages back too, so the burst does not
  // stay in the RSS of a run that then holds idle connections.
  if (free_buffers_.size() >= warm_buffers) madvise(buffer(s.out), record_buffer_bytes, MADV_DONTNEED);
  free_buffers_.push_back(s.out);
  s.out = nil;
  s.out_len = s.out_sent = s.out_taken = 0;
  --buffers_in_use_;
}

void Client::release(std::uint32_t slot) noexcept {
  Slot& s = slots_[slot];
  SSL_free(s.ssl);
  give_buffer(s);
  s = Slot{};
}

}  // namespace rg::load::tls
