// Seeded random numbers. One global generator (manual_seed) plus explicit generators for
// components that need their own reproducible stream (data shuffling, dropout, augmentation).
#pragma once
#include <cstdint>
#include <random>
#include <string>

namespace qslim {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : engine_(seed) {}
  void seed(uint64_t s) {
    engine_.seed(s);
    has_spare_ = false;  // a cached normal from the old stream must not leak into the new one
  }
  uint64_t next_u64() { return engine_(); }
  double uniform() { return (engine_() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal();
  // Whole state as text, for checkpoints that must resume bit for bit.
  std::string state() const;
  void set_state(const std::string& s);

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

Generator& global_generator();
void manual_seed(uint64_t seed);

}  // namespace qslim
