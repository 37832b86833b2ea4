// wss://: the client side of TLS for ringgate-load, with BoringSSL.
//
// Memory per connection is what matters here (a run holds 100,000 idle wss
// connections in one process), so the layout follows the server's
// TlsStream (server/tls_stream.h):
//   - one BIO per thread, shared by every SSL of the thread: its read
//     callback takes the bytes of the recv being handled, its write callback
//     appends to the record buffer of the connection being driven.  No BIO
//     pair and no buffers of our own per connection.
//   - record buffers (ciphertext waiting or in flight) come from a pool per
//     thread and go back as soon as the send that took their last byte
//     completed.  An idle connection holds none.
//   - the SSL is made with TLS_with_buffers_method: the peer's certificates
//     stay CRYPTO_BUFFERs, shared by every connection through one buffer
//     pool, and are parsed into X509 objects only inside the verify callback
//     (then freed).  The handshake configuration is shed once the handshake
//     is done; BoringSSL frees its own read and write buffers whenever they
//     are empty.
// So an idle wss connection costs its SSL (keys, record state, session) and
// one 32-byte row here, on top of what a ws:// connection costs.
//
// The engine (engine.cpp) keeps the ring and the plaintext staging; this
// file owns the SSLs, the BIO and the ciphertext.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/tls_bio.h"
#include "tools/load/histogram.h"
#include "tools/load/plan.h"

struct ssl_st;
struct ssl_ctx_st;
struct ssl_session_st;
struct crypto_buffer_pool_st;
struct x509_store_st;

namespace rg::load::tls {

// Why a TLS handshake that began did not finish.  Every attempt whose
// handshake began lands in exactly one of handshakes (full or resumed) or
// these.
enum class Failure : std::uint8_t {
  verify_untrusted,  // the chain does not lead to --tls-ca (unknown issuer, self-signed, ...)
  verify_name,       // the certificate is not for the server name (or IP address)
  verify_expired,    // expired or not yet valid
  verify_other,      // any other verification error (bad signature, purpose, no certificate, ...)
  alert,             // the server sent a fatal alert (by description in TlsStats::alerts)
  protocol,          // a TLS error on our side: no shared version or suite, a malformed message, ...
  eof,               // the server closed the connection mid-handshake
  reset,             // the connection was reset (or another socket error) mid-handshake
  timeout,           // --handshake-timeout passed mid-handshake
  aborted,           // the run ended mid-handshake
  internal,          // no SSL could be made, no SQE: our own limits
};
inline constexpr std::size_t failure_count = 11;
static_assert(static_cast<std::size_t>(Failure::internal) + 1 == failure_count, "every failure has a name");
[[nodiscard]] std::string_view failure_name(Failure failure) noexcept;

// The name of a TLS alert description (RFC 8446 6), for report keys:
// "internal_error", "unknown_ca", ...; "" for a code without one.
[[nodiscard]] std::string_view alert_name(std::uint8_t description) noexcept;

// The failure an X.509 verification error (X509_V_ERR_*) is counted as.
[[nodiscard]] Failure verify_failure(int x509_error) noexcept;

// The failure a BoringSSL error (the library and reason of ERR_peek_error)
// is counted as when verification did not fail: a received alert (reasons
// from SSL_AD_REASON_OFFSET on), else a protocol error.  `alert` gets the
// alert's description.
[[nodiscard]] Failure ssl_failure(int lib, int reason, std::uint8_t& alert) noexcept;

// "1.2" / "1.3".
[[nodiscard]] std::string_view version_name(TlsVersion version) noexcept;

// What one thread (or, merged, the run) saw of TLS.
struct TlsStats {
  // Completed handshakes: [TLS 1.2, TLS 1.3][full, resumed].
  std::array<std::array<std::uint64_t, 2>, 2> handshakes{};
  std::array<std::uint64_t, failure_count> failures{};
  std::array<std::uint64_t, 256> alerts{};  // failures[alert], by the alert's description
  std::uint64_t close_notify_received = 0;  // the server's close_notify (answered with ours)
  // Record buffers in use at once at most (summed over threads): what a
  // burst of sends cost in 32 KiB buffers (pages touched: what was written).
  std::uint64_t record_buffers_high_water = 0;
  // Upgraded (or upgrading) connections that failed after the handshake: a
  // record that does not authenticate, an alert from the server.  Counted
  // as protocol errors too; not handshake failures.
  std::uint64_t errors_after_handshake = 0;
  // TCP connected (ClientHello written) -> handshake done, microseconds.
  Histogram full_us;
  Histogram resumed_us;
  // The first failure of the thread (lowest attempt number) in words.
  std::uint64_t first_failure_attempt = UINT64_MAX;
  std::string first_failure;

