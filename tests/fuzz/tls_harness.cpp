// The server side of TLS as ringgate configures it (tls_harness.h).
#include "tls_harness.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "config/config.h"

namespace rg::fuzz::tls {

namespace {

// TEST-ONLY key material, generated once for the fuzz target and never used
// anywhere else (do not trust these certificates or reuse these keys):
//   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500
//     -subj /CN=ringgate-fuzz-default -addext subjectAltName=DNS:default.test,DNS:localhost
//   openssl genpkey -algorithm ed25519, then with that key: openssl req -x509 -new -days 36500
//     -subj /CN=ringgate-fuzz-alt -addext subjectAltName=DNS:alt.test,DNS:*.wild.test
constexpr char default_cert_pem[] = R"(-----BEGIN CERTIFICATE-----
MIIBujCCAWGgAwIBAgIUYNPjhtDjVTSVaTLfbiST9r56t3QwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVcmluZ2dhdGUtZnV6ei1kZWZhdWx0MCAXDTI2MTIwNzE1MDc1
MVoYDzIxMjYxMTEzMTUwNzUxWjAgMR4wHAYDVQQDDBVyaW5nZ2F0ZS1mdXp6LWRl
ZmF1bHQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASwSYCkVdKF4OE4XjTPSGW1
dKj8z7e+TC0jffIHASzLYGpp6wD11JIb2io9GMMZePCsAdcUGu7YtuZpx61y26RJ
o3cwdTAdBgNVHQ4EFgQUz7Fr1WtQ1tFYufwWdSbUXa1PGoowHwYDVR0jBBgwFoAU
z7Fr1WtQ1tFYufwWdSbUXa1PGoowDwYDVR0TAQH/BAUwAwEB/zAiBgNVHREEGzAZ
ggxkZWZhdWx0LnRlc3SCCWxvY2FsaG9zdDAKBggqhkjOPQQDAgNHADBEAiAwu/KE
vUWBDMG8k5Iwlg4pKDqWwv1nA7JRvVdDKlXJ4gIgdpPCN8okBJ2iMfWZQEgo8i+G
sRFKmQMlMfEzaJCNEd8=
-----END CERTIFICATE-----
)";
constexpr char default_key_pem[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgh5qucQ4c/q4JP6ss
cNARO6ZuUlKbKW70V5t3BKfk7JChRANCAASwSYCkVdKF4OE4XjTPSGW1dKj8z7e+
TC0jffIHASzLYGpp6wD11JIb2io9GMMZePCsAdcUGu7YtuZpx61y26RJ
-----END PRIVATE KEY-----
)";
constexpr char alt_cert_pem[] = R"(-----BEGIN CERTIFICATE-----
MIIBcTCCASOgAwIBAgIUTmVnybPa341MWaWkHh1rCfu1QEMwBQYDK2VwMBwxGjAY
BgNVBAMMEXJpbmdnYXRlLWZ1enotYWx0MCAXDTI2MTIwNzE1MDc1MVoYDzIxMjYx
MTEzMTUwNzUxWjAcMRowGAYDVQQDDBFyaW5nZ2F0ZS1mdXp6LWFsdDAqMAUGAytl
cAMhAGKg8IZ5oko2YruGnwG1I08MuQuDKdUlHLANY82/JHuOo3UwczAdBgNVHQ4E
FgQUCdnoDbsz8Agmk9q8OgaZXoJ4t3YwHwYDVR0jBBgwFoAUCdnoDbsz8Agmk9q8
OgaZXoJ4t3YwDwYDVR0TAQH/BAUwAwEB/zAgBgNVHREEGTAXgghhbHQudGVzdIIL
Ki53aWxkLnRlc3QwBQYDK2VwA0EA4vwJxP4PR6WcG+/AHNsQWxBTRHm21Ho4cZTm
20QwTLVlssSt1aKhB/0RzlCtkm6UiaHUh7IKZNqP8Ocu32MJBg==
-----END CERTIFICATE-----
)";
constexpr char alt_key_pem[] = R"(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPUxkakaV3vmJLLnA0W1D3bTkCdG0G++umuqurZ6+agW
-----END PRIVATE KEY-----
)";

