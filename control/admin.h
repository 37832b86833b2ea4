// The admin/API listener: GET /healthz, /readyz, /metrics (Prometheus text
// format) and /status (JSON), for operators, load balancers and scrapers;
// POST /publish/{channel} and /users/{user}/send for publishers.
//
// It runs on its own thread: a poll(2) loop over non-blocking sockets, up
// to clients_max connections, HTTP/1.1 keep-alive, one request at a time
// per connection.  Deadlines, a per-address cap, a reserve for health
// checks and eviction keep it answerable (control/admin_clients.h); wrong
// bearer tokens are throttled per address (control/auth_throttle.h).  It
// never touches the data path: what it reports comes from the workers'
// single-writer counters, read relaxed, and what it publishes goes through
// the workers' mailboxes (control/publisher.h).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "base/counter.h"
#include "control/admin_clients.h"
#include "control/auth_throttle.h"
#include "control/publisher.h"
#include "server/worker.h"

namespace rg::server {

// Why the admin listener closed or refused a connection, for
// ws_admin_refusals_total{reason}.
enum class AdminRefusal : std::uint8_t { per_ip, busy, evicted, timeout, count };

class Admin {
 public:
  explicit Admin(Shared& shared);
  static constexpr std::uint32_t clients_max = 256;
  // Slots only health checks may hold (docs/operations.md): a sixteenth.
  static constexpr std::uint32_t health_reserve = 16;
  Admin(const Admin&) = delete;
  Admin& operator=(const Admin&) = delete;
  ~Admin() { stop(); }

  // Binds `host:port` and starts serving.  False with `error` on failure.
  bool start(const std::string& host, std::uint16_t port, std::string& error);
  void stop();
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  // The bodies, exposed for tests and for the status line.
  struct Reply {
    int status;
    std::string content_type;
    std::string body;
  };
  [[nodiscard]] Reply handle(const std::string& path) const;

 private:
  void serve();
  void accept_clients(std::uint64_t now);
  // Serves the connection's current request if its head (and body) are here.
  void serve_request(AdminClient& c, std::uint64_t now);
  // The answer is sent: close, or wait for (or start on) the next request.
  void after_answer(AdminClient& c, std::uint64_t now);
  void answer(AdminClient& c, std::uint64_t now, int status, std::string_view content_type, std::string_view body,
              bool keep_alive, std::string_view extra_headers = {});
  void bump_publish_refusal(PublishRefusal r);
  [[nodiscard]] std::string metrics() const;
  [[nodiscard]] std::string status_json() const;
  void histogram(std::string& out, const char* name, const char* help, LatencyHistogram WorkerCounters::*field) const;
  void tls_metrics(std::string& out) const;

  Shared& shared_;
  Publisher publisher_;
  AdminLimits limits_;
  AuthThrottle throttle_;
  std::vector<AdminClient> clients_;  // the admin thread's alone
  // The listener's own figures (one writer: the admin thread).
  base::Counter connections_;
  base::Counter committed_;  // of which holding a request (control/admin_clients.h)
  std::array<base::Counter, static_cast<std::size_t>(AdminRefusal::count)> refusals_{};
  base::Counter auth_failures_;   // publish requests with a wrong or missing token
  base::Counter auth_throttled_;  // of which answered 429 (the address over AuthThrottle::failures_max)
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Parses "HOST:PORT" / "[V6]:PORT".
bool parse_host_port(const std::string& text, std::string& host, std::uint16_t& port);
// True for a numeric loopback address: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104.
[[nodiscard]] bool loopback_host(const std::string& host);

}  // namespace rg::server
