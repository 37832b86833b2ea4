// The admin listener (control/admin.h): health, readiness, /metrics, /status and the publish API routes.
#include "control/admin.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <absl/strings/str_format.h>

#include <algorithm>
#include <ctime>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/clock.h"
#include "proto/http_request.h"
#include "ring/ring.h"
#include "control/secrets.h"
#include "base/log.h"

namespace rg::server {

namespace {

// A worker loop wakes at least every 100 ms; one silent for this long is stuck.
constexpr std::uint64_t heartbeat_stale_ms = 2000;

using base::monotonic_ms;

std::uint64_t load(const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); }
std::uint64_t load(const base::Counter& c) { return c.load(); }

// Prometheus text format: one family, one sample per worker plus nothing else.
template <typename Field>
void per_worker(std::string& out, const Shared& s, const char* name, const char* type, const char* help,
                Field WorkerCounters::*field) {
  absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
  for (std::size_t i = 0; i < s.counters.size(); ++i)
    absl::StrAppendFormat(&out, "%s{worker=\"%d\"} %d\n", name, i, load((*s.counters[i]).*field));
}

// The process-wide budgets, one list for /metrics and /status, so the two
// can never disagree about which budgets exist.
struct BudgetFigure {
  const char* name;
  std::uint64_t used;
  std::uint64_t limit;
};
std::vector<BudgetFigure> process_budgets(const Shared& s) {
  std::vector<BudgetFigure> out = {
      {"max_connections", s.open_connections(), s.max_connections},
      {"buffered_bytes", s.buffered_bytes(), s.max_buffered_bytes},
  };
  for (std::size_t i = 0; i < s.kernel.figures.size(); ++i)
    out.push_back({budget_name(static_cast<KernelBudget>(i)), load(s.kernel.figures[i].used),
                   load(s.kernel.figures[i].limit)});
  out.push_back({"ephemeral_ports", load(s.outbound_connections), s.ephemeral_ports_limit});
  return out;
}

const char* admin_refusal_name(AdminRefusal r) {
  switch (r) {
    case AdminRefusal::per_ip: return "per_ip";
    case AdminRefusal::busy: return "busy";
    case AdminRefusal::evicted: return "evicted";
    case AdminRefusal::timeout: return "timeout";
    case AdminRefusal::count: break;
  }
  return "other";
}

}  // namespace

namespace {
// One Prometheus histogram summed over workers (seconds, as is conventional);
// `of` picks the histogram out of a worker's counters.
template <typename Of>
void histogram_of(std::string& out, const Shared& shared, const char* name, const char* help, Of of) {
  absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b <= LatencyHistogram::bounds_ms.size(); ++b) {
    for (const auto& c : shared.counters) cumulative += load(of(*c).buckets[b]);
    if (b < LatencyHistogram::bounds_ms.size())
      absl::StrAppendFormat(&out, "%s_bucket{le=\"%g\"} %d\n", name, LatencyHistogram::bounds_ms[b] / 1000.0,
                            cumulative);
    else
      absl::StrAppendFormat(&out, "%s_bucket{le=\"+Inf\"} %d\n", name, cumulative);
  }
  std::uint64_t sum_ms = 0;
  std::uint64_t count = 0;
  for (const auto& c : shared.counters) {
    sum_ms += load(of(*c).sum_ms);
    count += load(of(*c).count);
  }
  absl::StrAppendFormat(&out, "%s_sum %g\n%s_count %d\n", name, static_cast<double>(sum_ms) / 1000.0, name, count);
}
}  // namespace

void Admin::histogram(std::string& out, const char* name, const char* help,
                      LatencyHistogram WorkerCounters::*field) const {
  histogram_of(out, shared_, name, help, [field](const WorkerCounters& c) -> const LatencyHistogram& { return c.*field; });
}

