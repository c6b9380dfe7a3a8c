// Runs shared/peer/bench_torch.py (PyTorch on the same models) so ratios are measured in one run.
#pragma once
#include <map>
#include <optional>
#include <string>

#include "tools/bench_models.h"

namespace qslim::tools {

struct TorchReference {
  std::string version;
  std::map<std::string, ModelFigure> models;
};

// The peer directory: $QSLIM_PEER_DIR, else ../shared/peer next to the source tree; "" if absent.
std::string find_peer_dir();
// nullopt (with `why` set) when python3-torch or the script is missing or the run fails.
std::optional<TorchReference> run_torch_reference(const std::string& peer_dir, int threads, int steps,
                                                  std::string& why);

}  // namespace qslim::tools
