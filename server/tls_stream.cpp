// TLS as a byte stream (server/tls_stream.h).
#include "server/tls_stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>

#include "base/invariant.h"

namespace rg::server {

namespace {

// The reply to plain HTTP on the TLS port (nginx does the same): clearer to
// a human with curl than an alert, and it costs no handshake.
constexpr std::string_view plain_http_answer =
    "HTTP/1.1 400 Bad Request\r\n"
    "Connection: close\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 63\r\n"
    "\r\n"
    "This port speaks TLS: an HTTP request was sent to tls_listen.\r\n";
static_assert(plain_http_answer.size() - plain_http_answer.find("\r\n\r\n") - 4 == 63);

constexpr std::uint8_t record_type_handshake = 0x16;

bool looks_like_http(std::span<const std::uint8_t> wire) {
  // A request line starts with an upper-case method token.
  return !wire.empty() && wire[0] >= 'A' && wire[0] <= 'Z';
}

}  // namespace

TlsStream::TlsStream(ring::Ring& ring, ByteSink& sink, TlsCounters& counters)
    : ring_(ring), sink_(sink), counters_(counters) {}

TlsStream::~TlsStream() {
  for (Slot& s : slots_)
    if (s.ssl) SSL_free(s.ssl);
}

bool TlsStream::init(const TlsContexts& contexts, std::uint32_t slots, std::uint32_t record_buffers,
                     std::string& error) {
  contexts_ = &contexts;
  context_generation_ = contexts.generation();
  context_ = contexts.current();
  RG_ASSERT(context_ != nullptr);
  const auto write = [](void* self, std::span<const std::uint8_t> bytes) {
    return static_cast<TlsStream*>(self)->write_out(bytes);
  };
  if (!bio_.init(this, write)) {
    error = "cannot create the TLS BIO";
    return false;
  }
  slots_.resize(slots);
  waiters_.reserve(slots);
  // Pages fault in as buffers are first used, and are kept.
  if (!records_.init(record_buffers, false)) {
    error = "cannot map " + std::to_string(record_buffers) + " TLS record buffers (tls_record_buffers)";
    return false;
  }
  return true;
}

std::uint64_t TlsStream::held_bytes() const noexcept {
  return std::uint64_t{records_in_use_} * record_buffer_bytes + std::uint64_t{established_} * ssl_idle_bytes +
         std::uint64_t{handshakes_} * ssl_handshake_bytes + stash_bytes_;
}

// Ciphertext (or a plaintext refusal) for the connection being driven, into
// its record buffer: taken from the pool on first use.  0: no buffer free,
// or this one full.
std::size_t TlsStream::write_out(std::span<const std::uint8_t> bytes) {
  RG_ASSERT(current_ != base::nil);
  Slot& s = slots_[current_];
  if (s.out == base::nil) {
    s.out = records_.take_as_left();  // written before it is read: never zeroed
    if (s.out == base::nil) return 0;
    s.out_len = s.out_sent = 0;
    ++records_in_use_;
    counters_.record_buffers_in_use.set(records_in_use_);
  }
  const std::uint32_t n =
      std::min<std::uint32_t>(static_cast<std::uint32_t>(bytes.size()), record_buffer_bytes - s.out_len);
  std::memcpy(records_[s.out].bytes.data() + s.out_len, bytes.data(), n);
  s.out_len += n;
  return n;
}

void TlsStream::accept(std::uint32_t slot) noexcept {
  Slot& s = slots_[slot];
  RG_ASSERT(s.phase == Phase::none && s.ssl == nullptr);
  s.phase = Phase::accepted;
  ++handshakes_;
  counters_.handshakes_in_flight.set(handshakes_);
}

bool TlsStream::start(std::uint32_t slot) {
  Slot& s = slots_[slot];
  RG_ASSERT(s.phase == Phase::accepted);
  // A reload published a new context: new connections use it (one relaxed
  // load per handshake; the lock only when it moved).
  if (const std::uint64_t g = contexts_->generation(); g != context_generation_) {
    context_ = contexts_->current();
    context_generation_ = g;
  }
  s.ssl = SSL_new(context_->ctx());
  if (!s.ssl) return false;
  SSL_set_accept_state(s.ssl);
  // Once the handshake is done its configuration (certificate, key,
  // suites) is dropped from this SSL: memory an idle connection need not keep.
  SSL_set_shed_handshake_config(s.ssl, 1);
  BIO_up_ref(bio_.bio());
  SSL_set_bio(s.ssl, bio_.bio(), bio_.bio());  // takes the one reference for both directions
  s.context = context_;
  s.phase = Phase::handshake;
  s.started_ms = static_cast<std::uint32_t>(now_ms_);
  counters_.connections.add();
  return true;
}

void TlsStream::on_recv(std::uint32_t slot, std::span<const std::uint8_t> wire) {
  Slot& s = slots_[slot];
  if (s.phase == Phase::none) return;  // refused before its handshake: input is discarded
  if (s.phase == Phase::accepted) {
    if (!wire.empty() && wire[0] != record_type_handshake) {
      // Not a ClientHello: no SSL is made for it.
      leave_phase(s);
      current_ = slot;
      if (looks_like_http(wire)) {
        counters_.failures[static_cast<std::size_t>(TlsFailure::plain_http)].add();
        (void)write_out({reinterpret_cast<const std::uint8_t*>(plain_http_answer.data()), plain_http_answer.size()});
      } else {
        // A fatal decode_error alert (RFC 8446 6.2), in a plaintext record.
        counters_.failures[static_cast<std::size_t>(TlsFailure::not_tls)].add();
        static constexpr std::uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50};
        (void)write_out(alert);
      }
      current_ = base::nil;
      counters_.held_bytes.set(held_bytes());
      sink_.on_stream_end(slot, true);
      if (has_output(slot)) sink_.on_stream_output(slot);
      return;
    }
    if (!start(slot)) {
      counters_.failures[static_cast<std::size_t>(TlsFailure::no_memory)].add();
      leave_phase(s);
      sink_.on_stream_end(slot, true);
      return;
    }
  }
  if (s.phase == Phase::failed || s.peer_closed) return;  // input after a failure or close_notify is discarded
  if (s.blocked || !s.stash.empty()) {
    // BoringSSL is waiting for a record buffer to write into: what arrives
    // meanwhile waits behind what it has not read yet, in order.
    if (s.stash.size() + wire.size() > stash_bytes_max) {
      counters_.failures[static_cast<std::size_t>(TlsFailure::input_overrun)].add();
      drop_stash(s);
      abandon(slot);
      return;
    }
    stash_bytes_ -= s.stash.capacity();
    s.stash.insert(s.stash.end(), wire.begin(), wire.end());
    stash_bytes_ += s.stash.capacity();
    counters_.held_bytes.set(held_bytes());
    return;
  }
  bio_.set_input(wire);
  drive(slot);
  keep_unread(slot);
  counters_.held_bytes.set(held_bytes());
  if (has_output(slot)) sink_.on_stream_output(slot);
}

