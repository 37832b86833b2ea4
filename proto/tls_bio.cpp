// One BIO for every SSL of a thread (proto/tls_bio.h).
#include "proto/tls_bio.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <cstring>

namespace rg::proto::tls {

namespace {

long on_ctrl(BIO*, int cmd, long, void*) {
  // BoringSSL flushes after each flight: the bytes are already with the
  // owner, who sends them.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

}  // namespace

int SharedBio::on_read(BIO* bio, char* out, int len) {
  auto* self = static_cast<SharedBio*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (self->input_.empty()) {
    BIO_set_retry_read(bio);
    return -1;
  }
  const std::size_t n = std::min(self->input_.size(), static_cast<std::size_t>(len));
  std::memcpy(out, self->input_.data(), n);
  self->input_ = self->input_.subspan(n);
  return static_cast<int>(n);
}

int SharedBio::on_write(BIO* bio, const char* in, int len) {
  auto* self = static_cast<SharedBio*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const std::size_t n =
      self->write_(self->owner_, {reinterpret_cast<const std::uint8_t*>(in), static_cast<std::size_t>(len)});
  if (n == 0) {
    BIO_set_retry_write(bio);
    return -1;
  }
  return static_cast<int>(n);
}

SharedBio::~SharedBio() {
  if (bio_) BIO_free(bio_);
}

bool SharedBio::init(void* owner, Write write) {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "ringgate shared");
    if (m) {
      BIO_meth_set_write(m, on_write);
      BIO_meth_set_read(m, on_read);
      BIO_meth_set_ctrl(m, on_ctrl);
    }
    return m;
  }();
  bio_ = method ? BIO_new(method) : nullptr;
  if (!bio_) return false;
  owner_ = owner;
  write_ = write;
  BIO_set_data(bio_, this);
  BIO_set_init(bio_, 1);
  return true;
}

}  // namespace rg::proto::tls