// TEST-ONLY ticket keys (name, HMAC key, AES key: 80 bytes each, as in
// tls_ticket_key_file).  Their names are readable in a ticket.
std::string ticket_key(char which) {
  std::string k = std::string("ringgate-fuzz-k") + which;  // 16-byte name
  for (int i = 0; i < 64; ++i) k += static_cast<char>((which * 37 + i * 11) & 0xFF);
  return k;
}

// The fixed clock: 2027-01-15, within the certificates' validity.
constexpr long fixed_time_s = 1'800'000'000;
void fixed_clock(const SSL*, timeval* out) {
  out->tv_sec = fixed_time_s;
  out->tv_usec = 0;
}

void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "tls harness: cannot write %s\n", path.c_str());
    std::abort();
  }
}

std::shared_ptr<server::TlsContext> load(Sealing sealing) {
  // One directory per process (the fuzz target may run as several jobs).
  char pattern[] = "/tmp/rg-fuzz-tls-XXXXXX";
  const char* made = mkdtemp(pattern);
  if (!made) {
    std::perror("tls harness: mkdtemp");
    std::abort();
  }
  const std::filesystem::path dir(made);
  write_file(dir / "default.pem", default_cert_pem);
  write_file(dir / "default.key", default_key_pem);
  write_file(dir / "alt.pem", alt_cert_pem);
  write_file(dir / "alt.key", alt_key_pem);
  write_file(dir / "tickets.key",
             sealing == Sealing::first_key ? ticket_key('1') + ticket_key('2') : ticket_key('2') + ticket_key('1'));
  server::Config config;
  config.tls_listen = "127.0.0.1:0";
  config.tls_cert_file = dir / "default.pem";
  config.tls_key_file = dir / "default.key";
  config.tls_sni_certs = {(dir / "alt.pem").string() + ":" + (dir / "alt.key").string()};
  config.tls_ticket_key_file = dir / "tickets.key";
  std::string error;
  std::shared_ptr<server::TlsContext> context = server::TlsContext::load(config, error);
  // The files have been read: nothing is left behind.
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!context) {
    std::fprintf(stderr, "tls harness: TlsContext::load: %s\n", error.c_str());
    std::abort();
  }
  if (context->certificates().size() != 2 || context->ticket_keys() != 2) std::abort();
  for (const server::TlsContext::Certificate& c : context->certificates())
    SSL_CTX_set_current_time_cb(c.ctx, fixed_clock);
  return context;
}

// The fixed random stream: splitmix64 from a constant.
std::uint64_t random_state = 0;

void on_message(int write_p, int, int content_type, const void* buf, std::size_t len, SSL*, void* arg) {
  if (content_type != SSL3_RT_HANDSHAKE && content_type != SSL3_RT_ALERT && content_type != SSL3_RT_CHANGE_CIPHER_SPEC)
    return;
  const auto* b = static_cast<const std::uint8_t*>(buf);
  const std::uint32_t what = content_type == SSL3_RT_ALERT ? (len >= 2 ? b[1] : 0xFF) : (len >= 1 ? b[0] : 0xFF);
  static_cast<std::vector<std::uint32_t>*>(arg)->push_back((write_p ? 1u << 31 : 0u) |
                                                           static_cast<std::uint32_t>(content_type & 0xFF) << 8 | what);
}

// What the server answers the first plaintext with (a 101, as to an upgrade).
constexpr std::string_view answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

}  // namespace

