// The admin listener: /healthz, /readyz, /metrics (Prometheus text format)
// and /status (JSON), for operators, load balancers and scrapers.
//
// It runs on its own thread with plain blocking sockets and timeouts.  It
// serves a few requests a second and never touches the data path: everything
// it reports comes from the workers' single-writer counters, read relaxed.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "server/worker.h"

namespace rg::server {

class Admin {
 public:
  explicit Admin(Shared& shared) : shared_(shared) {}
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
  [[nodiscard]] std::string metrics() const;
  [[nodiscard]] std::string status_json() const;
  void histogram(std::string& out, const char* name, const char* help, LatencyHistogram WorkerCounters::*field) const;

  Shared& shared_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Parses "HOST:PORT" / "[V6]:PORT".
bool parse_host_port(const std::string& text, std::string& host, std::uint16_t& port);

}  // namespace rg::server
