// ring/: the io_uring layer.  Knows rings, sockets and direct descriptors;
// knows nothing about HTTP or WebSocket.
//
// One Ring per worker thread (SINGLE_ISSUER: only the creating thread may
// submit).  Every SQE carries a Tag in user_data; every CQE comes back as a
// Completion, a typed view of (tag, res, flags), so that no caller reads raw
// cqe->res or guesses at flag bits.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <bitset>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace rg::ring {

// ---------------------------------------------------------------- tags
// user_data = op (8 bits) | generation (24 bits) | index (32 bits).
// The generation lets the owner of `index` ignore a completion that arrives
// after the slot it names was freed and reused.
inline constexpr std::uint32_t generation_mask = 0xFFFFFF;

struct Tag {
  std::uint8_t op = 0;
  std::uint32_t generation = 0;  // only the low 24 bits travel
  std::uint32_t index = 0;

  [[nodiscard]] constexpr std::uint64_t pack() const noexcept {
    return (std::uint64_t{op} << 56) | (std::uint64_t{generation & generation_mask} << 32) | index;
  }
  [[nodiscard]] static constexpr Tag unpack(std::uint64_t v) noexcept {
    return {static_cast<std::uint8_t>(v >> 56), static_cast<std::uint32_t>((v >> 32) & generation_mask),
            static_cast<std::uint32_t>(v)};
  }
};

// ---------------------------------------------------------------- results
// What a completion's res means, for handlers to switch on.  Every errno is
// one of these; a handler treats `unexpected` by counting and logging it
// (ws_unexpected_errors_total{op,errno}), never by guessing.
enum class Outcome : std::uint8_t {
  ok,          // res >= 0: bytes, a slot, or 0 (on a recv: the peer's FIN)
  cancelled,   // ECANCELED: we cancelled it (teardown, pause, drain)
  no_buffers,  // ENOBUFS: the provided-buffer ring ran dry; re-arm later
  peer_gone,   // the connection is over: reset, broken pipe, timed out, unreachable
  table_full,  // ENFILE, EMFILE: no direct-descriptor slot (accept)
  unexpected,  // any other errno
};

[[nodiscard]] constexpr Outcome outcome_of(std::int32_t res) noexcept {
  if (res >= 0) return Outcome::ok;
  switch (-res) {
    case ECANCELED: return Outcome::cancelled;
    case ENOBUFS: return Outcome::no_buffers;
    case ECONNRESET:
    case EPIPE:
    case ETIMEDOUT:
    case ENOTCONN:
    case ECONNABORTED:
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
      return Outcome::peer_gone;
    case ENFILE:
    case EMFILE:
      return Outcome::table_full;
    default: return Outcome::unexpected;
  }
}

struct Completion {
  Tag tag;
  std::int32_t res;
  std::uint32_t flags;

  [[nodiscard]] bool ok() const noexcept { return res >= 0; }
  [[nodiscard]] Outcome outcome() const noexcept { return outcome_of(res); }
  // Positive errno when !ok().
  [[nodiscard]] int error() const noexcept { return res < 0 ? -res : 0; }
  // Multishot requests stay armed while this is set.
  [[nodiscard]] bool more() const noexcept { return (flags & IORING_CQE_F_MORE) != 0; }
  [[nodiscard]] bool has_buffer() const noexcept { return (flags & IORING_CQE_F_BUFFER) != 0; }
  [[nodiscard]] std::uint16_t buffer_id() const noexcept {
    return static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  }
};

// ---------------------------------------------------------------- opcodes
// Opcodes and socket commands newer than Debian's liburing 2.3 headers.  The
// numbers are kernel ABI, so they are safe to spell out; whether the running
// kernel has them is asked at run time (Ring::supports).
inline constexpr std::uint8_t op_bind = 56;      // IORING_OP_BIND, Linux 6.11
inline constexpr std::uint8_t op_listen = 57;    // IORING_OP_LISTEN, Linux 6.11
inline constexpr std::uint32_t sock_cmd_setsockopt = 3;  // SOCKET_URING_OP_SETSOCKOPT, Linux 6.7

// How an SQE joins a chain.  A chain's SQEs run in order; when one fails the
// rest complete with -ECANCELED.  With skip_success the SQE posts a CQE only
// on failure, and then (Linux 5.17+) the CQEs of the cancelled rest of the
// chain are suppressed too: a chain of skip_success SQEs ending in a plain
// one posts exactly one CQE.
struct Chain {
  bool link_next = false;     // IOSQE_IO_LINK
  bool skip_success = false;  // IOSQE_CQE_SKIP_SUCCESS
};

// ---------------------------------------------------------------- setup
struct RingParams {
  std::uint32_t sq_entries = 4096;
  std::uint32_t cq_entries = 16384;  // multishot ops post many CQEs per SQE
};

