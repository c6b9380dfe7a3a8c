#include "quant/pact_quanter.h"

#include <sstream>

#include "autograd/ops_arith.h"
#include "autograd/ops_reduce.h"
#include "core/factory.h"
#include "quant/fake_quant.h"

namespace qslim::quant {

namespace {
const QuantOptions& inner_options(const QuanterPtr& inner) {
  QSLIM_CHECK(inner != nullptr, "PactQuanter: the wrapped quanter is null");
  return inner->options();
}
}  // namespace

PactQuanter::PactQuanter(QuanterPtr inner, const PactOptions& options)
    : Quanter(inner_options(inner)), options_(options) {
  QSLIM_CHECK(std::isfinite(options.alpha) && options.alpha > 0, "PactQuanter: alpha must be positive, got ",
              options.alpha);
  QSLIM_CHECK(options.l2 >= 0, "PactQuanter: l2 must be >= 0, got ", options.l2);
  register_parameter("alpha", full({1}, options.alpha));
  register_module("quanter", std::move(inner));
}

Quanter& PactQuanter::inner() const {
  auto* q = dynamic_cast<Quanter*>(child_ptr("quanter").get());
  QSLIM_CHECK(q != nullptr, "PactQuanter: child 'quanter' is a ", child("quanter").type_name(), ", not a quanter");
  return *q;
}

Tensor PactQuanter::forward(const Tensor& x) {
  Tensor a = alpha();
  if (a.dtype() != x.dtype()) a = a.to(x.dtype());
  return inner().forward(pact_clip(x, a, options_.two_sided));
}

QuantParams PactQuanter::quant_params() const { return inner().quant_params(); }

double PactQuanter::threshold() const { return inner().threshold(); }

Tensor PactQuanter::l2_loss() const {
  Tensor a = alpha();
  return mul(sum(mul(a, a)), options_.l2);
}

std::string PactQuanter::extra_repr() const {
  std::ostringstream os;
  os << "alpha=" << alpha().item() << ", " << (options_.two_sided ? "two_sided" : "one_sided");
  if (options_.l2 > 0) os << ", l2=" << options_.l2;
  return os.str();
}

}  // namespace qslim::quant
