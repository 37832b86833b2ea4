// TLS as a byte stream (server/byte_stream.h): BoringSSL between the ring
// and the worker's handshake, WebSocket and pub/sub code, which do not know
// it is there.
//
// Memory, per connection:
//   - idle: its `SSL` (the session keys and record state; the handshake's
//     configuration is shed once the handshake is done) and one Slot row
//     (tls_slot_bytes, 80) of this worker's table.  No BIO pair, no per-connection buffers: every
//     SSL of a worker reads and writes through one BIO whose callbacks use
//     the bytes of the recv being handled and the record buffer of the
//     connection being written.
//   - while ciphertext is waiting or in flight: one record buffer
//     (record_buffer_bytes) from the worker's pool, back as soon as the send
//     that took its last byte completes.  BoringSSL's own read buffer exists
//     only while a record is incomplete; it frees it as soon as a record is
//     consumed (BoringSSL never keeps empty buffers).
//
// Sends: the worker has at most one send in flight per connection; a send of
// application bytes seals them into the connection's record buffer after
// any ciphertext of the stream's own (handshake flights, session tickets,
// alerts, close_notify) and sends it all.  A short send is resubmitted by
// the stream under the same tag (sent() says still_sending).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/pool.h"
#include "proto/tls_bio.h"
#include "ring/ring.h"
#include "server/byte_stream.h"
#include "server/counters.h"
#include "server/tls_context.h"

struct ssl_st;
struct ssl_ctx_st;

namespace rg::server {

class TlsStream final : public ByteStream {
 public:
  // One record buffer holds the largest TLS record (16 KiB of plaintext plus
  // its header and tag) twice over, so a handshake flight with a long chain
  // or two full records fit.
  static constexpr std::uint32_t record_buffer_bytes = 32 * 1024;
  // Plaintext sealed per send: one full record (RFC 8446 5.1).
  static constexpr std::uint32_t record_plaintext_max = 16 * 1024;
  // What an idle TLS connection and a handshake in flight are charged
  // against the buffered-bytes budget on top of their record buffers: the
  // SSL (measured: perf/results/tls/report.md), and for a handshake its
  // transcript, key shares and BoringSSL's handshake buffers.
  static constexpr std::uint64_t ssl_idle_bytes = 4 * 1024;
  static constexpr std::uint64_t ssl_handshake_bytes = 24 * 1024;
  // Input a connection may send while its TLS waits for a record buffer;
  // beyond it the connection is closed (ws_tls_failures_total{reason=
  // "input_overrun"}).
  static constexpr std::size_t stash_bytes_max = 64 * 1024;

  TlsStream(ring::Ring& ring, ByteSink& sink, TlsCounters& counters);
  ~TlsStream() override;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Sized at start-up: one row per table slot, `record_buffers` buffers.
  [[nodiscard]] bool init(const TlsContexts& contexts, std::uint32_t slots, std::uint32_t record_buffers,
                          std::string& error);

  // The clock for handshake durations (the worker's, in ms).
  void set_now(std::uint64_t now_ms) noexcept { now_ms_ = now_ms; }

  // A TLS connection was accepted on `slot`: it counts as a handshake in
  // flight from now (its SSL is made when its first bytes arrive).
  void accept(std::uint32_t slot) noexcept;

  void on_recv(std::uint32_t slot, std::span<const std::uint8_t> wire) override;
  [[nodiscard]] bool ready_to_send(std::uint32_t slot) override;
  [[nodiscard]] bool send(std::uint32_t slot, std::span<const std::uint8_t> bytes, ring::Tag tag) override;
  [[nodiscard]] bool send_gather(std::uint32_t slot, const msghdr* msg, ring::Tag tag) override;
  [[nodiscard]] std::int32_t sent(std::uint32_t slot, std::int32_t res, ring::Tag tag) override;
  [[nodiscard]] bool has_output(std::uint32_t slot) const override;
  [[nodiscard]] bool close_output(std::uint32_t slot) override;
  [[nodiscard]] bool shutdown_write(std::uint32_t slot, ring::Tag tag) override;
  void on_eof(std::uint32_t slot) override;
  void release(std::uint32_t slot) override;

