// Secrets (control/secrets.h).
#include "control/secrets.h"

namespace rg::server {

bool same_secret(std::string_view a, std::string_view b) noexcept {
  // The length is not secret (it is the configured token's); the bytes are.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace rg::server