// TLS: handshakes by result, version and resumption, failures by reason,
// what TLS holds, and the certificate's remaining life.
void Admin::tls_metrics(std::string& out) const {
  const Shared& s = shared_;
  if (!s.tls) return;
  out += "# HELP ws_tls_handshakes_total TLS handshakes: completed (by version and resumption) or failed.\n"
         "# TYPE ws_tls_handshakes_total counter\n";
  for (std::size_t v = 0; v < 2; ++v)
    for (std::size_t r = 0; r < 2; ++r) {
      std::uint64_t sum = 0;
      for (const auto& c : s.counters) sum += load(c->tls.handshakes_ok[v][r]);
      absl::StrAppendFormat(&out, "ws_tls_handshakes_total{result=\"ok\",version=\"%s\",resumed=\"%d\"} %d\n",
                            v ? "1.3" : "1.2", r, sum);
    }
  {
    std::uint64_t failed = 0;
    for (const auto& c : s.counters)
      for (const auto f : {TlsFailure::not_tls, TlsFailure::plain_http, TlsFailure::handshake, TlsFailure::truncated,
                           TlsFailure::no_memory})
        failed += load(c->tls.failures[static_cast<std::size_t>(f)]);
    absl::StrAppendFormat(&out, "ws_tls_handshakes_total{result=\"failed\",version=\"none\",resumed=\"0\"} %d\n",
                          failed);
  }
  out += "# HELP ws_tls_failures_total TLS connections that failed, by reason (an alert or a 400 was sent where "
         "one could be).\n# TYPE ws_tls_failures_total counter\n";
  for (std::size_t f = 0; f < static_cast<std::size_t>(TlsFailure::count); ++f) {
    std::uint64_t sum = 0;
    for (const auto& c : s.counters) sum += load(c->tls.failures[f]);
    absl::StrAppendFormat(&out, "ws_tls_failures_total{reason=\"%s\"} %d\n", tls_failure_name(static_cast<TlsFailure>(f)),
                          sum);
  }
  const auto sum_of = [&](base::Counter TlsCounters::*field) {
    std::uint64_t sum = 0;
    for (const auto& c : s.counters) sum += load(c->tls.*field);
    return sum;
  };
  absl::StrAppendFormat(
      &out,
      "# HELP ws_tls_refusals_total TLS connections refused with an internal_error alert at accept: "
      "tls_handshakes_max handshakes in flight.\n# TYPE ws_tls_refusals_total counter\nws_tls_refusals_total %d\n"
      "# HELP ws_tls_close_notify_total Peers that ended their TLS stream with close_notify.\n"
      "# TYPE ws_tls_close_notify_total counter\nws_tls_close_notify_total %d\n"
      "# HELP ws_tls_handshakes_in_flight TLS connections accepted and not yet through their handshake.\n"
      "# TYPE ws_tls_handshakes_in_flight gauge\nws_tls_handshakes_in_flight %d\n"
      "# HELP ws_tls_connections TLS connections with a BoringSSL SSL (handshaking or established).\n"
      "# TYPE ws_tls_connections gauge\nws_tls_connections %d\n"
      "# HELP ws_tls_record_buffers_in_use Record buffers holding ciphertext waiting or in flight.\n"
      "# TYPE ws_tls_record_buffers_in_use gauge\nws_tls_record_buffers_in_use %d\n"
      "# HELP ws_tls_bytes_held Bytes TLS holds (SSLs, handshakes, record buffers), charged to max_buffered_bytes.\n"
      "# TYPE ws_tls_bytes_held gauge\nws_tls_bytes_held %d\n"
      "# HELP ws_tls_certificate_expiry_seconds Seconds until the soonest certificate notAfter (negative: "
      "expired).\n# TYPE ws_tls_certificate_expiry_seconds gauge\nws_tls_certificate_expiry_seconds %d\n"
      "# HELP ws_tls_reloads_total SIGHUP reloads of the certificates and ticket keys, by result.\n"
      "# TYPE ws_tls_reloads_total counter\nws_tls_reloads_total{result=\"ok\"} %d\n"
      "ws_tls_reloads_total{result=\"failed\"} %d\n",
      sum_of(&TlsCounters::refused_total), sum_of(&TlsCounters::close_notify_total),
      sum_of(&TlsCounters::handshakes_in_flight), sum_of(&TlsCounters::connections),
      sum_of(&TlsCounters::record_buffers_in_use), sum_of(&TlsCounters::held_bytes),
      s.tls_not_after_s.load() - static_cast<std::int64_t>(time(nullptr)), load(s.tls_reloads_ok),
      load(s.tls_reloads_failed));
  histogram_of(out, s, "ws_tls_handshake_duration_seconds",
               "TLS handshakes, from the ClientHello's first bytes to the handshake done, all workers.",
               [](const WorkerCounters& c) -> const LatencyHistogram& { return c.tls.handshake_ms; });
}

bool parse_host_port(const std::string& text, std::string& host, std::uint16_t& port) {
  std::string p;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find("]:");
    if (close == std::string::npos) return false;
    host = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    host = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (host.empty() || p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const unsigned long v = std::stoul(p);
  if (v > 65535) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

bool loopback_host(const std::string& host) {
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

bool Admin::start(const std::string& host, std::uint16_t port, std::string& error) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!ring::make_sockaddr(host, port, ss, len)) {
    error = "admin_listen: not a numeric IPv4/IPv6 address: " + host;
    return false;
  }
  // A backlog of a table's worth: a burst of newcomers waits in the kernel
  // for the next accept_clients() instead of having its SYNs dropped (and
  // retried a second later).  The kernel caps it at net.core.somaxconn.
  constexpr int backlog = static_cast<int>(clients_max);
  // No SO_REUSEPORT here: a second process must fail to bind the admin port,
  // not silently share its scrapes and health checks.
  fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);  // accept() in a loop until EAGAIN
  const int one = 1;
  if (fd_ < 0 || setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd_, backlog) != 0) {
    error = absl::StrFormat("admin_listen %s:%d: %s", host, port, std::strerror(errno));
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    return false;
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                           : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  thread_ = std::thread([this] { serve(); });
  return true;
}

void Admin::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string response(int status, std::string_view content_type, std::string_view body, bool keep_alive,
                     std::string_view extra_headers) {
  return absl::StrFormat("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s", status,
                         reason_phrase(status), content_type, body.size(), keep_alive ? "" : "Connection: close\r\n",
                         extra_headers, body);
}

constexpr std::string_view json_type = "application/json";

std::string json_error(std::string_view error, std::string_view message) {
  return absl::StrFormat(R"({"error":"%s","message":"%s"})", error, message);
}

// Accepts per loop turn, so a connection flood cannot starve the clients.
constexpr int accepts_per_turn_max = 64;
// The loop wakes this often to enforce deadlines and release held answers.
constexpr int poll_interval_ms = 50;
// Pipelined requests served back to back for one connection per turn.
constexpr int requests_per_turn_max = 16;
// What a refused newcomer is told to wait (the admin listener frees slots
// within admin_request_timeout).
constexpr std::uint32_t busy_retry_after_s = 1;

short poll_events(const AdminClient& c) {
  switch (c.phase) {
    case AdminPhase::waiting:
    case AdminPhase::head:
    case AdminPhase::body: return POLLIN;
    case AdminPhase::answering: return POLLOUT;
    case AdminPhase::held: return 0;  // released by the clock, not the socket
  }
  return 0;
}

}  // namespace

Admin::Admin(Shared& shared) : shared_(shared), publisher_(shared) {
  limits_.clients_max = clients_max;
  limits_.health_reserve = health_reserve;
  limits_.per_ip_max = shared.config.admin_per_ip_limit;
  limits_.request_timeout_ms = shared.config.admin_request_timeout_ms;
}

