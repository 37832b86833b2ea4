#include "tools/load/publisher.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "tools/load/engine.h"

namespace rg::load {

namespace {

// A send or recv making no progress this long ends the connection: the
// server answers a publish in microseconds, so 5 s means it is gone.
constexpr int api_io_timeout_ms = 5'000;
// Connection attempts refused in a row before the publisher gives up: the
// API is not there, and the rest of the plan would only fail the same way.
constexpr std::uint32_t connect_failures_max = 10;
// Longest sleep between looks at the stop flag while pacing.
constexpr std::uint64_t pacing_sleep_ns_max = 50'000'000;
// Fixed text of a request: method, version, header names and CRLFs.
constexpr std::size_t request_text_bytes = 160;

}  // namespace

double PublishResult::rate_per_s(std::uint64_t answered) const noexcept {
  if (answered == 0 || last_answer_ns <= first_send_ns) return 0;
  return static_cast<double>(answered) / (static_cast<double>(last_answer_ns - first_send_ns) / 1e9);
}

Publisher::Publisher(const Options& options, const std::vector<Target>& apis, fanout::Board& board, PublishLive& live)
    : o_(options), apis_(apis), fds_(apis.size(), -1), board_(board), live_(live) {
  body_.resize(std::max<std::size_t>(fanout::publish_body_bytes_max, o_.size_bytes));
  std::size_t api_text = 0;
  for (const Target& a : apis_) api_text = std::max(api_text, a.path.size() + a.host_header.size());
  out_.resize(request_text_bytes + api_text + channel_.size() + o_.api_token.size() + body_.size());
  in_.resize(fanout::answer_head_bytes_max + fanout::answer_body_bytes_max);
}

Publisher::~Publisher() { disconnect_all(); }

void Publisher::run(std::uint64_t deadline_ns, const std::atomic<bool>& stop) {
  const std::uint64_t total = std::uint64_t{o_.channels} * o_.messages;
  const double interval_ns = o_.publish_rate_per_s > 0 ? 1e9 / o_.publish_rate_per_s : 0;
  const std::uint64_t start_ns = monotonic_ns();
  std::uint32_t refused_in_row = 0;
  for (std::uint64_t i = 0; i < total && !stop.load(std::memory_order_relaxed); ++i) {
    // Publish i is due at start + i / rate; a late one goes at once (one
    // request in flight: falling behind never turns into a burst).
    const std::uint64_t due_ns = start_ns + static_cast<std::uint64_t>(static_cast<double>(i) * interval_ns);
    for (std::uint64_t now = monotonic_ns(); now < due_ns && now < deadline_ns && !stop.load(std::memory_order_relaxed);
         now = monotonic_ns())
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min(due_ns - now, pacing_sleep_ns_max)));
    if (monotonic_ns() >= deadline_ns || stop.load(std::memory_order_relaxed)) break;
    const auto channel = static_cast<std::uint32_t>(i % o_.channels);
    api_ = static_cast<std::size_t>(i % apis_.size());
    if (publish(channel, i / o_.channels) != Sent::no_connection) {
      refused_in_row = 0;
    } else if (++refused_in_row >= connect_failures_max) {
      result_.gave_up = true;
      break;
    }
  }
  disconnect_all();
  live_.done.store(true, std::memory_order_release);
}

