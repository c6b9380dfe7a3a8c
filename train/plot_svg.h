// Training curves as a hand-written SVG (no plotting library): two panels side by side, loss (train
// and test) and top-1 accuracy (train and test) against the epoch, each with ticked and labelled
// axes, a light grid and a legend. Written beside metrics.jsonl after every epoch.
#pragma once
#include <string>
#include <vector>

#include "train/report.h"

namespace qslim::train {

// Tick values covering [lo, hi] at a "nice" step (1, 2 or 5 times a power of ten) with at most
// max_ticks ticks; the first tick is <= lo and the last >= hi. With integer_steps the step is >= 1.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 6, bool integer_steps = false);

std::string training_curves_svg(const std::vector<EpochReport>& history, const std::string& title);

// Writes the SVG to path + ".tmp" and renames it over `path`.
void write_training_curves_svg(const std::string& path, const std::vector<EpochReport>& history,
                               const std::string& title);

}  // namespace qslim::train
