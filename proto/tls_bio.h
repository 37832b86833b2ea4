// One BIO for every SSL of a thread: BoringSSL reads the bytes of the recv
// being handled and writes into wherever the owner keeps the ciphertext of
// the connection being driven.  The owner points it at both before each SSL
// call.  So a connection needs no BIO pair and no buffers of its own (a
// default BIO pair holds 17 KB per direction).  Used by the server's
// TlsStream (server/tls_stream.h) and ringgate-load's TLS client
// (tools/load/tls_client.h).  Not thread-safe: one per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

struct bio_st;

namespace rg::proto::tls {

class SharedBio {
 public:
  // Takes ciphertext for the connection being driven: returns how many of
  // `bytes` it took, 0 for none now (BoringSSL then reports WANT_WRITE and
  // writes them again later).
  using Write = std::size_t (*)(void* owner, std::span<const std::uint8_t> bytes);

  SharedBio() = default;
  ~SharedBio();
  SharedBio(const SharedBio&) = delete;
  SharedBio& operator=(const SharedBio&) = delete;

  // False when BoringSSL cannot make the BIO.
  [[nodiscard]] bool init(void* owner, Write write);
  // For SSL_set_bio, after a BIO_up_ref for each SSL (so either may go
  // first).  libssl is the caller's: this file needs only libcrypto.
  [[nodiscard]] bio_st* bio() const noexcept { return bio_; }

  // What BoringSSL reads next; it consumes from the front.
  void set_input(std::span<const std::uint8_t> bytes) noexcept { input_ = bytes; }
  [[nodiscard]] std::span<const std::uint8_t> input() const noexcept { return input_; }

 private:
  static int on_read(bio_st* bio, char* out, int len);
  static int on_write(bio_st* bio, const char* in, int len);

  bio_st* bio_ = nullptr;
  void* owner_ = nullptr;
  Write write_ = nullptr;
  std::span<const std::uint8_t> input_;
};

}  // namespace rg::proto::tls