void Admin::serve() {
  // Signals belong to the main thread (they are blocked before this starts).
  publisher_.start();
  clients_.reserve(clients_max);
  std::vector<pollfd> fds;
  while (!stop_.load()) {
    fds.clear();
    fds.push_back({fd_, POLLIN, 0});
    for (const AdminClient& c : clients_) fds.push_back({c.fd, poll_events(c), 0});
    if (poll(fds.data(), fds.size(), poll_interval_ms) < 0) continue;
    const std::uint64_t now = monotonic_ms();
    for (std::size_t i = 0; i + 1 < fds.size(); ++i) {
      AdminClient& c = clients_[i];
      const short revents = fds[i + 1].revents;
      bool drop = (revents & (POLLERR | POLLNVAL)) != 0;
      const bool reading = c.phase == AdminPhase::waiting || c.phase == AdminPhase::head || c.phase == AdminPhase::body;
      if (!drop && reading && (revents & (POLLIN | POLLHUP))) {
        char buf[16384];
        const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
          if (c.phase == AdminPhase::waiting) {
            // A kept-alive connection's next request starts with its first
            // byte; its deadline runs from here, not from its last byte.
            c.phase = AdminPhase::head;
            c.since_ms = now;
            c.deadline_ms = now + limits_.request_timeout_ms;
          }
          c.in.append(buf, static_cast<std::size_t>(n));
          serve_request(c, now);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          drop = true;
        }
      }
      if (!drop && c.phase == AdminPhase::held && now >= c.send_after_ms) c.phase = AdminPhase::answering;
      for (int r = 0; !drop && c.phase == AdminPhase::answering && r < requests_per_turn_max; ++r) {
        while (c.out_sent < c.out.size()) {
          const ssize_t n = send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
          if (n <= 0) {
            drop = n < 0 && errno != EAGAIN && errno != EINTR;
            break;
          }
          c.out_sent += static_cast<std::size_t>(n);
        }
        if (drop || c.out_sent < c.out.size()) break;
        if (c.close_after) {
          drop = true;
          break;
        }
        after_answer(c, now);
      }
      // Whatever it is doing: a request that has not ended by its deadline
      // (or a connection idle past idle_timeout) goes.
      if (!drop && now >= c.deadline_ms) {
        drop = true;
        refusals_[static_cast<std::size_t>(AdminRefusal::timeout)].add();
      }
      if (drop) {
        close(c.fd);
        c.fd = -1;
      }
    }
    std::erase_if(clients_, [](const AdminClient& c) { return c.fd < 0; });
    if (fds[0].revents & POLLIN) accept_clients(now);
    connections_.set(clients_.size());
    committed_.set(static_cast<std::uint64_t>(
        std::count_if(clients_.begin(), clients_.end(), [](const AdminClient& c) { return committed(c.phase); })));
  }
  for (const AdminClient& c : clients_) close(c.fd);
  clients_.clear();
}

// Takes the newcomers waiting in the backlog.  Each gets a slot (a free
// one, or an uncommitted one's: control/admin_clients.h) unless its address
// holds admin_per_ip_limit connections already.
void Admin::accept_clients(std::uint64_t now) {
  for (int n = 0; n < accepts_per_turn_max; ++n) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    const PeerAddress peer = PeerAddress::from(ss);
    const Admission a = admit(clients_, peer, limits_);
    if (a.kind == Admission::Kind::per_ip || a.kind == Admission::Kind::full) {
      const bool per_ip = a.kind == Admission::Kind::per_ip;
      refusals_[static_cast<std::size_t>(per_ip ? AdminRefusal::per_ip : AdminRefusal::busy)].add();
      // Best effort, without a slot: read what the client already sent (so
      // the close is a FIN, not a reset that could destroy the answer), then
      // answer into the empty socket buffer and close.
      char sink[4096];
      for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, 0) > 0; ++i) {
      }
      const std::string r = response(
          per_ip ? 429 : 503, json_type,
          per_ip ? json_error("too_many_connections",
                              absl::StrFormat("your address holds admin_per_ip_limit (%d) admin connections",
                                              limits_.per_ip_max))
                 : json_error("busy", "every admin connection is busy; retry"),
          false, absl::StrFormat("Retry-After: %d\r\n", busy_retry_after_s));
      (void)send(fd, r.data(), r.size(), MSG_NOSIGNAL);
      close(fd);
      continue;
    }
    if (a.kind == Admission::Kind::evict) {
      close(clients_[a.victim].fd);
      clients_[a.victim] = std::move(clients_.back());
      clients_.pop_back();
      refusals_[static_cast<std::size_t>(AdminRefusal::evicted)].add();
    }
    // The first request's clock starts at the accept: a connection that
    // never sends is gone after admin_request_timeout.
    AdminClient& c = clients_.emplace_back();
    c.fd = fd;
    c.peer = peer;
    c.phase = AdminPhase::head;
    c.since_ms = now;
    c.deadline_ms = now + limits_.request_timeout_ms;
  }
}

void Admin::answer(AdminClient& c, std::uint64_t now, int status, std::string_view content_type,
                   std::string_view body, bool keep_alive, std::string_view extra_headers) {
  c.out = response(status, content_type, body, keep_alive, extra_headers);
  c.out_sent = 0;
  c.close_after = !keep_alive;
  c.phase = AdminPhase::answering;
  // The answer gets a request's time to leave: a client that does not read
  // it does not keep the slot.
  c.deadline_ms = now + limits_.request_timeout_ms;
}

void Admin::after_answer(AdminClient& c, std::uint64_t now) {
  c.out.clear();
  c.out_sent = 0;
  c.health = false;
  c.since_ms = now;
  if (c.in.empty()) {
    c.phase = AdminPhase::waiting;
    c.deadline_ms = now + limits_.idle_timeout_ms;
    return;
  }
  // A pipelined request: it began when its first byte came, but not
  // before the previous answer went; its clock starts now.
  c.phase = AdminPhase::head;
  c.deadline_ms = now + limits_.request_timeout_ms;
  serve_request(c, now);
}