  [[nodiscard]] std::uint64_t full() const noexcept { return handshakes[0][0] + handshakes[1][0]; }
  [[nodiscard]] std::uint64_t resumed() const noexcept { return handshakes[0][1] + handshakes[1][1]; }
  [[nodiscard]] std::uint64_t completed() const noexcept { return full() + resumed(); }
  [[nodiscard]] std::uint64_t failed() const noexcept;
  void merge(const TlsStats& o);
};

// The configuration every connection of the run is made from, built once on
// the main thread before any engine starts (so a bad --tls-ca is refused
// before a socket exists).  Engines only call SSL_new on it, which BoringSSL
// allows from any thread.
class Context {
 public:
  Context() = default;
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // False with `error` naming what is wrong (the CA file, a bad name).
  [[nodiscard]] bool init(const Options& options, const Target& target, std::string& error);

  [[nodiscard]] ssl_ctx_st* ctx() const noexcept { return ctx_; }
  // SNI: the server name when it is a DNS name; "" when it is an address
  // (RFC 6066 3: literal addresses are not sent).
  [[nodiscard]] const std::string& sni() const noexcept { return sni_; }
  // What the certificate is checked against: the name (DNS) or the address.
  [[nodiscard]] const std::string& verify_name() const noexcept { return verify_name_; }
  [[nodiscard]] bool verify_ip() const noexcept { return verify_ip_; }
  [[nodiscard]] bool verify() const noexcept { return store_ != nullptr; }
  [[nodiscard]] x509_store_st* store() const noexcept { return store_; }
  [[nodiscard]] bool resume() const noexcept { return resume_; }
  // CA certificates loaded from --tls-ca.
  [[nodiscard]] std::size_t ca_count() const noexcept { return ca_count_; }

 private:
  ssl_ctx_st* ctx_ = nullptr;
  crypto_buffer_pool_st* pool_ = nullptr;
  x509_store_st* store_ = nullptr;
  std::string sni_;
  std::string verify_name_;
  bool verify_ip_ = false;
  bool resume_ = false;
  std::size_t ca_count_ = 0;
};

// What the client tells the engine.  Called from inside on_recv.
class Sink {
 public:
  // The handshake is done (`took_ns` since start()).
  virtual void tls_handshake_done(std::uint32_t slot, bool tls13, bool resumed, std::uint64_t took_ns) = 0;
  // The connection failed: in the handshake (`in_handshake`), or after it
  // (a bad record, an alert).  `detail` says what happened in words.
  // BoringSSL's own alert, if it wrote one, waits as output.
  virtual void tls_failed(std::uint32_t slot, bool in_handshake, Failure failure, std::uint8_t alert,
                          const std::string& detail) = 0;
  // Application bytes (valid only during the call).  Returns false when
  // the connection went away meanwhile: reading stops.
  virtual bool tls_plain(std::uint32_t slot, std::span<const std::uint8_t> bytes) = 0;
  // The server's close_notify arrived: nothing more comes.  What the
  // engine still has to say may be sealed, then close_notify() ends it.
  virtual void tls_peer_closed(std::uint32_t slot) = 0;

 protected:
  ~Sink() = default;
};

// One per engine thread: the SSLs of its connections, its BIO and its
// record buffers.
class Client {
 public:
  // Ciphertext of one connection waiting or in flight: two full records
  // (16 KiB of plaintext each plus header and tag), or a handshake flight.
  static constexpr std::uint32_t record_buffer_bytes = 32 * 1024;
  static constexpr std::uint32_t record_plaintext_max = 16 * 1024;
  // Kept free when sealing, so that an alert or a close_notify always fits.
  static constexpr std::uint32_t alert_reserve_bytes = 128;
  // Free record buffers that keep their pages; the others are given back
  // to the kernel (MADV_DONTNEED) as they come back.
  static constexpr std::size_t warm_buffers = 64;

  Client(const Context& context, Sink& sink) : context_(context), sink_(sink) {}
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sized at start-up: one row per slot, up to one record buffer per slot
  // (address space; pages fault in as buffers are first used).
  [[nodiscard]] bool init(std::uint32_t slots, std::string& error);

  // The TCP connection of `slot` is up: makes its SSL (resuming the
  // thread's last session with --tls-resume) and writes the ClientHello as
  // output.  False when no SSL could be made.
  [[nodiscard]] bool start(std::uint32_t slot, std::uint64_t now_ns);
  // Ciphertext arrived: drives the handshake, hands plaintext to the sink.
  void on_recv(std::uint32_t slot, std::span<const std::uint8_t> wire, std::uint64_t now_ns);

