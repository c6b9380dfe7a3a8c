#include "quant/quanter.h"

#include <sstream>

#include "core/factory.h"
#include "quant/fake_quant.h"

namespace qslim::quant {

const char* quant_role_name(QuantRole r) { return r == QuantRole::Weight ? "weight" : "activation"; }

GridKind QuantOptions::resolved_grid_kind() const {
  if (grid) return *grid;
  return role == QuantRole::Weight ? GridKind::Narrow : GridKind::Signed;
}

QuantGrid QuantOptions::resolved_grid() const {
  check_bits(bits, std::string("quanter (") + quant_role_name(role) + ")");
  return QuantGrid(bits, resolved_grid_kind());
}

Quanter::Quanter(const QuantOptions& options) : options_(options), grid_(options.resolved_grid()) {}

double Quanter::threshold() const {
  double t = 0;
  for (double s : quant_params().scales()) t = std::max(t, scale_to_threshold(s, grid_));
  return t;
}

std::string Quanter::extra_repr() const {
  std::ostringstream os;
  os << quant_role_name(options_.role) << ", bits=" << grid_.bits() << ", grid=" << grid_kind_name(grid_.kind())
     << ", rounding=" << rounding_name(options_.rounding) << ", ste=" << ste_mode_name(options_.ste);
  return os.str();
}

Tensor Quanter::fake_quant(const Tensor& x, const Tensor& scale, int64_t axis) const {
  return fake_quantize(x, scale, Tensor(), axis, grid_, options_.rounding, options_.ste);
}

QuantParams Quanter::symmetric_params(const Tensor& scale, int64_t axis) const {
  const std::vector<double> s = scale.to_vector<double>();
  for (double v : s)
    QSLIM_CHECK(v > 0, type_name(),
                " quanter: no statistics yet (step is 0); run a forward pass (training "
                "batches for statistics-based quanters) or load a checkpoint before reading quant_params");
  return per_channel_params(s, axis, grid_, options_.rounding);
}

}  // namespace qslim::quant