// Serves the connection's request once its head (and body) are here; one
// request at a time: the next is read after this one's answer is sent.
void Admin::serve_request(AdminClient& c, std::uint64_t now) {
  proto::http::Request req;
  const auto parsed = c.parser.feed(c.in, req);
  if (parsed == proto::http::RequestParser::Status::need_more) return;
  if (parsed == proto::http::RequestParser::Status::error) {
    answer(c, now, c.parser.error_status(), json_type, json_error("bad_request", c.parser.error_reason()), false);
    return;
  }
  const std::string_view path = req.path();
  const bool publish = path.starts_with("/publish/");
  const bool user_send = path.starts_with("/users/") && path.ends_with("/send") && path.size() > 12;
  const bool posting = (publish || user_send) && req.method == "POST";
  // The fleet's registry (with the backplane): where a user is connected,
  // how many subscribers a channel has.  Behind the publish API's token:
  // it says who is online.
  const bool lookup = req.method == "GET" && !user_send &&
                      ((path.starts_with("/users/") && path.size() > 7) ||
                       (path.starts_with("/channels/") && path.size() > 10));
  if (c.phase != AdminPhase::body) {
    // The head just completed: decide once whether this request may hold a slot.
    c.health = req.method == "GET" && (path == "/healthz" || path == "/readyz");
    if (!c.health && !general_slot_free(clients_, limits_)) {
      refusals_[static_cast<std::size_t>(AdminRefusal::busy)].add();
      answer(c, now, 503, json_type,
             json_error("busy", "the admin listener's general slots are busy (only /healthz and /readyz are "
                                "served from its reserve); retry"),
             false, absl::StrFormat("Retry-After: %d\r\n", busy_retry_after_s));
      return;
    }
    if (posting) {
      if (req.chunked || !req.has_content_length) {
        answer(c, now, 411, json_type,
               json_error("length_required", "send the body with Content-Length (chunked bodies are not accepted)"),
               false);
        return;
      }
      if (req.content_length > shared_.config.max_publish_size) {
        bump_publish_refusal(PublishRefusal::too_large);
        // The body is not read: answer and close instead.
        answer(c, now, 413, json_type,
               json_error("too_large", absl::StrFormat("body of %d bytes is over max_publish_size (%d bytes)",
                                                       req.content_length, shared_.config.max_publish_size)),
               false);
        return;
      }
    }
    if (posting || lookup) {
      // The token is checked before the body is read: without it nobody
      // gets to hold a slot while a body trickles in.
      if (!shared_.api_token.empty()) {
        const std::string_view auth = req.authorization;
        const bool bearer = auth.size() > 7 && proto::http::iequals(auth.substr(0, 7), "bearer ");
        if (!bearer || !same_secret(proto::http::trim(auth.substr(7)), shared_.api_token)) {
          bump_publish_refusal(PublishRefusal::unauthorized);
          auth_failures_.add();
          const AuthThrottle::Verdict v = throttle_.fail(c.peer, now);
          if (v.throttled) {
            auth_throttled_.add();
            answer(c, now, 429, json_type,
                   json_error("too_many_failures",
                              absl::StrFormat("more than %d wrong or missing tokens from your address in %d s; "
                                              "retry in %d s",
                                              AuthThrottle::failures_max, AuthThrottle::window_ms / 1000,
                                              v.retry_after_s)),
                   false, absl::StrFormat("Retry-After: %d\r\n", v.retry_after_s));
            c.phase = AdminPhase::held;
            c.send_after_ms = now + AuthThrottle::delay_ms;
            c.deadline_ms = c.send_after_ms + limits_.request_timeout_ms;
            return;
          }
          // The connection stays open only if the body is here to skip.
          const bool body_here = c.in.size() >= req.head_bytes + req.content_length;
          answer(c, now, 401, json_type,
                 json_error("unauthorized", auth.empty() ? "this API requires Authorization: Bearer TOKEN"
                                                         : "the bearer token does not match api_token_file"),
                 req.keep_alive && body_here, "WWW-Authenticate: Bearer\r\n");
          if (body_here) {
            c.in.erase(0, req.head_bytes + req.content_length);
            c.parser.reset();
          }
          return;
        }
      }
      c.phase = AdminPhase::body;
      c.deadline_ms = limits_.request_deadline_ms(c.since_ms, req.content_length);
    }
  }
  if (posting) {
    if (c.in.size() < req.head_bytes + req.content_length) return;  // the body is still coming
    const std::string_view body = std::string_view(c.in).substr(req.head_bytes, req.content_length);
    const std::string_view name = publish ? path.substr(9) : path.substr(7, path.size() - 7 - 5);
    const Publisher::Outcome o =
        publisher_.publish(publish ? Publication::Target::channel : Publication::Target::user, name,
                           {reinterpret_cast<const std::uint8_t*>(body.data()), body.size()});
    answer(c, now, o.status, json_type, o.body, req.keep_alive, o.status == 503 ? "Retry-After: 1\r\n" : "");
    c.in.erase(0, req.head_bytes + req.content_length);
    c.parser.reset();
    return;
  }
  // Everything else is answered and the connection closed: health checks
  // and scrapes are one request per connection, as they always were here
  // (simple clients read the answer until EOF), and a body nobody wants is
  // not read.
  if (lookup) {
    const bool user = path.starts_with("/users/");
    const Publisher::Outcome o = publisher_.lookup(user ? Publication::Target::user : Publication::Target::channel,
                                                   path.substr(user ? 7 : 10));
    answer(c, now, o.status, json_type, o.body, false, o.status == 503 ? "Retry-After: 1\r\n" : "");
    return;
  }
  if (publish || user_send) {
    answer(c, now, 405, json_type, json_error("method_not_allowed", "publishing takes POST"), false,
           "Allow: POST\r\n");
    return;
  }
  const Reply reply = handle(std::string(path));
  if (req.method == "GET" || reply.status == 404) {
    answer(c, now, reply.status, reply.content_type, reply.body, false);
  } else {
    answer(c, now, 405, "text/plain; charset=utf-8", "405 Method Not Allowed: this path answers GET only\n", false,
           "Allow: GET\r\n");
  }
}

void Admin::bump_publish_refusal(PublishRefusal r) {
  shared_.publish.refused[static_cast<std::size_t>(r)].add();
}

