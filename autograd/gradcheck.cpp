#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/factory.h"
#include "core/kernels.h"

namespace qslim {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
                          const GradcheckOptions& opt) {
  GradcheckResult res;
  auto fail = [&](const std::string& m) {
    res.ok = false;
    res.message = m;
    return res;
  };
  for (Tensor& in : inputs) {
    if (!in.defined()) continue;
    if (in.requires_grad()) QSLIM_CHECK(in.dtype() == DType::F64, "gradcheck: inputs must be f64");
    in.set_grad(Tensor());
  }
  Tensor out = f(inputs);
  if (!out.requires_grad()) return fail("output does not require grad");
  Generator gen(opt.seed);
  Tensor g = randn(out.shape(), DType::F64, &gen);
  out.backward(g);
  std::vector<Tensor> analytical;
  for (Tensor& in : inputs) analytical.push_back(in.defined() && in.requires_grad() && in.grad().defined() ? in.grad().clone() : Tensor());

  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& in = inputs[k];
    if (!in.defined() || !in.requires_grad()) continue;
    if (!analytical[k].defined()) analytical[k] = zeros(in.shape(), DType::F64);
    Tensor a = analytical[k].contiguous();
    QSLIM_CHECK(in.is_contiguous(), "gradcheck: inputs must be contiguous");
    double* x = in.data<double>();
    const double* ga = a.data<double>();
    for (int64_t i = 0; i < in.numel(); ++i) {
      double orig = x[i];
      x[i] = orig + opt.eps;
      double fp = kernels::dot(f(inputs), g);
      x[i] = orig - opt.eps;
      double fm = kernels::dot(f(inputs), g);
      x[i] = orig;
      double num = (fp - fm) / (2 * opt.eps);
      if (std::abs(num - ga[i]) > opt.atol + opt.rtol * std::abs(num)) {
        std::ostringstream os;
        os << "input " << k << " element " << i << ": analytical " << ga[i] << " vs numerical " << num;
        return fail(os.str());
      }
    }
  }
  if (opt.check_accumulation) {
    GradMode::set_enabled(true);
    Tensor out2 = f(inputs);
    out2.backward(g);
    GradMode::set_enabled(false);
    for (size_t k = 0; k < inputs.size(); ++k) {
      if (!inputs[k].defined() || !inputs[k].requires_grad() || !inputs[k].grad().defined()) continue;
      Tensor twice = kernels::mul_scalar(analytical[k], 2.0);
      auto got = inputs[k].grad().to_vector<double>(), want = twice.to_vector<double>();
      for (size_t i = 0; i < got.size(); ++i)
        if (std::abs(got[i] - want[i]) > 1e-9 + 1e-9 * std::abs(want[i])) {
          std::ostringstream os;
          os << "input " << k << " element " << i << ": second backward did not accumulate (" << got[i] << " vs "
             << want[i] << ")";
          return fail(os.str());
        }
    }
  }
  return res;
}

}  // namespace qslim
