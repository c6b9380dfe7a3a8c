#include "tools/progress.h"

#include <unistd.h>

#include <cstdio>

namespace qslim::tools {

Progress::Progress() : tty_(isatty(fileno(stdout))), last_(std::chrono::steady_clock::now()) {}

void Progress::update(const std::string& prefix, int64_t done, int64_t total, const std::string& suffix) {
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    constexpr int kWidth = 30;
    int filled = total > 0 ? static_cast<int>(kWidth * done / total) : 0;
    std::string bar(filled, '=');
    if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
    std::printf("\r%s [%s] %lld/%lld %s\033[K", prefix.c_str(), bar.c_str(), static_cast<long long>(done),
                static_cast<long long>(total), suffix.c_str());
    std::fflush(stdout);
    drawn_ = true;
    return;
  }
  // Not a terminal (CI, pipes): a plain line every 25 %.
  int64_t pct = total > 0 ? 100 * done / total : 100;
  if (pct / 25 == last_plain_pct_ / 25 && last_plain_pct_ >= 0) return;
  last_plain_pct_ = pct;
  if (pct == 100) return;
  std::printf("%s %lld/%lld %s\n", prefix.c_str(), static_cast<long long>(done), static_cast<long long>(total),
              suffix.c_str());
  std::fflush(stdout);
}

void Progress::finish() {
  if (tty_ && drawn_) std::printf("\r\033[K");
  drawn_ = false;
  last_plain_pct_ = -1;
  std::fflush(stdout);
}

std::string format_duration(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) % 3600) / 60);
  return buf;
}

}  // namespace qslim::tools