Admin::Reply Admin::handle(const std::string& path) const {
  const std::string text = "text/plain; charset=utf-8";
  if (path == "/healthz") {
    const std::uint64_t now = monotonic_ms();
    for (std::size_t i = 0; i < shared_.counters.size(); ++i) {
      const std::uint64_t beat = load(shared_.counters[i]->loop_heartbeat_ms);
      if (now > beat && now - beat > heartbeat_stale_ms)
        return {503, text, absl::StrFormat("worker %d loop has not turned for %d ms\n", i, now - beat)};
    }
    return {200, text, absl::StrFormat("ok: %d worker loops responding\n", shared_.counters.size())};
  }
  if (path == "/readyz") {
    if (shared_.stopping.load()) return {503, text, "not ready: draining for shutdown\n"};
    if (shared_.leaving.load()) return {503, text, "not ready: leaving (drain_grace), still serving its connections\n"};
    const std::uint64_t open = shared_.open_connections();
    const std::uint64_t limit = shared_.max_connections;
    const std::uint64_t threshold = limit * shared_.config.not_ready_percent / 100;
    if (open >= threshold)
      return {503, text,
              absl::StrFormat("not ready: %d of %d connections (not_ready_percent %d%%)\n", open, limit,
                              shared_.config.not_ready_percent)};
    const std::uint32_t kernel_permille = shared_.kernel.peak_permille.load();
    if (kernel_permille >= shared_.config.not_ready_percent * 10)
      return {503, text,
              absl::StrFormat("not ready: a kernel budget is %.1f%% used (not_ready_percent %d%%)\n",
                              kernel_permille / 10.0, shared_.config.not_ready_percent)};
    return {200, text, absl::StrFormat("ready: %d of %d connections\n", open, limit)};
  }
  if (path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", metrics()};
  if (path == "/status") return {200, "application/json", status_json()};
  return {404, text,
          "404 Not Found: the admin API serves GET /healthz, /readyz, /metrics, /status, /users/{user} and "
          "/channels/{channel}, and POST /publish/{channel} and /users/{user}/send\n"};
}

std::string Admin::metrics() const {
  std::string out;
  const Shared& s = shared_;
  const auto refused = [&](std::size_t w, std::initializer_list<Refusal> reasons) {
    std::uint64_t sum = 0;
    for (const Refusal r : reasons) sum += s.counters[w]->refused(r);
    return sum;
  };
  const auto per_worker_sum = [&](const char* name, const char* help, std::initializer_list<Refusal> reasons,
                                  std::uint64_t (*extra)(const WorkerCounters&) = nullptr) {
    absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (std::size_t i = 0; i < s.counters.size(); ++i)
      absl::StrAppendFormat(&out, "%s{worker=\"%d\"} %d\n", name, i,
                            refused(i, reasons) + (extra ? extra(*s.counters[i]) : 0));
  };
  per_worker(out, s, "ws_total_connections", "gauge", "Upgraded WebSocket connections open now.",
             &WorkerCounters::open_connections);
  per_worker_sum("ws_connection_limit_rejections_total",
                 "Connections refused by admission control for any limit (max_connections, table slots, kernel "
                 "budgets, per_ip_limit, accept queue, pools).",
                 {Refusal::max_connections, Refusal::table_full, Refusal::kernel_budget, Refusal::per_ip,
                  Refusal::accept_queue_full, Refusal::accept_queue_timeout, Refusal::busy, Refusal::buffered_bytes});
  per_worker_sum("ws_max_connections_exceeded_total", "Handshakes answered 503 because max_connections was reached.",
                 {Refusal::max_connections});
  per_worker_sum("ws_per_ip_rejections_total", "Connections answered 429 because their address reached per_ip_limit.",
                 {Refusal::per_ip});
  per_worker_sum("ws_busy_rejections_total",
                 "Connections refused because a pool was empty (503 in the handshake, 1013 after it).",
                 {Refusal::busy}, [](const WorkerCounters& c) { return load(c.busy_closes_total); });
  per_worker_sum("ws_table_full_rejections_total",
                 "Connections accepted into a reserved table slot only to be answered 503 (table full).",
                 {Refusal::table_full});
  per_worker_sum("ws_kernel_budget_rejections_total",
                 "Handshakes answered 503 because a kernel budget reached kernel_refuse_percent.",
                 {Refusal::kernel_budget});
  per_worker_sum("ws_accept_queue_rejections_total",
                 "Connections answered 503 by accept-rate limiting: queue full, or no token within "
                 "accept_queue_timeout.",
                 {Refusal::accept_queue_full, Refusal::accept_queue_timeout});
  per_worker(out, s, "ws_handshake_attempts_total", "counter",
             "TCP connections accepted; each is a handshake attempt.", &WorkerCounters::accepted_total);
  per_worker(out, s, "ws_accepted_total", "counter", "TCP connections accepted (same as ws_handshake_attempts_total).",
             &WorkerCounters::accepted_total);
  per_worker(out, s, "ws_handshake_successes_total", "counter", "Handshakes answered 101.",
             &WorkerCounters::upgraded_total);
  absl::StrAppendFormat(&out,
                        "# HELP ws_proxy_headers_total PROXY protocol v2 headers read from balancers "
                        "(proxy_protocol_from), by command: proxy carries the client's address, local is the "
                        "balancer's own connection.\n# TYPE ws_proxy_headers_total counter\n");
  for (std::size_t c = 0; c < 2; ++c) {
    std::uint64_t sum = 0;
    for (const auto& w : s.counters) sum += w->proxy_headers_total[c].load();
    absl::StrAppendFormat(&out, "ws_proxy_headers_total{command=\"%s\"} %d\n", c == 0 ? "local" : "proxy", sum);
  }
  absl::StrAppendFormat(&out,
                        "# HELP ws_handshake_failures_total Connections that did not become WebSockets, by the "
                        "answer's reason.\n# TYPE ws_handshake_failures_total counter\n");
  for (std::size_t i = 0; i < s.counters.size(); ++i)
    for (std::size_t r = 0; r < static_cast<std::size_t>(Refusal::count); ++r)
      absl::StrAppendFormat(&out, "ws_handshake_failures_total{reason=\"%s\",worker=\"%d\"} %d\n",
                            refusal_name(static_cast<Refusal>(r)), i, s.counters[i]->refused(static_cast<Refusal>(r)));
  histogram(out, "ws_handshake_duration_seconds",
            "Time from accept (or from leaving the accept queue) to the 101 answer, all workers.",
            &WorkerCounters::handshake_ms);
  per_worker(out, s, "ws_accept_queue_depth", "gauge", "Connections waiting for an accept_rate token.",
             &WorkerCounters::accept_queue_depth);
  per_worker(out, s, "ws_accept_queued_total", "counter", "Connections that had to wait for an accept_rate token.",
             &WorkerCounters::queued_total);
  histogram(out, "ws_accept_queue_wait_seconds",
            "Time queued connections waited for an accept_rate token before their handshake started, all workers.",
            &WorkerCounters::queue_wait_ms);
  per_worker_sum("ws_handshake_timeouts_total", "Connections answered 408: no complete request within handshake_timeout.",
                 {Refusal::timeout});
  per_worker(out, s, "ws_pings_sent_total", "counter", "Heartbeat pings sent to silent connections.",
             &WorkerCounters::pings_sent_total);
  per_worker(out, s, "ws_pongs_received_total", "counter",
             "Reads made only of pongs, consumed on idle connections without attaching a session.",
             &WorkerCounters::pongs_received_total);
  per_worker(out, s, "ws_heartbeat_timeouts_total", "counter",
             "Connections closed because nothing arrived within pong_timeout of a ping.",
             &WorkerCounters::heartbeat_timeouts_total);
  per_worker(out, s, "ws_idle_closes_total", "counter", "Connections closed after idle_timeout without input.",
             &WorkerCounters::idle_closes_total);
  per_worker(out, s, "ws_bytes_buffered", "gauge", "Bytes buffered for this worker's connections: outbound, and messages being reassembled.",
             &WorkerCounters::buffered_bytes);
  per_worker(out, s, "ws_bytes_buffered_max_connection", "gauge",
             "High-water mark of one connection's buffered outbound bytes since start.",
             &WorkerCounters::buffered_max_connection_bytes);
  per_worker(out, s, "ws_messages_pending", "gauge", "Outbound messages queued and not yet sent.",
             &WorkerCounters::messages_pending);
  per_worker(out, s, "ws_backpressured_connections", "gauge", "Connections over frame_buffer_size right now.",
             &WorkerCounters::backpressured_connections);
  per_worker(out, s, "ws_backpressure_activations_total", "counter",
             "Times a connection went over frame_buffer_size and reading from it stopped.",
             &WorkerCounters::backpressure_activations_total);
  histogram(out, "ws_backpressure_duration_seconds", "How long backpressure episodes lasted, all workers.",
            &WorkerCounters::backpressure_ms);
  per_worker(out, s, "ws_slow_consumer_closes_total", "counter",
             "Connections closed as slow consumers (slow_consumer_policy close, or still over the threshold "
             "after backpressure_timeout).",
             &WorkerCounters::slow_consumer_closes_total);
  per_worker(out, s, "ws_slow_consumer_drops_total", "counter",
             "Outbound messages dropped for backpressured connections (slow_consumer_policy drop).",
             &WorkerCounters::slow_consumer_drops_total);
  per_worker(out, s, "ws_buffer_budget_hits_total", "counter",
             "Outbound messages that would have exceeded the worker's share of max_buffered_bytes.",
             &WorkerCounters::buffer_budget_hits_total);
  per_worker(out, s, "ws_segment_bytes", "gauge",
             "Memory of the segments held by connections (echo output, message reassembly); 0 when all are idle.",
             &WorkerCounters::segment_bytes);
  per_worker(out, s, "ws_segment_cache_bytes", "gauge",
             "Freed segments the pool keeps for reuse (at most 64 MiB or the worker's budget).",
             &WorkerCounters::segment_cache_bytes);
  per_worker(out, s, "ws_inbound_bytes", "gauge",
             "Of ws_bytes_buffered: bytes of messages being reassembled, charged to max_buffered_bytes.",
             &WorkerCounters::inbound_bytes);
  per_worker(out, s, "ws_inbound_refusals_total", "counter",
             "Messages refused with close 1013 because the worker's buffer budget had no room for them.",
             &WorkerCounters::inbound_refusals_total);
  per_worker(out, s, "ws_message_timeouts_total", "counter",
             "Connections closed (1008) mid-message for sending less than min_message_rate.",
             &WorkerCounters::message_timeouts_total);
  per_worker(out, s, "ws_segments_live", "gauge", "Segments held by connections (echo output, message reassembly).",
             &WorkerCounters::segments_live);
  per_worker(out, s, "ws_segment_allocations_total", "counter",
             "Segments allocated because the pool had none free; flat in steady state.",
             &WorkerCounters::segment_allocations_total);
  per_worker(out, s, "ws_protocol_closes_total", "counter",
             "Connections the server closed for a protocol violation (1002/1007/1009).",
             &WorkerCounters::protocol_closes_total);
  per_worker(out, s, "ws_messages_received_total", "counter", "Data messages received.",
             &WorkerCounters::messages_in_total);
  per_worker(out, s, "ws_accept_errors_total", "counter", "Accept completions that failed (table full included).",
             &WorkerCounters::accept_errors_total);
  // Pub/sub: totals per worker (never a label per channel: their number is
  // unbounded).
  per_worker(out, s, "ws_subscribers", "gauge", "Connections on the pub/sub endpoint.", &WorkerCounters::subscribers);
  per_worker(out, s, "ws_subscriptions", "gauge", "Channel subscriptions held by connections.",
             &WorkerCounters::subscriptions);
  per_worker(out, s, "ws_channels", "gauge", "Channels with at least one subscriber on the worker.",
             &WorkerCounters::channels);
  per_worker(out, s, "ws_pubsub_index_bytes", "gauge",
             "Memory of the subscription index and delivery queues' records.", &WorkerCounters::index_bytes);
  per_worker(out, s, "ws_subscribes_total", "counter", "Subscriptions made (at connect or by command).",
             &WorkerCounters::subscribes_total);
  per_worker(out, s, "ws_unsubscribes_total", "counter", "Subscriptions ended by command.",
             &WorkerCounters::unsubscribes_total);
  per_worker(out, s, "ws_command_errors_total", "counter",
             "Client commands answered with an error frame (malformed, unknown, forbidden, over a limit).",
             &WorkerCounters::command_errors_total);
  per_worker(out, s, "ws_acks_total", "counter", "Ack commands received.", &WorkerCounters::acks_total);
  per_worker(out, s, "ws_fanouts_total", "counter", "Publications fanned out by the worker (with recipients).",
             &WorkerCounters::fanouts_total);
  per_worker(out, s, "ws_deliveries_total", "counter", "Published messages queued to a recipient.",
             &WorkerCounters::deliveries_total);
  per_worker(out, s, "ws_delivery_drops_total", "counter",
             "Published messages not queued to a recipient: a slow consumer, or the buffered-bytes budget.",
             &WorkerCounters::delivery_drops_total);
  per_worker(out, s, "ws_mailbox_depth", "gauge", "Publications waiting in or taken from the mailbox, not yet fanned out.",
             &WorkerCounters::mailbox_depth);
  histogram(out, "ws_fanout_duration_seconds",
            "From publish to the last recipient's send queued, per worker and publication.",
            &WorkerCounters::fanout_ms);
  per_worker(out, s, "ws_deliveries_live", "gauge",
             "Delivery-queue entries in use (each worker's are sized at start-up from its buffer budget).",
             &WorkerCounters::deliveries_live);
  per_worker(out, s, "ws_deliveries_exhausted_total", "counter",
             "Deliveries and command answers not queued because every queue entry or message was in use.",
             &WorkerCounters::deliveries_exhausted_total);
  tls_metrics(out);
  // Completions with an errno no handler expects, by op and errno: only the
  // ones seen, so the family stays small.
  out += "# HELP ws_unexpected_errors_total Completions with an errno no handler expects (each is also logged).\n"
         "# TYPE ws_unexpected_errors_total counter\n";
  for (std::uint8_t op = 0; op < op_count_; ++op) {
    for (std::size_t e = 0; e <= WorkerCounters::errno_max; ++e) {
      std::uint64_t sum = 0;
      for (const auto& c : s.counters) sum += load(c->unexpected_errors[op][e]);
      if (sum > 0)
        absl::StrAppendFormat(&out, "ws_unexpected_errors_total{op=\"%s\",errno=\"%d\"} %d\n", op_name(op), e, sum);
    }
  }
  {
    const PublishCounters& p = s.publish;
    const auto one = [&](const char* name, const char* help, std::uint64_t v) {
      absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v);
    };
    one("ws_publishes_total", "Publications accepted by the publish API (channels and users).",
        load(p.publishes_total));
    one("ws_user_sends_total", "Of those, sends to a user.", load(p.user_sends_total));
    one("ws_publish_bytes_total", "Published body bytes.", load(p.body_bytes_total));
    one("ws_publish_recipients_total", "Recipients counted in publish answers.", load(p.recipients_total));
    out += "# HELP ws_publish_rejections_total Publish requests refused, by reason.\n"
           "# TYPE ws_publish_rejections_total counter\n";
    for (std::size_t r = 0; r < p.refused.size(); ++r)
      absl::StrAppendFormat(&out, "ws_publish_rejections_total{reason=\"%s\"} %d\n",
                            publish_refusal_name(static_cast<PublishRefusal>(r)), load(p.refused[r]));
    one("ws_publish_auth_failures_total",
        "Publish requests with a wrong or missing bearer token (answered 401, or 429 when throttled).",
        load(auth_failures_));
    one("ws_publish_auth_throttled_total",
        "Of those, answered 429 after a delay: their address had too many failures in the window.",
        load(auth_throttled_));
  }
  {
    // The Redis backplane (control/backplane.h).  Alert on
    // ws_backplane_enabled == 1 and ws_backplane_up == 0.
    const BackplaneCounters& b = s.backplane;
    const BackplaneState state = b.state.load();
    const auto gauge = [&](const char* name, const char* help, std::uint64_t v) {
      absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v);
    };
    const auto counter = [&](const char* name, const char* help, std::uint64_t v) {
      absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v);
    };
    gauge("ws_backplane_enabled", "1 when backplane is set: publishes travel between nodes through Redis.",
          state != BackplaneState::off ? 1 : 0);
    gauge("ws_backplane_up", "1 while the connection to the backplane's Redis is up (publishes answer 503 otherwise).",
          state == BackplaneState::up ? 1 : 0);
    gauge("ws_backplane_names", "Channels and users this node's clients hold: what it asks Redis for.", load(b.names));
    gauge("ws_backplane_subscriptions", "Names subscribed in Redis now, as Redis confirmed them.",
          load(b.subscriptions));
    gauge("ws_backplane_primaries", "Redis primaries this node is connected to (1 for one Redis, a cluster's primaries).",
          load(b.primaries));
    counter("ws_backplane_slots_moved_total",
            "Times the Redis Cluster said slots moved, each followed by learning its map again and resubscribing.",
            load(b.slots_moved_total));
    counter("ws_backplane_connects_total", "Connections made to the backplane's Redis (the first and every reconnection).",
            load(b.connects_total));
    counter("ws_backplane_connect_failures_total", "Attempts to reach the backplane's Redis that failed.",
            load(b.connect_failures_total));
    counter("ws_backplane_messages_total", "Messages from Redis posted to this node's workers.", load(b.messages_total));
    counter("ws_backplane_dropped_total",
            "Messages from Redis lost here: a worker's mailbox stayed full (mailbox_size) for 2 s.",
            load(b.dropped_total));
    counter("ws_backplane_mailbox_waits_total",
            "Milliseconds the backplane waited for a full worker mailbox (the workers deliver slower than messages "
            "arrive; Redis buffers the rest).",
            load(b.mailbox_waits_total));
    counter("ws_backplane_malformed_total", "Messages on ringgate's Redis channels not in ringgate's format.",
            load(b.malformed_total));
  }
  // The admin listener itself: how full it is and why it turned clients away.
  absl::StrAppendFormat(&out,
                        "# HELP ws_admin_connections Connections to the admin listener (of %d).\n"
                        "# TYPE ws_admin_connections gauge\nws_admin_connections %d\n"
                        "# HELP ws_admin_refusals_total Admin connections refused or closed by the listener's "
                        "limits, by reason.\n# TYPE ws_admin_refusals_total counter\n",
                        clients_max, load(connections_));
  for (std::size_t r = 0; r < refusals_.size(); ++r)
    absl::StrAppendFormat(&out, "ws_admin_refusals_total{reason=\"%s\"} %d\n",
                          admin_refusal_name(static_cast<AdminRefusal>(r)), load(refusals_[r]));
  // Budgets: used and limit side by side, so utilisation is one division.
  // Table slots are per worker; the rest are the process's.
  const std::vector<BudgetFigure> budgets = process_budgets(s);
  for (const bool used : {true, false}) {
    const char* family = used ? "ringgate_budget_used" : "ringgate_budget_limit";
    absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s gauge\n", family,
                          used ? "What a budget has in use." : "A budget's limit.", family);
    for (std::size_t i = 0; i < s.counters.size(); ++i)
      absl::StrAppendFormat(&out, "%s{budget=\"table_slots\",worker=\"%d\"} %d\n", family, i,
                            load(used ? s.counters[i]->live_slots : s.counters[i]->table_slots));
    for (const BudgetFigure& b : budgets)
      absl::StrAppendFormat(&out, "%s{budget=\"%s\"} %d\n", family, b.name, used ? b.used : b.limit);
  }
  return out;
}