// After drive(): bytes BoringSSL did not read (it stopped because a write
// found no record buffer) are kept for when it goes on; the recv's buffer
// goes back to the ring as soon as this returns.
void TlsStream::keep_unread(std::uint32_t slot) {
  Slot& s = slots_[slot];
  const std::span<const std::uint8_t> unread = bio_.input();
  if (!unread.empty() && s.blocked && s.phase != Phase::failed && !s.peer_closed) {
    stash_bytes_ -= s.stash.capacity();
    s.stash.assign(unread.begin(), unread.end());
    stash_bytes_ += s.stash.capacity();
  }
  bio_.set_input({});
}

void TlsStream::drop_stash(Slot& s) {
  stash_bytes_ -= s.stash.capacity();
  std::vector<std::uint8_t>().swap(s.stash);
}

// A connection leaves the phase it was counted in (handshakes in flight,
// established) for `failed`, which counts in neither.
void TlsStream::leave_phase(Slot& s) noexcept {
  if (s.phase == Phase::accepted || s.phase == Phase::handshake) {
    --handshakes_;
    counters_.handshakes_in_flight.set(handshakes_);
  } else if (s.phase == Phase::open) {
    --established_;
  }
  s.phase = Phase::failed;
}

void TlsStream::refuse(std::uint32_t slot) noexcept {
  Slot& s = slots_[slot];
  if (s.phase == Phase::accepted) leave_phase(s);
}