Publisher::Sent Publisher::publish(std::uint32_t channel, std::uint64_t seq) {
  const std::uint64_t p = board_.index(channel, seq);
  const auto fail = [&](Sent how) {
    board_.set_state(p, fanout::PublishState::failed);
    live_.answered.fetch_add(1, std::memory_order_relaxed);
    return how;
  };
  if (fds_[api_] < 0 && !connect_api()) {
    ++result_.connect_errors;
    return fail(Sent::no_connection);
  }
  const std::size_t name_len = fanout::channel_name(channel_, o_.channel_prefix, channel);
  const std::uint64_t sent_ns = monotonic_ns();
  std::size_t body_len =
      fanout::publish_body(std::span<char, fanout::publish_body_bytes_max>(body_.data(), fanout::publish_body_bytes_max),
                           seq, sent_ns);
  body_len = fanout::pad_body(body_, body_len, o_.size_bytes);
  const Target& api = apis_[api_];
  const std::size_t n = fanout::build_publish_request(out_, api.host_header, api.path, {channel_.data(), name_len},
                                                      o_.api_token, {body_.data(), body_len});
  assert(n > 0 && name_len > 0);  // sized at construction
  if (result_.first_send_ns == 0) result_.first_send_ns = sent_ns;
  for (std::size_t done = 0; done < n;) {
    const ssize_t w = ::send(fds_[api_], out_.data() + done, n - done, MSG_NOSIGNAL);
    if (w <= 0) {
      ++result_.io_errors;
      disconnect();
      return fail(Sent::failed);
    }
    done += static_cast<std::size_t>(w);
  }
  fanout::Answer answer;
  const std::size_t answer_bytes = read_answer(answer);
  const std::uint64_t answered_ns = monotonic_ns();
  if (answer_bytes == 0) {
    // read_answer counted it (io or bad answer) and closed the connection.
    return fail(Sent::failed);
  }
  result_.last_answer_ns = answered_ns;
  result_.rtt_us.record((answered_ns - sent_ns) / 1000);
  const std::string_view body_text(in_.data() + answer.header_bytes, answer.body_bytes);
  // Answers are one at a time: bytes beyond this one belong to nothing.
  if (answer.close || in_len_ != answer_bytes) disconnect();
  in_len_ = 0;
  if (answer.code == 202) ++result_.late;
  if (answer.code != 200 && answer.code != 202) {
    ++result_.failed_by_status[std::min<std::size_t>(answer.code, PublishResult::status_max - 1)];
    return fail(Sent::failed);
  }
  // Through a backplane the answer names the nodes that hold subscribers
  // ("nodes"); each node counts its own recipients, so there is no total.
  std::uint64_t recipients = 0, nodes = 0;
  if (!fanout::read_recipients(body_text, recipients) && !fanout::read_nodes(body_text, nodes)) {
    ++result_.bad_answers;
    return fail(Sent::failed);
  }
  result_.recipients += recipients;
  board_.set_state(p, fanout::PublishState::ok);
  live_.recipients.fetch_add(recipients, std::memory_order_relaxed);
  live_.expected.fetch_add(board_.subscribers(channel), std::memory_order_relaxed);
  live_.ok.fetch_add(1, std::memory_order_relaxed);
  live_.answered.fetch_add(1, std::memory_order_relaxed);
  return Sent::ok;
}

std::size_t Publisher::read_answer(fanout::Answer& answer) {
  in_len_ = 0;
  // Bounded: each turn adds at least one byte to a buffer of fixed size, or
  // ends; a silent server ends it after api_io_timeout_ms.
  for (;;) {
    answer = fanout::parse_answer({in_.data(), in_len_});
    if (answer.status == fanout::AnswerStatus::malformed) {
      ++result_.bad_answers;
      disconnect();
      return 0;
    }
    if (answer.status == fanout::AnswerStatus::complete && in_len_ >= answer.total_bytes()) return answer.total_bytes();
    if (in_len_ == in_.size()) {
      ++result_.bad_answers;  // cannot happen within the parser's limits; never loop on a full buffer
      disconnect();
      return 0;
    }
    const ssize_t r = ::recv(fds_[api_], in_.data() + in_len_, in_.size() - in_len_, 0);
    if (r <= 0) {
      ++result_.io_errors;
      disconnect();
      return 0;
    }
    in_len_ += static_cast<std::size_t>(r);
  }
}

bool Publisher::connect_api() {
  const Target& api = apis_[api_];
  const int fd = ::socket(api.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int one = 1;
  const timeval timeout{.tv_sec = api_io_timeout_ms / 1000, .tv_usec = (api_io_timeout_ms % 1000) * 1000};
  // SO_SNDTIMEO bounds connect() too.
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) != 0 ||
      ::connect(fd, reinterpret_cast<const sockaddr*>(&api.addr), api.addr_len) != 0) {
    ::close(fd);
    return false;
  }
  fds_[api_] = fd;
  return true;
}

void Publisher::disconnect() {
  if (fds_[api_] >= 0) ::close(fds_[api_]);
  fds_[api_] = -1;
}

void Publisher::disconnect_all() {
  for (int& fd : fds_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

}  // namespace rg::load
