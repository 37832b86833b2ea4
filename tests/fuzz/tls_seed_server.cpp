// One TLS server connection of fuzz_tls_server's (tls_harness.h), driven
// over stdin and stdout, for make_tls_seeds.py: a real client (Python's ssl)
// talks to it, and the bytes it sends become seeds that replay against the
// fuzz target to the same end, since both run the same configuration, the
// same random stream and the same clock.
//
//   tls_seed_server [--seal-with-second]
//
// stdin:  records [u32 length, big-endian][client bytes], one per recv
// stdout: after each, [u8 phase: 0 handshake, 1 open, 2 failed]
//         [u8 handshake done] [u8 peer closed] [u8 resumed] [u16 reason]
//         [u32 length][server bytes written meanwhile]
// At the end of stdin it exits 0.  --seal-with-second: tickets are sealed
// under the second key of the file (one the fuzz target only opens, and
// renews).
#include <openssl/ssl.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tls_harness.h"

namespace {

bool read_all(void* to, std::size_t n) { return n == 0 || std::fread(to, 1, n, stdin) == n; }

void write_u16(std::uint16_t v) {
  const std::uint8_t b[2] = {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
  std::fwrite(b, 1, 2, stdout);
}

void write_u32(std::uint32_t v) {
  const std::uint8_t b[4] = {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                             static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
  std::fwrite(b, 1, 4, stdout);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace rg::fuzz::tls;
  const bool second = argc > 1 && std::strcmp(argv[1], "--seal-with-second") == 0;
  Connection c(context(second ? Sealing::second_key : Sealing::first_key));
  for (;;) {
    std::uint8_t len[4];
    if (!read_all(len, 4)) return 0;
    const std::uint32_t n = std::uint32_t{len[0]} << 24 | std::uint32_t{len[1]} << 16 | std::uint32_t{len[2]} << 8 |
                            len[3];
    std::vector<std::uint8_t> bytes(n);
    if (!read_all(bytes.data(), n)) return 1;
    c.feed(bytes);
    const Bytes out = c.take_output();
    const std::uint8_t status[4] = {static_cast<std::uint8_t>(c.phase()), c.handshake_done(), c.peer_closed(),
                                    c.handshake_done() && SSL_session_reused(c.ssl()) == 1};
    std::fwrite(status, 1, 4, stdout);
    write_u16(static_cast<std::uint16_t>(c.reason()));
    write_u32(static_cast<std::uint32_t>(out.size()));
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  }
}