const server::TlsContext& context(Sealing sealing) {
  // Loaded once, kept for the life of the process.
  static const std::shared_ptr<server::TlsContext> first = load(Sealing::first_key);
  if (sealing == Sealing::first_key) return *first;
  static const std::shared_ptr<server::TlsContext> second = load(Sealing::second_key);
  return *second;
}

void restart_random() { random_state = 0x5EED'0F'7E57'0001ull; }

Connection::Connection(const server::TlsContext& context) {
  restart_random();
  ERR_clear_error();
  ssl_ = SSL_new(context.ctx());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (!ssl_ || !in_ || !out_) std::abort();
  SSL_set_accept_state(ssl_);
  SSL_set_shed_handshake_config(ssl_, 1);
  SSL_set_bio(ssl_, in_, out_);  // the SSL owns both from here
  SSL_set_msg_callback(ssl_, on_message);
  SSL_set_msg_callback_arg(ssl_, &messages_);
}

Connection::~Connection() {
  SSL_free(ssl_);
  ERR_clear_error();
}

void Connection::feed(std::span<const std::uint8_t> bytes, std::size_t read_max) {
  if (phase_ == Phase::failed || peer_closed_) return;
  if (!bytes.empty() && BIO_write(in_, bytes.data(), static_cast<int>(bytes.size())) != static_cast<int>(bytes.size()))
    std::abort();
  drive(read_max == 0 ? 1 : read_max);
}

Bytes Connection::take_output() {
  const std::uint8_t* data = nullptr;
  std::size_t len = 0;
  if (!BIO_mem_contents(out_, &data, &len)) std::abort();
  Bytes out(data, data + len);
  BIO_reset(out_);
  return out;
}

// TlsStream::drive, with memory BIOs.
void Connection::drive(std::size_t read_max) {
  if (phase_ == Phase::handshake) {
    const int r = SSL_do_handshake(ssl_);
    state_ = SSL_state_string_long(ssl_);
    if (r != 1) {
      const int err = SSL_get_error(ssl_, r);
      if (err != SSL_ERROR_WANT_READ) fail(err);
      return;
    }
    phase_ = Phase::open;
    handshake_done_ = true;
  }
  read_buffer_.resize(read_max);
  while (phase_ == Phase::open && !peer_closed_) {
    const int n = SSL_read(ssl_, read_buffer_.data(), static_cast<int>(read_buffer_.size()));
    if (n > 0) {
      plaintext_.insert(plaintext_.end(), read_buffer_.begin(), read_buffer_.begin() + n);
      if (!answered_) {
        // The first plaintext gets an answer, as a worker answers an
        // upgrade: SSL_write seals it, and sends what BoringSSL held back
        // until then (TLS 1.3 session tickets).
        answered_ = true;
        const int w = SSL_write(ssl_, answer.data(), static_cast<int>(answer.size()));
        if (w != static_cast<int>(answer.size())) {
          fail(SSL_get_error(ssl_, w));
          break;
        }
      }
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      break;
    }
    fail(err);
  }
  state_ = SSL_state_string_long(ssl_);
}

void Connection::fail(int error) {
  phase_ = Phase::failed;
  error_ = error;
  for (std::uint32_t e = ERR_get_error(); e != 0; e = ERR_get_error())
    if (reason_ == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL) reason_ = ERR_GET_REASON(e);
  ERR_clear_error();
}

}  // namespace rg::fuzz::tls

// The fixed random stream in place of BoringSSL's RAND_bytes: this
// definition in the executable interposes on libcrypto's for libssl and for
// libcrypto's own calls through its PLT (tls_harness.h says what that covers).
// TEST-ONLY: nothing here is random.
extern "C" int RAND_bytes(std::uint8_t* buf, std::size_t len) {
  using rg::fuzz::tls::random_state;
  for (std::size_t i = 0; i < len; i += 8) {
    std::uint64_t z = (random_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const std::size_t n = len - i < 8 ? len - i : 8;
    std::memcpy(buf + i, &z, n);
  }
  return 1;
}