// A connection the stream cannot carry on: no alert can be sealed (no
// record buffer), so the worker closes it.
void TlsStream::abandon(std::uint32_t slot) {
  Slot& s = slots_[slot];
  leave_phase(s);
  s.blocked = false;
  counters_.held_bytes.set(held_bytes());
  sink_.on_stream_end(slot, true);
}

// Runs the handshake and reads application data until BoringSSL needs more
// input, handing plaintext up as it comes.
void TlsStream::drive(std::uint32_t slot) {
  Slot& s = slots_[slot];
  current_ = slot;
  if (s.phase == Phase::handshake) {
    const int r = SSL_do_handshake(s.ssl);
    if (r != 1) {
      const int err = SSL_get_error(s.ssl, r);
      if (err == SSL_ERROR_WANT_WRITE) {
        // A flight found every record buffer in use: BoringSSL keeps it,
        // and the handshake goes on when a buffer is back.
        wait_for_buffer(slot);
      } else if (err != SSL_ERROR_WANT_READ) {
        fail(slot);
      }
      current_ = base::nil;
      return;
    }
    handshake_done(slot);
  }
  while (s.phase == Phase::open && !s.peer_closed) {
    current_ = slot;
    const int n = SSL_read(s.ssl, plain_.data(), static_cast<int>(plain_.size()));
    current_ = base::nil;
    if (n > 0) {
      sink_.on_bytes(slot, {plain_.data(), static_cast<std::size_t>(n)});
      continue;
    }
    const int err = SSL_get_error(s.ssl, n);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_WANT_WRITE) {
      // Reading made BoringSSL answer (a KeyUpdate) with no buffer free.
      wait_for_buffer(slot);
      break;
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
      // close_notify: the peer will send nothing more.  We answer with ours
      // (close_output) before FIN.
      counters_.close_notify_total.add();
      s.peer_closed = true;  // no more input is read; our output (close_notify too) still goes out
      sink_.on_stream_end(slot, false);
      break;
    }
    current_ = slot;
    fail(slot);
    current_ = base::nil;
    break;
  }
  current_ = base::nil;
}

void TlsStream::handshake_done(std::uint32_t slot) {
  Slot& s = slots_[slot];
  s.phase = Phase::open;
  --handshakes_;
  ++established_;
  counters_.handshakes_in_flight.set(handshakes_);
  const bool tls13 = SSL_version(s.ssl) == TLS1_3_VERSION;
  const bool resumed = SSL_session_reused(s.ssl) == 1;
  counters_.handshakes_ok[tls13 ? 1 : 0][resumed ? 1 : 0].add();
  counters_.handshake_ms.record(static_cast<std::uint32_t>(now_ms_) - s.started_ms);
}

void TlsStream::fail(std::uint32_t slot) {
  Slot& s = slots_[slot];
  TlsFailure why = s.phase == Phase::handshake ? TlsFailure::handshake : TlsFailure::protocol;
  {
    // The queue may hold the AEAD's error before the record layer's.
    for (std::uint32_t e = ERR_get_error(); e != 0; e = ERR_get_error()) {
      if (ERR_GET_LIB(e) != ERR_LIB_SSL) continue;
      if (ERR_GET_REASON(e) == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC) why = TlsFailure::bad_record;
      else if (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST) why = TlsFailure::plain_http;
    }
  }
  ERR_clear_error();
  counters_.failures[static_cast<std::size_t>(why)].add();
  leave_phase(s);
  // BoringSSL has written its fatal alert (if it could) into the record
  // buffer: the worker sends it, then lingers and closes.
  sink_.on_stream_end(slot, true);
}

std::uint32_t TlsStream::room(const Slot& s) const noexcept {
  return s.out == base::nil ? record_buffer_bytes : record_buffer_bytes - s.out_len;
}

