// The server side of TLS as ringgate configures it, for fuzz_tls_server and
// tls_seed_server (which captures the seeds make_tls_seeds.py commits).
//
// A TlsContext is loaded once, from the configuration's files as the server
// loads them (server/tls_context.h): a default ECDSA P-256 certificate, an
// SNI certificate (Ed25519, alt.test and *.wild.test), and a ticket key file
// of two keys (the first seals, both open).  The material is fixed and
// test-only, written to a temporary directory at start-up.
//
// A Connection is one server SSL made from it as TlsStream::start makes it
// (SSL_new, accept state, shed handshake configuration), fed the client's
// bytes through memory BIOs and driven as TlsStream::drive drives it
// (SSL_do_handshake, then SSL_read until it wants more input).  The first
// plaintext it reads gets an answer through SSL_write, as a worker answers an
// upgrade request (and only then does BoringSSL send TLS 1.3 tickets).
//
// The environment is made reproducible, so that a client transcript captured
// against tls_seed_server replays to the end against the fuzz target:
//  - RAND_bytes is replaced (tls_harness.cpp) by a fixed stream that every
//    Connection restarts: the server random, X25519 key shares, ticket IVs
//    and ticket_age_add come from it.  (BoringSSL's ECDSA nonces do not: a
//    full handshake on the default P-256 certificate signs differently each
//    time, so a captured client Finished does not verify there; Ed25519
//    signatures are deterministic, which is why the SNI certificate is one.)
//  - the clock of every SSL_CTX is fixed (SSL_CTX_set_current_time_cb), so
//    tickets in the seeds never expire.
// Neither touches the configuration under test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "server/tls_context.h"

struct ssl_st;
struct bio_st;

namespace rg::fuzz::tls {

using Bytes = std::vector<std::uint8_t>;

// Ticket keys as the file holds them: which one seals.
enum class Sealing { first_key, second_key };

// The process's TlsContext (loaded on first use; aborts if it cannot be).
// second_key: the same files but the ticket keys in the other order, so its
// tickets are sealed under the key the usual context only opens (and renews).
const server::TlsContext& context(Sealing sealing = Sealing::first_key);

// Restarts the fixed random stream (every Connection does).
void restart_random();

enum class Phase : std::uint8_t { handshake, open, failed };

class Connection {
 public:
  explicit Connection(const server::TlsContext& context);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One recv's worth of client bytes (may be empty), then the drive.  Input
  // after a failure or the peer's close_notify is discarded, as TlsStream
  // discards it.  `read_max`: SSL_read's buffer (TlsStream: 16 KiB).
  void feed(std::span<const std::uint8_t> bytes, std::size_t read_max = 16 * 1024);
  // What the server wrote since the last call.
  Bytes take_output();

  [[nodiscard]] ssl_st* ssl() const noexcept { return ssl_; }
  [[nodiscard]] Phase phase() const noexcept { return phase_; }
  [[nodiscard]] bool peer_closed() const noexcept { return peer_closed_; }
  [[nodiscard]] bool handshake_done() const noexcept { return handshake_done_; }
  // On failure: SSL_get_error's answer, and the reason of the first error of
  // the SSL library in BoringSSL's queue (0: none).
  [[nodiscard]] int error() const noexcept { return error_; }
  [[nodiscard]] int reason() const noexcept { return reason_; }
  [[nodiscard]] const Bytes& plaintext() const noexcept { return plaintext_; }
  // What BoringSSL reported through the message callback, one entry per
  // message: bit 31 written by the server, bits 8-15 the content type,
  // bits 0-7 the message type (handshake) or description (alert).
  [[nodiscard]] const std::vector<std::uint32_t>& messages() const noexcept { return messages_; }
  // BoringSSL's handshake state when the last drive ended (a static string).
  [[nodiscard]] const char* state() const noexcept { return state_; }

 private:
  void drive(std::size_t read_max);
  void fail(int error);

  ssl_st* ssl_ = nullptr;
  bio_st* in_ = nullptr;  // the SSL's references; not freed here
  bio_st* out_ = nullptr;
  Phase phase_ = Phase::handshake;
  bool peer_closed_ = false;
  bool handshake_done_ = false;
  bool answered_ = false;
  int error_ = 0;
  int reason_ = 0;
  Bytes plaintext_;
  Bytes read_buffer_;
  std::vector<std::uint32_t> messages_;
  const char* state_ = "";
};

}  // namespace rg::fuzz::tls
