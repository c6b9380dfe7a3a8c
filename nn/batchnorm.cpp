#include "nn/batchnorm.h"

#include <sstream>

#include "autograd/ops_norm.h"
#include "core/factory.h"

namespace qslim::nn {

BatchNormBase::BatchNormBase(int64_t num_features, double eps, double momentum, bool affine,
                             bool track_running_stats)
    : num_features_(num_features), eps_(eps), momentum_(momentum), affine_(affine), track_(track_running_stats) {
  QSLIM_CHECK(num_features > 0, "BatchNorm: num_features must be positive, got ", num_features);
  QSLIM_CHECK(eps > 0, "BatchNorm: eps must be positive, got ", eps);
  QSLIM_CHECK(momentum >= 0 && momentum <= 1, "BatchNorm: momentum must be in [0, 1], got ", momentum);
  if (affine) {
    register_parameter("weight", ones({num_features}));
    register_parameter("bias", zeros({num_features}));
  }
  if (track_running_stats) {
    register_buffer("running_mean", zeros({num_features}));
    register_buffer("running_var", ones({num_features}));
    register_buffer("num_batches_tracked", zeros({}, DType::I64));
  }
}

void BatchNormBase::reset_running_stats() {
  if (!track_) return;
  buffer("running_mean").fill_(0.0);
  buffer("running_var").fill_(1.0);
  buffer("num_batches_tracked").fill_(0.0);
}

void BatchNormBase::reset_parameters() {
  reset_running_stats();
  if (!affine_) return;
  param("weight").fill_(1.0);
  param("bias").fill_(0.0);
}

Tensor BatchNormBase::forward(const Tensor& x) {
  check_input(x);
  QSLIM_CHECK(x.size(1) == num_features_, type_name(), "(", num_features_, "): input ", shape_str(x.shape()), " has ",
              x.size(1), " channels, expected ", num_features_);
  Tensor rm, rv;
  if (track_) {
    rm = buffer("running_mean");
    rv = buffer("running_var");
  }
  Tensor w = affine_ ? param("weight") : Tensor(), b = affine_ ? param("bias") : Tensor();
  Tensor y = batch_norm(x, rm, rv, w, b, is_training(), momentum_, eps_);
  if (is_training() && track_) {
    Tensor n = buffer("num_batches_tracked");
    n.fill_(n.item() + 1);
  }
  return y;
}

std::string BatchNormBase::extra_repr() const {
  std::ostringstream os;
  os << num_features_ << ", eps=" << eps_ << ", momentum=" << momentum_ << ", affine=" << (affine_ ? "True" : "False")
     << ", track_running_stats=" << (track_ ? "True" : "False");
  return os.str();
}

void BatchNorm1D::check_input(const Tensor& x) const {
  QSLIM_CHECK(x.dim() == 2 || x.dim() == 3, "BatchNorm1D: expected input [N, C] or [N, C, L], got ",
              shape_str(x.shape()));
}

void BatchNorm2D::check_input(const Tensor& x) const {
  QSLIM_CHECK(x.dim() == 4, "BatchNorm2D: expected input [N, C, H, W], got ", shape_str(x.shape()));
}

}  // namespace qslim::nn
