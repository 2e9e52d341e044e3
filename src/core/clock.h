// Time, injected. wall_ns() is UTC nanoseconds since the epoch (for stored
// timestamps, segment names and rotation boundaries); mono_ns() only ever
// moves forward (for intervals, timeouts, batch age). SystemClock is
// thread-safe; FakeClock is for single-threaded tests that advance time
// instead of sleeping.
#pragma once

#include <cstdint>
#include <ctime>

namespace trawl {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual uint64_t wall_ns() const = 0;
  virtual uint64_t mono_ns() const = 0;
};

class SystemClock final : public Clock {
 public:
  uint64_t wall_ns() const override { return read(CLOCK_REALTIME); }
  uint64_t mono_ns() const override { return read(CLOCK_MONOTONIC); }
  static SystemClock& instance() {
    static SystemClock c;
    return c;
  }

 private:
  static uint64_t read(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  }
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(uint64_t wall_ns = 1'700'000'000'000'000'000ull) : wall_(wall_ns) {}
  uint64_t wall_ns() const override { return wall_; }
  uint64_t mono_ns() const override { return mono_; }
  void advance_ns(uint64_t d) {
    wall_ += d;
    mono_ += d;
  }

 private:
  uint64_t wall_;
  uint64_t mono_ = 1'000'000'000ull;
};

constexpr uint64_t kNsPerSec = 1'000'000'000ull;
constexpr uint64_t kNsPerMs = 1'000'000ull;

}  // namespace trawl