// What the kernel turned out to support; logged once at start-up.
struct RingFeatures {
  bool single_issuer = false;   // IORING_SETUP_SINGLE_ISSUER (6.0+)
  bool defer_taskrun = false;   // IORING_SETUP_DEFER_TASKRUN (6.1+)
  bool multishot_recv = false;  // IORING_OP_RECV with IORING_RECV_MULTISHOT (6.0+)
  bool buf_ring = false;        // provided-buffer rings (5.19+)
};

class BufferRing;

class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  // Creates the ring with SINGLE_ISSUER|DEFER_TASKRUN, falling back to plain
  // flags on kernels without them (features() says which).  Returns 0 or a
  // positive errno; `error` names what failed.
  [[nodiscard]] int init(const RingParams& params, std::string& error);

  [[nodiscard]] const RingFeatures& features() const noexcept { return features_; }

  // Tears the ring down now (the destructor does it otherwise).  In-flight
  // operations are cancelled and waited for by the kernel, so memory they
  // point at may be freed afterwards.
  void exit() noexcept;
  [[nodiscard]] bool alive() const noexcept { return initialised_; }
  // Whether the kernel implements `opcode` (from io_uring_get_probe_ring at
  // init; covers opcodes liburing's headers do not name, such as op_bind).
  [[nodiscard]] bool supports(std::uint8_t opcode) const noexcept { return supported_ops_.test(opcode); }

  // Checks that the kernel can open client sockets as direct descriptors:
  // IORING_OP_SOCKET (5.19), SOCKET_URING_OP_SETSOCKOPT (6.7) and
  // IORING_OP_BIND (6.11).  There is no probe for uring_cmd sub-commands, so
  // IORING_OP_BIND stands for both: every kernel with it has the command.
  // Returns an empty string, or what is missing and which kernel has it.
  [[nodiscard]] std::string missing_client_socket_ops() const;
  [[nodiscard]] io_uring* raw() noexcept { return &ring_; }

  // A sparse table of direct descriptors.  The kernel refuses more slots than
  // RLIMIT_NOFILE (EMFILE), per ring.
  [[nodiscard]] int register_direct_table(std::uint32_t slots);

  // Next free SQE.  If the SQ is full it submits first, so it only returns
  // null when the kernel refuses to take SQEs at all.
  [[nodiscard]] io_uring_sqe* sqe() noexcept;
  // Makes room for `count` SQEs in a row, submitting first if needed.  Call it
  // before a linked chain: a submit in the middle of a chain would cut it.
  [[nodiscard]] bool reserve(std::uint32_t count) noexcept;

  // Submits pending SQEs and waits for at least one CQE or the timeout.
  // Returns 0, or a positive errno other than ETIME/EINTR.
  int submit_and_wait(std::uint32_t timeout_ms) noexcept;
  // The same with a microsecond timeout, for loops that pace work (rates).
  int submit_and_wait_us(std::uint64_t timeout_us) noexcept;
  [[nodiscard]] int submit() noexcept;

  // Copies up to `out.size()` CQEs out and advances the CQ.  Reaping first and
  // handling afterwards keeps handlers free to submit new SQEs.
  std::size_t reap(std::span<Completion> out) noexcept;

  // Reaps and hands each CQE to `handle`, in batches of `scratch.size()`,
  // for at most `rounds` batches (the rest waits for the next loop turn, so
  // one busy turn cannot starve timers).
  template <typename Handle>
  void drain(std::span<Completion> scratch, int rounds, Handle&& handle) {
    for (int round = 0; round < rounds; ++round) {
      const std::size_t n = reap(scratch);
      for (std::size_t i = 0; i < n; ++i) handle(scratch[i]);
      if (n < scratch.size()) break;
    }
  }

  // ------------------------------------------------------------ prep helpers
  // Each takes a Tag, fills one SQE, and returns false if no SQE was free
  // (the caller must handle that: [[nodiscard]]).
  [[nodiscard]] bool accept_multishot_direct(int listen_fd, Tag tag) noexcept;
  // One accept into table slot `slot` exactly (res 0 on success).
  [[nodiscard]] bool accept_into(int listen_fd, std::uint32_t slot, Tag tag) noexcept;
  // One accept into a slot the kernel picks (res = the slot), writing the
  // peer's address to `*addr`.  A multishot accept would write every peer's
  // address to the same buffer before the completions are read, so callers
  // that need addresses keep several of these in flight, one buffer each.
  [[nodiscard]] bool accept_direct_with_peer(int listen_fd, sockaddr_storage* addr, socklen_t* addr_len, Tag tag) noexcept;
  [[nodiscard]] bool recv_multishot(std::uint32_t slot, std::uint16_t buffer_group, Tag tag) noexcept;
  [[nodiscard]] bool send(std::uint32_t slot, std::span<const std::uint8_t> bytes, Tag tag) noexcept;
  // A gathered send (IORING_OP_SENDMSG).  `msg` and its iovecs must stay
  // valid and unchanged until the completion arrives.
  [[nodiscard]] bool send_msg(std::uint32_t slot, const msghdr* msg, Tag tag) noexcept;
  [[nodiscard]] bool shutdown_write(std::uint32_t slot, Tag tag) noexcept;
  [[nodiscard]] bool close_direct(std::uint32_t slot, Tag tag) noexcept;
  [[nodiscard]] bool cancel_tag(Tag target, Tag tag) noexcept;
  // Posts a CQE carrying `target_tag` (res 0) on the ring whose fd is
  // `target_ring_fd` (IORING_OP_MSG_RING, 5.18+: check supports()).  Its own
  // CQE is skipped on success, so a publisher need not reap them.
  [[nodiscard]] bool msg_ring(int target_ring_fd, Tag target_tag, Tag tag) noexcept;
  // read(2) of a regular (process) fd into `buf`, e.g. an eventfd.
  [[nodiscard]] bool read_fd(int fd, std::span<std::uint8_t> buf, Tag tag) noexcept;
  // The ring's own fd, the target of other rings' msg_ring().
  [[nodiscard]] int fd() const noexcept { return ring_.ring_fd; }

  // Client sockets, entirely in the direct-descriptor table (no process fd).
  // Typical chain: socket_direct -> setsockopt_int -> bind_direct ->
  // connect_direct, all linked, the first three with skip_success.
  //
  // IORING_OP_SOCKET straight into table slot `slot` (5.19+).
  [[nodiscard]] bool socket_direct(int domain, int type, std::uint32_t slot, Tag tag, Chain chain) noexcept;
  // setsockopt(level, optname, *value) on a direct descriptor through
  // IORING_OP_URING_CMD / SOCKET_URING_OP_SETSOCKOPT (6.7+).  `value` must
  // stay valid until the SQE has run (a linked SQE runs late): pass a static.
  [[nodiscard]] bool setsockopt_int(std::uint32_t slot, int level, int optname, const int* value, Tag tag, Chain chain) noexcept;
  // IORING_OP_BIND (6.11+).  `addr` must stay valid until the SQE has run.
  [[nodiscard]] bool bind_direct(std::uint32_t slot, const sockaddr* addr, socklen_t addr_len, Tag tag, Chain chain) noexcept;
  // IORING_OP_CONNECT on a direct descriptor.  `addr` as for bind_direct.
  [[nodiscard]] bool connect_direct(std::uint32_t slot, const sockaddr* addr, socklen_t addr_len, Tag tag, Chain chain) noexcept;

 private:
  io_uring ring_{};
  bool initialised_ = false;
  RingFeatures features_;
  std::bitset<256> supported_ops_;
};

