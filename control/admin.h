// The admin/API listener: GET /healthz, /readyz, /metrics (Prometheus text
// format) and /status (JSON), for operators, load balancers and scrapers;
// POST /publish/{channel} and /users/{user}/send for publishers.
//
// It runs on its own thread: a poll(2) loop over non-blocking sockets, up
// to clients_max connections, HTTP/1.1 keep-alive.  It never touches the
// data path: what it reports comes from the workers' single-writer
// counters, read relaxed, and what it publishes goes through the workers'
// mailboxes (server/publisher.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "control/publisher.h"
#include "server/worker.h"

namespace rg::server {

struct AdminClient;

class Admin {
 public:
  explicit Admin(Shared& shared) : shared_(shared), publisher_(shared) {}
  static constexpr std::size_t clients_max = 256;
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
  void serve_requests(struct AdminClient& c);
  void bump_publish_refusal(PublishRefusal r);
  [[nodiscard]] std::string metrics() const;
  [[nodiscard]] std::string status_json() const;
  void histogram(std::string& out, const char* name, const char* help, LatencyHistogram WorkerCounters::*field) const;

  Shared& shared_;
  Publisher publisher_;
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
