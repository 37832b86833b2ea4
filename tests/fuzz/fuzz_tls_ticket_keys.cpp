// fuzz_tls_ticket_keys: the session-ticket key file's parser,
// server/tls_context.h parse_ticket_keys.  The input is the file's bytes.
// Properties: it accepts exactly 1 to 16 keys of 80 bytes with distinct
// names; an accepted file's keys are its bytes, name then HMAC then AES
// key, in order; a refused one gets a message saying how to make a good
// file.
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "server/tls_context.h"

using rg::server::TlsContext;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::vector<TlsContext::TicketKey> keys;
  std::string error;
  const bool ok = rg::server::parse_ticket_keys(bytes, "/etc/ringgate/tickets.key", keys, error);

  constexpr std::size_t key_bytes = TlsContext::ticket_key_bytes;
  bool well_formed = size > 0 && size % key_bytes == 0 && size / key_bytes <= TlsContext::ticket_keys_max;
  for (std::size_t i = 0; well_formed && i * key_bytes < size; ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (std::memcmp(data + i * key_bytes, data + j * key_bytes, 16) == 0) well_formed = false;
  FUZZ_CHECK(ok == well_formed);
  if (ok) {
    FUZZ_CHECK(error.empty());
    FUZZ_CHECK(keys.size() == size / key_bytes);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::uint8_t* at = data + i * key_bytes;
      FUZZ_CHECK(std::memcmp(keys[i].name.data(), at, 16) == 0);
      FUZZ_CHECK(std::memcmp(keys[i].hmac.data(), at + 16, 32) == 0);
      FUZZ_CHECK(std::memcmp(keys[i].aes.data(), at + 48, 32) == 0);
    }
  } else {
    FUZZ_CHECK(error.find("tls_ticket_key_file /etc/ringgate/tickets.key") == 0);
    FUZZ_CHECK(error.find("head -c 80 /dev/urandom > /etc/ringgate/tickets.key") != std::string::npos);
  }
  return 0;
}