void TlsStream::enqueue_waiter(std::uint32_t slot) {
  Slot& s = slots_[slot];
  if (s.waiting) return;
  s.waiting = true;
  if (waiters_.size() == waiters_.capacity()) {
    // Full of entries already served or left behind by released
    // connections: keep only the live ones (each slot waits at most once,
    // so they fit), never growing the reserve.
    std::size_t kept = 0;
    for (std::size_t i = waiter_head_; i < waiters_.size(); ++i)
      if (slots_[waiters_[i]].waiting && waiters_[i] != slot) waiters_[kept++] = waiters_[i];
    waiters_.resize(kept);
    waiter_head_ = 0;
  }
  waiters_.push_back(slot);
}

void TlsStream::wait_for_buffer(std::uint32_t slot) {
  slots_[slot].blocked = true;
  enqueue_waiter(slot);
}

bool TlsStream::ready_to_send(std::uint32_t slot) {
  const Slot& s = slots_[slot];
  if (s.out != base::nil || s.phase != Phase::open || records_in_use_ < records_.capacity()) return true;
  enqueue_waiter(slot);
  return false;
}

// Seals `plain` into the connection's record buffer.  The caller sized it to
// fit: a record's overhead is at most SSL_max_seal_overhead.
bool TlsStream::seal(std::uint32_t slot, std::span<const std::uint8_t> plain) {
  Slot& s = slots_[slot];
  if (plain.empty()) return true;
  current_ = slot;
  const int n = SSL_write(s.ssl, plain.data(), static_cast<int>(plain.size()));
  current_ = base::nil;
  if (n != static_cast<int>(plain.size())) {
    ERR_clear_error();
    return false;
  }
  return true;
}

bool TlsStream::submit(std::uint32_t slot, ring::Tag tag) {
  Slot& s = slots_[slot];
  RG_ASSERT(s.out != base::nil && s.out_sent < s.out_len);
  s.flight_end = s.out_len;
  return ring_.send(slot, {records_[s.out].bytes.data() + s.out_sent, s.out_len - s.out_sent}, tag);
}

bool TlsStream::send(std::uint32_t slot, std::span<const std::uint8_t> bytes, ring::Tag tag) {
  Slot& s = slots_[slot];
  RG_ASSERT(s.flight_end == 0);
  std::uint32_t take = 0;
  if (!bytes.empty()) {
    if (s.phase != Phase::open) return false;  // nothing can carry application bytes
    const std::uint32_t overhead = static_cast<std::uint32_t>(SSL_max_seal_overhead(s.ssl));
    const std::uint32_t free = room(s);
    if (free <= overhead) return false;  // never: output is sent before more is sealed
    take = std::min<std::uint32_t>({static_cast<std::uint32_t>(std::min<std::size_t>(bytes.size(), UINT32_MAX)),
                                    record_plaintext_max, free - overhead});
    if (!seal(slot, bytes.first(take))) return false;
  }
  if (s.out == base::nil || s.out_sent == s.out_len) return false;  // nothing to send
  s.flight_app = take;
  counters_.held_bytes.set(held_bytes());
  return submit(slot, tag);
}

bool TlsStream::send_gather(std::uint32_t slot, const msghdr* msg, ring::Tag tag) {
  // Small frames gathered into one record: a record per frame would cost
  // 22-29 bytes and an AEAD call each.
  Slot& s = slots_[slot];
  if (s.phase != Phase::open) return false;
  const std::uint32_t overhead = static_cast<std::uint32_t>(SSL_max_seal_overhead(s.ssl));
  const std::uint32_t free = room(s);
  if (free <= overhead) return false;
  const std::size_t cap = std::min<std::size_t>(plain_.size(), free - overhead);
  std::size_t len = 0;
  for (std::size_t i = 0; i < msg->msg_iovlen && len < cap; ++i) {
    const iovec& v = msg->msg_iov[i];
    const std::size_t n = std::min(v.iov_len, cap - len);
    std::memcpy(plain_.data() + len, v.iov_base, n);
    len += n;
  }
  if (len == 0) return false;
  if (!seal(slot, {plain_.data(), len})) return false;
  s.flight_app = static_cast<std::uint32_t>(len);
  counters_.held_bytes.set(held_bytes());
  return submit(slot, tag);
}

