// The byte-stream seam: between ring I/O and the protocol handlers.
//
// Upward, the bytes a recv completion brought go to on_recv(); the stream
// hands the application bytes they carry to the ByteSink (the worker's
// handshake and WebSocket code), in order.  Downward, the worker's outbound
// code asks the stream to send application bytes, and learns from sent() how
// many application bytes a completed send covered.  Plain TCP passes bytes
// through; TLS (BoringSSL) decrypts on the way up and encrypts into pooled
// record buffers on the way down; kernel TLS is TLS stepping aside once the
// keys are in the kernel.  The handshake, WebSocket and pub/sub code never
// know which one they sit on.
//
// One stream object per worker per kind, not one per connection: a
// connection's record says which kind it uses (a flag bit, when there is more
// than one), so an idle connection costs no stream state beyond what its kind
// keeps for it.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <climits>
#include <span>

#include "ring/ring.h"

namespace rg::server {

// Where application bytes go up.
class ByteSink {
 public:
  // `bytes` are valid only during the call.
  virtual void on_bytes(std::uint32_t slot, std::span<const std::uint8_t> bytes) = 0;
  // The stream has wire bytes of its own to send (a TLS handshake flight,
  // session tickets, an alert), or a send that waited for a buffer can go:
  // the worker should pump the connection's sends.
  virtual void on_stream_output(std::uint32_t slot) = 0;
  // The stream ended: the peer closed it cleanly (TLS close_notify), or it
  // failed (an alert, if one could be said, is queued as stream output).
  // Nothing more comes up; the worker lingers, then closes.
  virtual void on_stream_end(std::uint32_t slot, bool failed) = 0;

 protected:
  ~ByteSink() = default;
};

class ByteStream {
 public:
  virtual ~ByteStream() = default;

  // Upward: `wire` arrived on `slot` (a provided buffer, valid only during
  // the call).
  virtual void on_recv(std::uint32_t slot, std::span<const std::uint8_t> wire) = 0;

  // Downward.  False when a send could not start now (TLS: no record buffer
  // free); the stream calls ByteSink::on_stream_output once it can.
  [[nodiscard]] virtual bool ready_to_send(std::uint32_t slot) = 0;
  // One send of application bytes, contiguous or gathered.  The bytes (and
  // `msg` with its iovecs) must stay valid and unchanged until the send's
  // completion.  The stream may take fewer than offered (sent() says how
  // many); TLS takes none when `bytes` is empty and sends its own output.
  // False when no SQE could be had, or the stream can no longer carry
  // application bytes (a failed TLS connection).
  [[nodiscard]] virtual bool send(std::uint32_t slot, std::span<const std::uint8_t> bytes, ring::Tag tag) = 0;
  [[nodiscard]] virtual bool send_gather(std::uint32_t slot, const msghdr* msg, ring::Tag tag) = 0;
  // A send completed with `res`: the application bytes it covered, or the
  // negative errno; or still_sending when the stream resubmitted the rest of
  // its wire bytes under the same `tag` (a short send of TLS records).
  static constexpr std::int32_t still_sending = INT32_MIN;
  [[nodiscard]] virtual std::int32_t sent(std::uint32_t slot, std::int32_t res, ring::Tag tag) = 0;
  // Wire bytes of the stream's own wait to be sent (send() with no bytes
  // sends them).
  [[nodiscard]] virtual bool has_output(std::uint32_t slot) const = 0;
  // Before FIN: the stream queues its last words (TLS close_notify) as
  // output and says true, once; false when there is nothing to say.
  [[nodiscard]] virtual bool close_output(std::uint32_t slot) = 0;
  // Nothing more will be sent: FIN.
  [[nodiscard]] virtual bool shutdown_write(std::uint32_t slot, ring::Tag tag) = 0;
  // The peer closed the TCP connection (recv returned 0).
  virtual void on_eof(std::uint32_t slot) = 0;
  // The connection is gone: whatever the stream keeps for it goes back.
  virtual void release(std::uint32_t slot) = 0;
};

// Plain TCP: the wire bytes are the application bytes.
class PlainStream final : public ByteStream {
 public:
  PlainStream(ring::Ring& ring, ByteSink& sink) : ring_(ring), sink_(sink) {}

  void on_recv(std::uint32_t slot, std::span<const std::uint8_t> wire) override { sink_.on_bytes(slot, wire); }
  bool send(std::uint32_t slot, std::span<const std::uint8_t> bytes, ring::Tag tag) override {
    return ring_.send(slot, bytes, tag);
  }
  bool send_gather(std::uint32_t slot, const msghdr* msg, ring::Tag tag) override {
    return ring_.send_msg(slot, msg, tag);
  }
  bool ready_to_send(std::uint32_t) override { return true; }
  std::int32_t sent(std::uint32_t, std::int32_t res, ring::Tag) override { return res; }
  bool has_output(std::uint32_t) const override { return false; }
  bool close_output(std::uint32_t) override { return false; }
  bool shutdown_write(std::uint32_t slot, ring::Tag tag) override { return ring_.shutdown_write(slot, tag); }
  void on_eof(std::uint32_t) override {}
  void release(std::uint32_t) override {}

 private:
  ring::Ring& ring_;
  ByteSink& sink_;
};

}  // namespace rg::server
