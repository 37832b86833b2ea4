// A log-linear latency histogram in fixed memory (HdrHistogram's layout).
//
// Values are microseconds.  Below 128 every value has its own bucket; above,
// each power of two is split into 64 linear sub-buckets, so a reported value
// is within 1/64 (1.6%) of the recorded one.  The range ends at 2^32 - 1 us
// (71 minutes), beyond any handshake or echo a bounded run can see; larger
// values are clamped (and counted in `clamped()`).  The whole state is 1728
// counters (13.5 KiB), so one per thread per measured figure is cheap, and two
// merge by adding counters.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace rg::load {

class Histogram {
 public:
  static constexpr std::uint32_t sub_bucket_bits = 6;  // 64 sub-buckets per power of two
  static constexpr std::uint64_t linear_max = std::uint64_t{2} << sub_bucket_bits;  // 128: exact below
  static constexpr std::uint64_t value_max_us = (std::uint64_t{1} << 32) - 1;
  // Powers of two above the linear range: 2^7 .. 2^31.
  static constexpr std::size_t bucket_count = linear_max + (32 - sub_bucket_bits - 1) * (linear_max / 2);
  static_assert(bucket_count == 1728, "13.5 KiB of counters per histogram");

  void record(std::uint64_t value_us) noexcept {
    if (value_us > value_max_us) {
      value_us = value_max_us;
      ++clamped_;
    }
    ++counts_[index_of(value_us)];
    ++count_;
    sum_ += value_us;
    min_ = std::min(min_, value_us);
    max_ = std::max(max_, value_us);
  }

  void merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    clamped_ += other.clamped_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  void reset() noexcept { *this = Histogram{}; }

  // The smallest value v such that at least `percent`% of the recorded values
  // are <= v, reported as the top of v's bucket (never above max()).  0 when
  // nothing was recorded.
  //
  // `percent` is taken to a tenth of a percent (per mille) and the rank is
  // computed in integers: with floating point, 99.9 / 100 * 1000 comes out a
  // hair above 999 and ceil() then picked the 1000th value.
  [[nodiscard]] std::uint64_t percentile(double percent) const noexcept {
    percent = std::clamp(percent, 0.0, 100.0);
    return percentile_permille(static_cast<std::uint32_t>(std::llround(percent * 10.0)));
  }

  // As percentile(), for `permille` / 1000 of the values: the value of rank
  // ceil(count * permille / 1000), clamped to [1, count].
  [[nodiscard]] std::uint64_t percentile_permille(std::uint32_t permille) const noexcept {
    if (count_ == 0) return 0;
    permille = std::min<std::uint32_t>(permille, 1000);
    std::uint64_t rank = rank_for(count_, permille);
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(highest_in_bucket(i), min_, max_);
    }
    return max_;
  }

  // ceil(n * permille / 1000) exactly and without overflow: with n = 1000q + r
  // it is q * permille + ceil(r * permille / 1000).
  [[nodiscard]] static constexpr std::uint64_t rank_for(std::uint64_t n, std::uint32_t permille) noexcept {
    return (n / 1000) * permille + ((n % 1000) * permille + 999) / 1000;
  }

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return count_ ? max_ : 0; }
  [[nodiscard]] std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  [[nodiscard]] std::uint64_t clamped() const noexcept { return clamped_; }
  [[nodiscard]] double mean() const noexcept {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
  }

  [[nodiscard]] static constexpr std::size_t index_of(std::uint64_t v) noexcept {
    if (v < linear_max) return static_cast<std::size_t>(v);
    const std::uint32_t msb = 63 - static_cast<std::uint32_t>(std::countl_zero(v));  // 7..31
    const std::uint32_t shift = msb - sub_bucket_bits;                               // 1..25
    const std::uint64_t sub = v >> shift;                                            // 64..127
    return static_cast<std::size_t>(linear_max + (shift - 1) * (linear_max / 2) + (sub - linear_max / 2));
  }
  [[nodiscard]] static constexpr std::uint64_t lowest_in_bucket(std::size_t i) noexcept {
    if (i < linear_max) return i;
    const std::uint64_t shift = (i - linear_max) / (linear_max / 2) + 1;
    const std::uint64_t sub = (i - linear_max) % (linear_max / 2) + linear_max / 2;
    return sub << shift;
  }
  [[nodiscard]] static constexpr std::uint64_t highest_in_bucket(std::size_t i) noexcept {
    if (i < linear_max) return i;
    const std::uint64_t shift = (i - linear_max) / (linear_max / 2) + 1;
    const std::uint64_t sub = (i - linear_max) % (linear_max / 2) + linear_max / 2;
    return ((sub + 1) << shift) - 1;
  }

 private:
  std::array<std::uint64_t, bucket_count> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t clamped_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

static_assert(Histogram::index_of(Histogram::value_max_us) == Histogram::bucket_count - 1);
static_assert(Histogram::rank_for(1000, 999) == 999 && Histogram::rank_for(1001, 999) == 1000 &&
              Histogram::rank_for(10, 500) == 5 && Histogram::rank_for(UINT64_MAX, 1000) == UINT64_MAX);
static_assert(Histogram::index_of(127) == 127 && Histogram::index_of(128) == 128);
static_assert(Histogram::lowest_in_bucket(Histogram::index_of(1000)) <= 1000 &&
              Histogram::highest_in_bucket(Histogram::index_of(1000)) >= 1000);

}  // namespace rg::load