std::int32_t TlsStream::sent(std::uint32_t slot, std::int32_t res, ring::Tag tag) {
  Slot& s = slots_[slot];
  RG_ASSERT(s.flight_end != 0);
  if (res < 0) {
    // The connection is going away: what was not sent never will be.
    s.flight_end = 0;
    s.flight_app = 0;
    release_buffer(s);
    return res;
  }
  s.out_sent += static_cast<std::uint32_t>(res);
  if (s.out_sent < s.flight_end) {
    // A short send: the rest of these records first, under the same tag.
    const std::uint32_t end = s.flight_end;
    if (!ring_.send(slot, {records_[s.out].bytes.data() + s.out_sent, end - s.out_sent}, tag)) {
      s.flight_end = 0;
      release_buffer(s);
      return -ENOBUFS;
    }
    return still_sending;
  }
  const std::int32_t covered = static_cast<std::int32_t>(s.flight_app);
  s.flight_end = 0;
  s.flight_app = 0;
  // Ciphertext written meanwhile (an alert, a KeyUpdate) waits as output.
  if (s.out_sent == s.out_len) release_buffer(s);
  counters_.held_bytes.set(held_bytes());
  return covered;
}

bool TlsStream::has_output(std::uint32_t slot) const {
  const Slot& s = slots_[slot];
  return s.out != base::nil && s.flight_end == 0 && s.out_sent < s.out_len;
}

bool TlsStream::close_output(std::uint32_t slot) {
  Slot& s = slots_[slot];
  if (s.phase != Phase::open || s.notify_sent) return false;
  s.notify_sent = true;
  current_ = slot;
  (void)SSL_shutdown(s.ssl);  // writes close_notify; we do not wait for the peer's
  current_ = base::nil;
  ERR_clear_error();
  return has_output(slot);
}

bool TlsStream::shutdown_write(std::uint32_t slot, ring::Tag tag) { return ring_.shutdown_write(slot, tag); }

void TlsStream::on_eof(std::uint32_t slot) {
  const Slot& s = slots_[slot];
  if (s.phase == Phase::accepted || s.phase == Phase::handshake)
    counters_.failures[static_cast<std::size_t>(TlsFailure::truncated)].add();
}

void TlsStream::release_buffer(Slot& s) {
  if (s.out == base::nil) return;
  records_.give(s.out);
  s.out = base::nil;
  s.out_len = s.out_sent = 0;
  --records_in_use_;
  counters_.record_buffers_in_use.set(records_in_use_);
  // Waiting connections go, oldest first, while buffers are free: a
  // blocked handshake or read goes on where BoringSSL stopped; a send is
  // pumped by the worker.
  while (waiter_head_ < waiters_.size() && records_in_use_ < records_.capacity()) {
    const std::uint32_t next = waiters_[waiter_head_++];
    Slot& w = slots_[next];
    if (!w.waiting) continue;
    w.waiting = false;
    if (w.blocked) {
      w.blocked = false;
      // BoringSSL resumes its pending write, then reads what arrived while
      // it waited.  (This may run inside another connection's callbacks:
      // their cursor is kept.)
      const std::span<const std::uint8_t> input = bio_.input();
      const std::uint32_t current = current_;
      std::vector<std::uint8_t> stash;
      stash.swap(w.stash);
      stash_bytes_ -= stash.capacity();
      bio_.set_input(stash);
      drive(next);
      keep_unread(next);
      bio_.set_input(input);
      current_ = current;
      counters_.held_bytes.set(held_bytes());
    }
    sink_.on_stream_output(next);
  }
  if (waiter_head_ == waiters_.size()) {
    waiters_.clear();
    waiter_head_ = 0;
  }
}

void TlsStream::release(std::uint32_t slot) {
  Slot& s = slots_[slot];
  RG_ASSERT(s.flight_end == 0);
  leave_phase(s);  // s is reset below
  if (s.ssl) {
    SSL_free(s.ssl);
    counters_.connections.sub();
  }
  s.ssl = nullptr;
  s.context.reset();
  drop_stash(s);
  s.waiting = false;  // its entry in waiters_ is skipped
  release_buffer(s);
  s = Slot{};
  counters_.held_bytes.set(held_bytes());
}

}  // namespace rg::server
