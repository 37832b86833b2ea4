// fanout mode's publisher: one thread, one keep-alive HTTP/1.1 connection
// to each publish API (publishes go to them in turn), plain blocking
// sockets.  It publishes K messages per
// channel, round robin over the channels, paced at --rate, one request in
// flight: the next publish of a channel therefore always leaves after the
// answer to the previous one, which is what lets a subscriber tell a gap
// (lost) from a publish that failed (fanout::arrive).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/load/fanout.h"
#include "tools/load/histogram.h"
#include "tools/load/plan.h"

namespace rg::load {

// Why publishes failed, and what the ones that went through cost.
struct PublishResult {
  static constexpr std::size_t status_max = 600;
  std::array<std::uint64_t, status_max> failed_by_status{};  // answered, not 200
  std::uint64_t connect_errors = 0;  // no connection to the API
  std::uint64_t io_errors = 0;       // sent or not, no complete answer (reset, EOF, 5 s without progress)
  std::uint64_t bad_answers = 0;     // not HTTP, no Content-Length, or a 200 without "recipients"
  std::uint64_t recipients = 0;      // sum of "recipients" over the 200s (and 202s)
  // 202: accepted, but some server worker had not counted its recipients
  // in time ("recipients" is a lower bound); the message is still delivered.
  std::uint64_t late = 0;
  Histogram rtt_us;                  // request sent -> answer complete
  std::uint64_t first_send_ns = 0;
  std::uint64_t last_answer_ns = 0;
  bool gave_up = false;              // the API refused connections too often in a row
  // Publishes per second from the first send to the last answer.
  [[nodiscard]] double rate_per_s(std::uint64_t answered) const noexcept;
};

// Read by the main thread while the publisher runs (one writer each).
struct PublishLive {
  std::atomic<std::uint64_t> answered{0};  // ok + failed
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> recipients{0};
  std::atomic<std::uint64_t> expected{0};  // sum of the tracked subscribers of each ok publish's channel
  std::atomic<bool> done{false};
};

class Publisher {
 public:
  // `api` from parse_api.  The board must outlive the publisher.
  Publisher(const Options& options, const std::vector<Target>& apis, fanout::Board& board, PublishLive& live);
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;
  ~Publisher();

  // Publishes every message, or stops at `deadline_ns` (CLOCK_MONOTONIC) or
  // when `stop` is set; what was not sent stays pending on the board.
  void run(std::uint64_t deadline_ns, const std::atomic<bool>& stop);
  [[nodiscard]] const PublishResult& result() const noexcept { return result_; }

 private:
  enum class Sent : std::uint8_t { ok, failed, no_connection };
  Sent publish(std::uint32_t channel, std::uint64_t seq);
  bool connect_api();
  void disconnect();
  void disconnect_all();
  // Reads one whole answer into in_; its length, or 0 (io or malformed).
  std::size_t read_answer(fanout::Answer& answer);

  const Options& o_;
  const std::vector<Target>& apis_;
  std::size_t api_ = 0;      // the API of the publish being made
  std::vector<int> fds_;     // one keep-alive connection per API, -1 when none
  fanout::Board& board_;
  PublishLive& live_;
  PublishResult result_;
  std::vector<char> body_;  // one body: publish_body_bytes_max, or --size when larger
  std::vector<char> out_;  // one request, sized at construction
  std::vector<char> in_;   // one answer: head + body limits
  std::size_t in_len_ = 0;
  std::array<char, 160> channel_{};  // the channel name being published to
};

}  // namespace rg::load
