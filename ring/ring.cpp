#include "ring/ring.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

namespace rg::ring {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

Ring::~Ring() { exit(); }

void Ring::exit() noexcept {
  if (initialised_) io_uring_queue_exit(&ring_);
  initialised_ = false;
}

int Ring::init(const RingParams& p, std::string& error) {
  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  params.cq_entries = p.cq_entries;
  int rc = io_uring_queue_init_params(p.sq_entries, &ring_, &params);
  if (rc == -EINVAL) {
    // Pre-6.1 kernels: no DEFER_TASKRUN (and maybe no SINGLE_ISSUER).  Run
    // without them; the caller logs the downgrade.
    params = {};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = p.cq_entries;
    rc = io_uring_queue_init_params(p.sq_entries, &ring_, &params);
  } else if (rc == 0) {
    features_.single_issuer = true;
    features_.defer_taskrun = true;
  }
  if (rc < 0) {
    error = "io_uring_queue_init: " + errno_text(-rc);
    return -rc;
  }
  initialised_ = true;

  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  if (probe) {
    // IORING_OP_SOCKET arrived in 5.19 with buf rings and multishot accept;
    // multishot recv needs 6.0, which also brought IORING_OP_SEND_ZC.
    features_.buf_ring = io_uring_opcode_supported(probe, IORING_OP_SOCKET);
    features_.multishot_recv = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);
    // probe->last_op is the kernel's, not the header's: opcodes newer than
    // liburing 2.3 (IORING_OP_BIND, ...) are answered too.
    for (unsigned op = 0; op <= probe->last_op && op < supported_ops_.size(); ++op)
      supported_ops_.set(op, (probe->ops[op].flags & IO_URING_OP_SUPPORTED) != 0);
    io_uring_free_probe(probe);
  }
  if (!features_.multishot_recv || !features_.buf_ring) {
    error = "kernel lacks multishot recv / provided-buffer rings (need Linux 6.0 or newer)";
    return ENOSYS;
  }
  return 0;
}

std::string Ring::missing_client_socket_ops() const {
  if (!supports(IORING_OP_SOCKET)) return "io_uring lacks IORING_OP_SOCKET (direct sockets need Linux 5.19 or newer)";
  if (!supports(IORING_OP_URING_CMD))
    return "io_uring lacks IORING_OP_URING_CMD (SOCKET_URING_OP_SETSOCKOPT needs Linux 6.7 or newer)";
  if (!supports(op_bind))
    return "io_uring lacks IORING_OP_BIND (binding direct sockets needs Linux 6.11 or newer; "
           "SOCKET_URING_OP_SETSOCKOPT needs 6.7)";
  return {};
}

int Ring::register_direct_table(std::uint32_t slots) {
  const int rc = io_uring_register_files_sparse(&ring_, slots);
  return rc < 0 ? -rc : 0;
}

io_uring_sqe* Ring::sqe() noexcept {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  if (s) return s;
  io_uring_submit(&ring_);
  return io_uring_get_sqe(&ring_);
}

bool Ring::reserve(std::uint32_t count) noexcept {
  if (io_uring_sq_space_left(&ring_) >= count) return true;
  io_uring_submit(&ring_);
  return io_uring_sq_space_left(&ring_) >= count;
}

int Ring::submit() noexcept {
  const int rc = io_uring_submit(&ring_);
  return (rc < 0 && rc != -EINTR && rc != -EBUSY) ? -rc : 0;
}

int Ring::submit_and_wait(std::uint32_t timeout_ms) noexcept {
  __kernel_timespec ts{};
  ts.tv_sec = timeout_ms / 1000;
  ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
  io_uring_cqe* cqe = nullptr;
  const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) return -rc;
  return 0;
}

int Ring::submit_and_wait_us(std::uint64_t timeout_us) noexcept {
  __kernel_timespec ts{};
  ts.tv_sec = static_cast<long long>(timeout_us / 1000000);
  ts.tv_nsec = static_cast<long long>(timeout_us % 1000000) * 1000;
  io_uring_cqe* cqe = nullptr;
  const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) return -rc;
  return 0;
}

std::size_t Ring::reap(std::span<Completion> out) noexcept {
  std::size_t n = 0;
  unsigned head;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    if (n == out.size()) break;
    out[n++] = Completion{Tag::unpack(cqe->user_data), cqe->res, cqe->flags};
  }
  io_uring_cq_advance(&ring_, static_cast<unsigned>(n));
  return n;
}