std::string Admin::status_json() const {
  const Shared& s = shared_;
  const std::uint64_t open = s.open_connections();
  const std::uint64_t now = monotonic_ms();
  std::string out = absl::StrFormat(
      "{\"draining\":%s,\"leaving\":%s,\"open_connections\":%d,\"max_connections\":%d,\"utilisation\":%.4f,"
      "\"not_ready_percent\":%d,\"warn_percent\":%d,\"refuse_percent\":%d,\"budgets\":{",
      s.stopping.load() ? "true" : "false", s.leaving.load() ? "true" : "false", open, s.max_connections,
      s.max_connections ? static_cast<double>(open) / static_cast<double>(s.max_connections) : 0.0,
      s.config.not_ready_percent, s.config.warn_percent, s.config.kernel_refuse_percent);
  // Every budget with its use, limit and utilisation (0 when the limit is
  // unknown here).
  std::uint64_t slots_used = 0;
  std::uint64_t slots = 0;
  for (const auto& c : s.counters) {
    slots_used += load(c->live_slots);
    slots += load(c->table_slots);
  }
  bool first = true;
  const auto budget = [&](const char* name, std::uint64_t used, std::uint64_t limit) {
    absl::StrAppendFormat(&out, "%s\"%s\":{\"used\":%d,\"limit\":%d,\"utilisation\":%.4f}", first ? "" : ",", name,
                          used, limit, limit ? static_cast<double>(used) / static_cast<double>(limit) : 0.0);
    first = false;
  };
  budget("table_slots", slots_used, slots);
  for (const BudgetFigure& b : process_budgets(s)) budget(b.name, b.used, b.limit);
  absl::StrAppendFormat(&out,
                        "},\"per_ip_limit\":%d,\"admin\":{\"connections\":%d,\"committed\":%d,"
                        "\"clients_max\":%d,\"health_reserve\":%d,\"per_ip_limit\":%d,\"request_timeout_ms\":%d},",
                        s.config.per_ip_limit, load(connections_), load(committed_), clients_max, health_reserve,
                        limits_.per_ip_max, limits_.request_timeout_ms);
  if (s.tls) {
    std::uint64_t in_flight = 0, connections = 0, held = 0, buffers = 0;
    for (const auto& c : s.counters) {
      in_flight += load(c->tls.handshakes_in_flight);
      connections += load(c->tls.connections);
      held += load(c->tls.held_bytes);
      buffers += load(c->tls.record_buffers_in_use);
    }
    absl::StrAppendFormat(&out,
                          "\"tls\":{\"listen\":\"%s\",\"handshakes_in_flight\":%d,\"connections\":%d,"
                          "\"record_buffers_in_use\":%d,\"bytes_held\":%d,\"certificate_expiry_s\":%d},",
                          s.config.tls_listen, in_flight, connections, buffers, held,
                          s.tls_not_after_s.load() - static_cast<std::int64_t>(time(nullptr)));
  }
  out += "\"workers\":[";
  for (std::size_t i = 0; i < s.counters.size(); ++i) {
    const WorkerCounters& c = *s.counters[i];
    const std::uint64_t beat = load(c.loop_heartbeat_ms);
    absl::StrAppendFormat(&out,
                          "%s{\"worker\":%d,\"open_connections\":%d,\"table_slots_used\":%d,\"table_slots\":%d,"
                          "\"accepted_total\":%d,\"upgraded_total\":%d,\"handshake_failures_total\":%d,"
                          "\"accept_queue_depth\":%d,\"buffered_bytes\":%d,\"backpressured_connections\":%d,"
                          "\"subscribers\":%d,\"subscriptions\":%d,\"channels\":%d,\"mailbox_depth\":%d,"
                          "\"loop_heartbeat_age_ms\":%d}",
                          i ? "," : "", i, load(c.open_connections), load(c.live_slots), load(c.table_slots),
                          load(c.accepted_total), load(c.upgraded_total), c.refused_total(), load(c.accept_queue_depth),
                          load(c.buffered_bytes), load(c.backpressured_connections), load(c.subscribers),
                          load(c.subscriptions), load(c.channels), load(c.mailbox_depth), now > beat ? now - beat : 0);
  }
  out += "]";
  const BackplaneState state = s.backplane.state.load();
  absl::StrAppendFormat(&out,
                        ",\"backplane\":{\"state\":\"%s\",\"names\":%d,\"subscriptions\":%d,\"primaries\":%d}}\n",
                        state == BackplaneState::off ? "off" : state == BackplaneState::up ? "up" : "down",
                        load(s.backplane.names), load(s.backplane.subscriptions), load(s.backplane.primaries));
  return out;
}

}  // namespace rg::server