// A provided-buffer ring: `count` buffers of `size` bytes, registered under
// one buffer group.  liburing 2.3 lacks io_uring_setup_buf_ring(), so the ring
// memory is mapped and registered by hand.
class BufferRing {
 public:
  BufferRing() = default;
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;
  ~BufferRing();

  // count must be a power of two (kernel requirement), at most 32768.
  [[nodiscard]] int init(Ring& ring, std::uint16_t group, std::uint32_t count, std::uint32_t size, std::string& error);

  [[nodiscard]] std::span<std::uint8_t> buffer(std::uint16_t id, std::uint32_t len) noexcept {
    return {base_ + std::size_t{id} * size_, len};
  }
  // Hands buffer `id` back to the kernel; made visible by publish().
  void recycle(std::uint16_t id) noexcept;
  // Publishes all recycled buffers in one store (one per loop turn).
  void publish() noexcept;

  [[nodiscard]] std::uint16_t group() const noexcept { return group_; }
  [[nodiscard]] std::uint32_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint32_t size() const noexcept { return size_; }

 private:
  Ring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  std::uint8_t* base_ = nullptr;
  std::size_t ring_bytes_ = 0;
  std::size_t pool_bytes_ = 0;
  std::uint16_t group_ = 0;
  std::uint32_t count_ = 0;
  std::uint32_t size_ = 0;
  std::uint32_t pending_ = 0;  // recycled but not yet published
};

// ---------------------------------------------------------------- sockets
// A listening TCP socket with SO_REUSEPORT, in the process fd table (only
// listeners and the ring itself ever are).  Returns the fd or -errno.
int listen_reuseport(const std::string& host, std::uint16_t port, int backlog, std::string& error);
// Whether something already accepts TCP connections on host:port (a
// wildcard host is tried on its loopback address), within timeout_ms: a
// process that would share the port through SO_REUSEPORT.  The probe
// connects and closes at once.
[[nodiscard]] bool port_answers(const std::string& host, std::uint16_t port, int timeout_ms);
// Fills `ss`/`len` from a numeric IPv4 or IPv6 address; false otherwise.
bool make_sockaddr(const std::string& host, std::uint16_t port, sockaddr_storage& ss, socklen_t& len);
// The port a bound socket got (for port 0).
std::uint16_t bound_port(int fd);

}  // namespace rg::ring
