// One-line progress display: redrawn in place on a terminal, plain occasional lines otherwise.
#pragma once
#include <chrono>
#include <string>

namespace qslim::tools {

class Progress {
 public:
  Progress();
  // Shows "prefix [=====>    ] done/total suffix".
  void update(const std::string& prefix, int64_t done, int64_t total, const std::string& suffix);
  void finish();  // ends the line on a terminal
  bool is_tty() const { return tty_; }

 private:
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_;
  int64_t last_plain_pct_ = -1;
};

std::string format_duration(double seconds);  // "1m05s"

}  // namespace qslim::tools
