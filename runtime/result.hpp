// result<T>: a value or an error message. Runtime functions return it instead of throwing.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace troupe {

// An error says what went wrong in words a user can act on: the file, the field or
// tensor, and what was expected.
struct error {
  std::string message;
};

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit on purpose
  result(error e) : v_(std::in_place_index<1>, std::move(e)) {}      // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const error& err() const { assert(!ok()); return std::get<1>(v_); }
  const std::string& message() const { return err().message; }

 private:
  std::variant<T, error> v_;
};

// status: success or an error, for functions with nothing else to return.
class [[nodiscard]] status {
 public:
  status() = default;
  status(error e) : err_(std::move(e)), failed_(true) {}  // NOLINT: implicit on purpose
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const error& err() const { return err_; }
  const std::string& message() const { return err_.message; }

 private:
  error err_;
  bool failed_ = false;
};

inline error make_error(std::string message) { return error{std::move(message)}; }

}  // namespace troupe

// TROUPE_TRY(var, expr): evaluate a result-returning expr; on error return it from the
// enclosing function (which must return a result or status), else bind its value to var.
#define TROUPE_CONCAT_INNER(a, b) a##b
#define TROUPE_CONCAT(a, b) TROUPE_CONCAT_INNER(a, b)
#define TROUPE_TRY(var, expr)                                        \
  auto TROUPE_CONCAT(troupe_try_, __LINE__) = (expr);                \
  if (!TROUPE_CONCAT(troupe_try_, __LINE__).ok())                    \
    return TROUPE_CONCAT(troupe_try_, __LINE__).err();               \
  var = std::move(TROUPE_CONCAT(troupe_try_, __LINE__)).value()
#define TROUPE_CHECK(expr)                                           \
  do {                                                               \
    auto troupe_check_ = (expr);                                     \
    if (!troupe_check_.ok()) return troupe_check_.err();             \
  } while (0)