  // The worker refused the connection before its TLS handshake began (a
  // plaintext alert goes out instead): it stops counting against
  // tls_handshakes_max at once, not when it closes after close_timeout.
  void refuse(std::uint32_t slot) noexcept;

  // Whether the connection has begun its TLS handshake (an SSL exists):
  // before that, a refusal goes out as a plaintext alert.
  [[nodiscard]] bool started(std::uint32_t slot) const noexcept { return slots_[slot].ssl != nullptr; }
  [[nodiscard]] std::uint32_t handshakes_in_flight() const noexcept { return handshakes_; }
  // Bytes charged against the buffered-bytes budget (TLS bytes held).
  [[nodiscard]] std::uint64_t held_bytes() const noexcept;


 private:
  enum class Phase : std::uint8_t { none, accepted, handshake, open, failed };
  struct Slot {
    ssl_st* ssl = nullptr;
    // What the SSL was made from: kept until the connection closes, so a
    // reload never pulls a certificate or ticket key from under it.
    std::shared_ptr<const TlsContext> context;
    std::uint32_t out = base::nil;  // record buffer, while ciphertext waits or is in flight
    std::uint32_t out_len = 0;      // ciphertext bytes in it
    std::uint32_t out_sent = 0;     // of which sent
    std::uint32_t flight_end = 0;   // end of the send in flight (0: none)
    std::uint32_t flight_app = 0;   // application bytes that send carries
    std::uint32_t started_ms = 0;   // low bits of the clock when the handshake began
    Phase phase = Phase::none;
    bool notify_sent = false;       // close_notify queued
    bool peer_closed = false;       // the peer's close_notify arrived
    bool waiting = false;           // on waiters_ for a record buffer
    bool blocked = false;           // BoringSSL wanted to write (a flight, an answer) and found no buffer
    // While blocked: input BoringSSL has not read yet (rare: every record
    // buffer in use), at most stash_bytes_max, charged to held_bytes().
    std::vector<std::uint8_t> stash;
  };
  static_assert(sizeof(Slot) == tls_slot_bytes,
                "a TLS table row is memory per table slot: tooling/capacity_model.h plans with tls_slot_bytes");
  struct Record {
    std::array<std::uint8_t, record_buffer_bytes> bytes;
  };

  std::size_t write_out(std::span<const std::uint8_t> bytes);
  bool start(std::uint32_t slot);
  void wait_for_buffer(std::uint32_t slot);
  void keep_unread(std::uint32_t slot);
  void drop_stash(Slot& s);
  void abandon(std::uint32_t slot);
  void enqueue_waiter(std::uint32_t slot);
  void drive(std::uint32_t slot);
  void handshake_done(std::uint32_t slot);
  void leave_phase(Slot& s) noexcept;
  void fail(std::uint32_t slot);
  bool seal(std::uint32_t slot, std::span<const std::uint8_t> plain);
  bool submit(std::uint32_t slot, ring::Tag tag);
  void release_buffer(Slot& s);
  [[nodiscard]] std::uint32_t room(const Slot& s) const noexcept;

  ring::Ring& ring_;
  ByteSink& sink_;
  TlsCounters& counters_;
  const TlsContexts* contexts_ = nullptr;
  std::shared_ptr<const TlsContext> context_;  // the current one, as of context_generation_
  std::uint64_t context_generation_ = 0;
  proto::tls::SharedBio bio_;  // every SSL of this worker reads and writes through it
  std::vector<Slot> slots_;
  base::SlotArray<Record> records_;
  std::uint32_t records_in_use_ = 0;
  // Connections waiting for a record buffer, in arrival order (a FIFO:
  // entries before waiter_head_ are served; a released connection's entry
  // is skipped).
  std::vector<std::uint32_t> waiters_;
  std::size_t waiter_head_ = 0;
  std::uint32_t handshakes_ = 0;
  std::uint64_t stash_bytes_ = 0;  // capacity of every Slot::stash
  std::uint32_t established_ = 0;
  std::uint64_t now_ms_ = 0;
  // The connection being driven: where write_out puts ciphertext (the
  // recv's bytes BoringSSL reads are bio_'s input).
  std::uint32_t current_ = base::nil;
  std::array<std::uint8_t, record_plaintext_max> plain_{};  // SSL_read's and send_gather's plaintext
};

}  // namespace rg::server