bool Ring::accept_multishot_direct(int listen_fd, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  // IORING_FILE_INDEX_ALLOC: the kernel picks a free slot of the sparse table
  // and reports it in cqe->res; -ENFILE when the table is full.
  io_uring_prep_multishot_accept_direct(s, listen_fd, nullptr, nullptr, 0);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::accept_into(int listen_fd, std::uint32_t slot, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_accept_direct(s, listen_fd, nullptr, nullptr, 0, slot);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::accept_direct_with_peer(int listen_fd, sockaddr_storage* addr, socklen_t* addr_len, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  *addr_len = sizeof(sockaddr_storage);
  // liburing 2.3 adds 1 to the index it is given; IORING_FILE_INDEX_ALLOC - 1
  // therefore becomes IORING_FILE_INDEX_ALLOC (the kernel allocates).
  io_uring_prep_accept_direct(s, listen_fd, reinterpret_cast<sockaddr*>(addr), addr_len, 0,
                              IORING_FILE_INDEX_ALLOC - 1);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::recv_multishot(std::uint32_t slot, std::uint16_t buffer_group, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_recv_multishot(s, static_cast<int>(slot), nullptr, 0, 0);
  s->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  s->buf_group = buffer_group;
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::send(std::uint32_t slot, std::span<const std::uint8_t> bytes, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_send(s, static_cast<int>(slot), bytes.data(), bytes.size(), MSG_NOSIGNAL);
  s->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::send_msg(std::uint32_t slot, const msghdr* msg, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_sendmsg(s, static_cast<int>(slot), msg, MSG_NOSIGNAL);
  s->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::shutdown_write(std::uint32_t slot, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_shutdown(s, static_cast<int>(slot), SHUT_WR);
  s->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::close_direct(std::uint32_t slot, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_close_direct(s, slot);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::cancel_tag(Tag target, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_cancel64(s, target.pack(), 0);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::msg_ring(int target_ring_fd, Tag target_tag, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_msg_ring(s, target_ring_fd, 0, target_tag.pack(), 0);
  s->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::read_fd(int fd, std::span<std::uint8_t> buf, Tag tag) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_read(s, fd, buf.data(), static_cast<unsigned>(buf.size()), 0);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

namespace {

void apply_chain(io_uring_sqe* s, Chain chain) noexcept {
  if (chain.link_next) s->flags |= IOSQE_IO_LINK;
  if (chain.skip_success) s->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

}  // namespace

bool Ring::socket_direct(int domain, int type, std::uint32_t slot, Tag tag, Chain chain) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  // An explicit slot (not IORING_FILE_INDEX_ALLOC): the caller owns the
  // table's allocation, so the slot is known before the CQE (which a chain
  // with skip_success never posts on success).
  io_uring_prep_socket_direct(s, domain, type, 0, slot, 0);
  apply_chain(s, chain);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::setsockopt_int(std::uint32_t slot, int level, int optname, const int* value, Tag tag,
                          Chain chain) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  // liburing 2.3 has no io_uring_prep_cmd_sock, and its io_uring_sqe has no
  // names for the socket-command fields.  The kernel's uapi (6.7+) overlays
  // them on older fields:
  //   cmd_op  -> the low half of `off`      level/optname -> the halves of `addr`
  //   optlen  -> file_index                 optval        -> addr3
  io_uring_prep_rw(IORING_OP_URING_CMD, s, static_cast<int>(slot), nullptr, 0, 0);
  s->cmd_op = sock_cmd_setsockopt;
  const std::uint32_t level_optname[2] = {static_cast<std::uint32_t>(level), static_cast<std::uint32_t>(optname)};
  std::memcpy(&s->addr, level_optname, sizeof level_optname);
  s->file_index = sizeof(int);
  s->addr3 = reinterpret_cast<std::uint64_t>(value);
  s->flags |= IOSQE_FIXED_FILE;
  apply_chain(s, chain);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::bind_direct(std::uint32_t slot, const sockaddr* addr, socklen_t addr_len, Tag tag, Chain chain) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  // IORING_OP_BIND (liburing 2.7's io_uring_prep_bind): addr, and the
  // address length in `off` (addr2).
  io_uring_prep_rw(op_bind, s, static_cast<int>(slot), addr, 0, addr_len);
  s->flags |= IOSQE_FIXED_FILE;
  apply_chain(s, chain);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

bool Ring::connect_direct(std::uint32_t slot, const sockaddr* addr, socklen_t addr_len, Tag tag,
                          Chain chain) noexcept {
  io_uring_sqe* s = sqe();
  if (!s) return false;
  io_uring_prep_connect(s, static_cast<int>(slot), addr, addr_len);
  s->flags |= IOSQE_FIXED_FILE;
  apply_chain(s, chain);
  io_uring_sqe_set_data64(s, tag.pack());
  return true;
}

// ---------------------------------------------------------------- buffer ring

BufferRing::~BufferRing() {
  if (br_) {
    // A ring that is gone took the registration with it.
    if (ring_->alive()) io_uring_unregister_buf_ring(ring_->raw(), group_);
    munmap(br_, ring_bytes_);
  }
  if (base_) munmap(base_, pool_bytes_);
}

int BufferRing::init(Ring& ring, std::uint16_t group, std::uint32_t count, std::uint32_t size, std::string& error) {
  assert(count > 0 && (count & (count - 1)) == 0 && count <= 32768);
  ring_ = &ring;
  group_ = group;
  count_ = count;
  size_ = size;
  ring_bytes_ = count * sizeof(io_uring_buf);
  void* r = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (r == MAP_FAILED) {
    error = "mmap buffer ring: " + errno_text(errno);
    return errno;
  }
  br_ = static_cast<io_uring_buf_ring*>(r);
  io_uring_buf_ring_init(br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = group;
  const int rc = io_uring_register_buf_ring(ring_->raw(), &reg, 0);
  if (rc < 0) {
    munmap(br_, ring_bytes_);
    br_ = nullptr;
    error = "io_uring_register_buf_ring: " + errno_text(-rc);
    return -rc;
  }
  pool_bytes_ = std::size_t{count} * size;
  // Faulted in now (MAP_POPULATE): the pool is a start-up cost, not something
  // that creeps into RSS as connections arrive.
  void* b = mmap(nullptr, pool_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
  if (b == MAP_FAILED) {
    error = "mmap receive buffers: " + errno_text(errno);
    return errno;
  }
  base_ = static_cast<std::uint8_t*>(b);
  for (std::uint32_t i = 0; i < count; ++i) recycle(static_cast<std::uint16_t>(i));
  publish();
  return 0;
}

void BufferRing::recycle(std::uint16_t id) noexcept {
  io_uring_buf_ring_add(br_, base_ + std::size_t{id} * size_, size_, id, io_uring_buf_ring_mask(count_),
                        static_cast<int>(pending_));
  ++pending_;
}

void BufferRing::publish() noexcept {
  if (pending_ == 0) return;
  io_uring_buf_ring_advance(br_, static_cast<int>(pending_));
  pending_ = 0;
}

// ---------------------------------------------------------------- sockets

bool make_sockaddr(const std::string& host, std::uint16_t port, sockaddr_storage& ss, socklen_t& len) {
  ss = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
    return true;
  }
  return false;
}

int listen_reuseport(const std::string& host, std::uint16_t port, int backlog, std::string& error) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!make_sockaddr(host, port, ss, len)) {
    error = "not a numeric IPv4/IPv6 address: " + host;
    return -EINVAL;
  }
  const int family = ss.ss_family;
  const int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = "socket: " + errno_text(errno);
    return -errno;
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY from the listener: small WebSocket
  // frames must not wait for Nagle.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    const int err = errno;
    error = "bind " + host + ":" + std::to_string(port) + ": " + errno_text(err);
    close(fd);
    return -err;
  }
  if (listen(fd, backlog) < 0) {
    const int err = errno;
    error = "listen: " + errno_text(err);
    close(fd);
    return -err;
  }
  return fd;
}

bool port_answers(const std::string& host, std::uint16_t port, int timeout_ms) {
  const std::string target = host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "::1" : host;
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (port == 0 || !make_sockaddr(target, port, ss, len)) return false;
  const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  bool answered = connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0;
  if (!answered && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t err_len = sizeof err;
    answered = poll(&p, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) == 0 && err == 0;
  }
  close(fd);
  return answered;
}

std::uint16_t bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

}  // namespace rg::ring
