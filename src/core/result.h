// Result<T>: a value or an Error, for failures the environment causes (disk,
// peers, TLS, files). Errors carry a message that grows context at each hop:
//   "rotating segment: fsync /data/x.pcapng: Input/output error".
// Not thread-safe; values move freely between threads.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace trawl {

class Error {
 public:
  explicit Error(std::string message) : message_(std::move(message)) {}

  // "what: strerror(err)".
  static Error from_errno(std::string_view what, int err = errno) {
    std::string m(what);
    m += ": ";
    m += std::strerror(err);
    Error e(std::move(m));
    e.errno_ = err;
    return e;
  }

  // Prefixes "ctx: " to the message.
  Error with_context(std::string_view ctx) const& {
    Error e(*this);
    e.message_.insert(0, std::string(ctx) + ": ");
    return e;
  }
  Error with_context(std::string_view ctx) && {
    message_.insert(0, std::string(ctx) + ": ");
    return std::move(*this);
  }

  const std::string& message() const { return message_; }
  int sys_errno() const { return errno_; }  // 0 when not from a syscall

 private:
  std::string message_;
  int errno_ = 0;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return err_; }
  Error&& error() && { return std::move(err_); }

 private:
  Error err_{""};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace trawl

// Propagates an error with context: TRAWL_TRY(expr, "what we were doing").
#define TRAWL_TRY(expr, ctx)                                       \
  do {                                                             \
    auto trawl_try_r_ = (expr);                                    \
    if (!trawl_try_r_.ok())                                        \
      return std::move(trawl_try_r_).error().with_context(ctx);    \
  } while (0)
