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
#include <span>

#include "ring/ring.h"

namespace rg::server {

// Where application bytes go up.
class ByteSink {
 public:
  // `bytes` are valid only during the call.
  virtual void on_bytes(std::uint32_t slot, std::span<const std::uint8_t> bytes) = 0;

 protected:
  ~ByteSink() = default;
};

class ByteStream {
 public:
  virtual ~ByteStream() = default;

  // Upward: `wire` arrived on `slot` (a provided buffer, valid only during
  // the call).
  virtual void on_recv(std::uint32_t slot, std::span<const std::uint8_t> wire) = 0;

  // Downward: one send of application bytes, contiguous or gathered.  The
  // bytes (and `msg` with its iovecs) must stay valid and unchanged until the
  // send's completion.  False when no SQE could be had.
  [[nodiscard]] virtual bool send(std::uint32_t slot, std::span<const std::uint8_t> bytes, ring::Tag tag) = 0;
  [[nodiscard]] virtual bool send_gather(std::uint32_t slot, const msghdr* msg, ring::Tag tag) = 0;
  // A send completed with `res`: the application bytes it covered, or the
  // negative errno.
  [[nodiscard]] virtual std::int32_t sent(std::uint32_t slot, std::int32_t res) = 0;
  // Nothing more will be sent: FIN (TLS: close_notify first).
  [[nodiscard]] virtual bool shutdown_write(std::uint32_t slot, ring::Tag tag) = 0;
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
  std::int32_t sent(std::uint32_t, std::int32_t res) override { return res; }
  bool shutdown_write(std::uint32_t slot, ring::Tag tag) override { return ring_.shutdown_write(slot, tag); }
  void release(std::uint32_t) override {}

 private:
  ring::Ring& ring_;
  ByteSink& sink_;
};

}  // namespace rg::server
