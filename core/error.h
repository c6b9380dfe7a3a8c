// qslim::Error and the QSLIM_CHECK macro: every failure names the op and what was expected vs got.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace qslim {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace qslim

// QSLIM_CHECK(cond, "op: ", a, " vs ", b) throws qslim::Error with the concatenated message.
#define QSLIM_CHECK(cond, ...)                                   \
  do {                                                           \
    if (!(cond)) throw ::qslim::Error(::qslim::detail::concat(__VA_ARGS__)); \
  } while (0)

#define QSLIM_FAIL(...) throw ::qslim::Error(::qslim::detail::concat(__VA_ARGS__))