  [[nodiscard]] bool handshaking(std::uint32_t slot) const noexcept { return slots_[slot].phase == Phase::handshake; }
  [[nodiscard]] bool open(std::uint32_t slot) const noexcept { return slots_[slot].phase == Phase::open; }

  // Seals up to `plain.size()` application bytes (records of at most 16
  // KiB) into the connection's record buffer; returns how many were taken:
  // 0 when it cannot carry application bytes (handshake not done, failed,
  // close_notify sent) or the buffer has no room (seal again after the
  // send completed).
  [[nodiscard]] std::uint32_t seal(std::uint32_t slot, std::span<const std::uint8_t> plain);
  // Writes our close_notify as output, once; nothing is sealed after it.
  void close_notify(std::uint32_t slot);
  // Ciphertext not yet handed to a send.  The engine has at most one send
  // in flight per connection: it sends pending(), says submitted(n), and on
  // the completion sent(bytes).  Bytes written meanwhile (an alert, the
  // next records) are appended behind the send; the buffer never moves.
  [[nodiscard]] std::span<const std::uint8_t> pending(std::uint32_t slot) const noexcept;
  void submitted(std::uint32_t slot, std::uint32_t bytes) noexcept;
  // The send completed with `bytes` sent (a short send leaves the rest
  // pending).  The buffer goes back once all it holds is sent.
  void sent(std::uint32_t slot, std::uint32_t bytes) noexcept;
  // The connection is released: its SSL and buffer go back.  No send may be
  // in flight.
  void release(std::uint32_t slot) noexcept;

  [[nodiscard]] std::uint32_t buffers_in_use() const noexcept { return buffers_in_use_; }
  [[nodiscard]] std::uint32_t buffers_high_water() const noexcept { return high_water_; }

  // The thread's one BIO writes here; and the session callback.
  std::size_t write_out(std::span<const std::uint8_t> bytes);
  int new_session(ssl_session_st* session);
  // The verify callback's verdict on the connection being driven.
  void note_verify_error(int x509_error) noexcept { verify_error_ = x509_error; }

 private:
  // open: both ways; closed: the server's close_notify arrived (we may still
  // write until our own close_notify); failed: nothing more either way.
  enum class Phase : std::uint8_t { none, handshake, open, closed, failed };
  struct Slot {
    ssl_st* ssl = nullptr;
    std::uint64_t started_ns = 0;
    std::uint32_t out = UINT32_MAX;  // record buffer, while ciphertext waits or is in flight
    std::uint32_t out_len = 0;       // ciphertext bytes in it
    std::uint32_t out_sent = 0;      // of which handed to sends that completed
    std::uint32_t out_taken = 0;     // of which handed to sends (pending() starts here)
    Phase phase = Phase::none;
    bool notify_sent = false;  // our close_notify is written
  };
  static_assert(sizeof(Slot) <= 40, "one row per connection slot");

  void drive(std::uint32_t slot, std::uint64_t now_ns);
  void fail(std::uint32_t slot, int ssl_error);
  std::uint8_t* buffer(std::uint32_t index) const noexcept {
    return buffers_ + std::size_t{index} * record_buffer_bytes;
  }
  void give_buffer(Slot& s) noexcept;

  const Context& context_;
  Sink& sink_;
  proto::tls::SharedBio bio_;  // every SSL of this thread reads and writes through it
  std::vector<Slot> slots_;
  // Record buffers: one mapping of slots x 32 KiB of address space, taken
  // lowest-first and given back LIFO, so the pages in use stay few and warm
  // (past warm_buffers free, a buffer's pages go back to the kernel).
  std::uint8_t* buffers_ = nullptr;
  std::size_t buffers_bytes_ = 0;
  std::vector<std::uint32_t> free_buffers_;
  std::uint32_t next_buffer_ = 0;
  std::uint32_t buffers_in_use_ = 0;
  std::uint32_t high_water_ = 0;
  // --tls-resume: the newest session ticket of this thread.
  ssl_session_st* session_ = nullptr;
  // The connection being driven: where write_out puts ciphertext (the
  // recv's bytes BoringSSL reads are bio_'s input).
  std::uint32_t current_ = UINT32_MAX;
  int verify_error_ = 0;
  std::array<std::uint8_t, record_plaintext_max> plain_{};
};

}  // namespace rg::load::tls
