// Model zoo: every registry model builds, runs forward and backward at 28x28 (a few also at 32x32
// with 3 channels), reaches every leaf through child() (so replace_submodule takes effect), gives
// every parameter a gradient and round-trips through a checkpoint; the PyTorch reference models match
// torch_models.py in parameter count and state-dict keys; MAC counting is checked against hand counts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "models/flops.h"
#include "models/registry.h"
#include "models/squeeze_excite.h"
#include "nn/batchnorm.h"
#include "nn/checkpoint.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "tests/support/test_support.h"

using namespace qslim;
using qslim::testing::AllClose;
namespace fs = std::filesystem;

namespace {

// One spec per registry model, at a width that keeps the whole file fast; every name must appear.
const std::vector<std::string>& zoo_cases() {
  static const std::vector<std::string> cases = {
      "lenet",
      "resnet8",
      "resnet20",
      "resnet32",
      "resnet56:width=0.5",
      "resnet18:width=0.25",
      "resnet34:width=0.125",
      "resnet50:width=0.125",
      "resnet101:width=0.125",
      "mobilenet_v1:width=0.25",
      "mobilenet_v2:width=0.25",
      "mobilenet_v2_small",
      "mobilenet_v3_small:width=0.5",
      "mobilenet_v3_large:width=0.25",
      "vgg11:width=0.125",
      "vgg13:width=0.125",
      "vgg16:width=0.125",
      "vgg19:width=0.125",
      "googlenet:width=0.125",
  };
  return cases;
}

std::string with_args(const std::string& spec, const std::string& args) {
  return spec + (spec.find(':') == std::string::npos ? ":" : ",") + args;
}

// Forwards to the wrapped leaf and records that it ran.
class Recorder : public nn::Module {
 public:
  Recorder(nn::ModulePtr inner, std::string name, std::set<std::string>* seen)
      : inner_(std::move(inner)), name_(std::move(name)), seen_(seen) {}
  using Module::forward;
  Tensor forward(const Tensor& x) override {
    seen_->insert(name_);
    return inner_->forward(x);
  }
  Tensor forward(const std::vector<Tensor>& xs) override {
    seen_->insert(name_);
    return inner_->forward(xs);
  }
  std::string type_name() const override { return "Recorder"; }

 private:
  nn::ModulePtr inner_;
  std::string name_;
  std::set<std::string>* seen_;
};

// Wraps every leaf in a Recorder, runs forward and backward on a random batch, and checks the output
// shape, that every leaf ran (forward code reached it through child()) and that every parameter got
// a finite, non-zero gradient.
void check_forward_backward(const std::string& spec, int64_t in_channels, int64_t size, int64_t classes) {
  SCOPED_TRACE(spec);
  manual_seed(7);
  nn::ModulePtr model = models::create_model(spec);
  nn::NamedTensors params = model->named_parameters();
  std::set<std::string> leaves, seen;
  for (auto& [name, m] : model->named_modules())
    if (!name.empty() && m->named_children().empty()) leaves.insert(name);
  for (const std::string& name : leaves)
    model->replace_submodule(name, std::make_shared<Recorder>(model->get_submodule(name), name, &seen));

  Tensor x = randn({2, in_channels, size, size});
  Tensor y = (*model)(x);
  ASSERT_EQ(y.shape(), (Shape{2, classes}));
  for (const std::string& name : leaves) EXPECT_TRUE(seen.count(name)) << "leaf " << name << " never ran";
  sum(mul(y, randn({2, classes}))).backward();
  for (auto& [name, p] : params) {
    ASSERT_TRUE(p.grad().defined()) << name << " got no gradient";
    ASSERT_EQ(p.grad().shape(), p.shape()) << name;
    bool nonzero = false, finite = true;
    for (float g : p.grad().to_vector<float>()) {
      nonzero |= g != 0.0f;
      finite &= std::isfinite(g);
    }
    EXPECT_TRUE(nonzero) << name << " has an all-zero gradient";
    EXPECT_TRUE(finite) << name << " has a non-finite gradient";
  }
}

std::vector<std::string> registry_names() {
  std::vector<std::string> names;
  for (const auto& info : models::model_registry()) names.push_back(info.name);
  return names;
}

std::vector<std::string> state_keys_with_shapes(const nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [name, t] : m.state_dict()) {
    std::string s = name + "[";
    for (size_t i = 0; i < t.shape().size(); ++i) {
      if (i) s += ',';
      s += std::to_string(t.shape()[i]);
    }
    out.push_back(s + "]");
  }
  return out;
}

std::vector<std::string> split_ws(const std::string& s) {
  std::istringstream is(s);
  std::vector<std::string> out;
  for (std::string w; is >> w;) out.push_back(w);
  return out;
}

bool has_key(const nn::Module& m, const std::string& key) {
  for (auto& [name, t] : m.state_dict())
    if (name == key) return true;
  return false;
}

}  // namespace

TEST(Models, EveryRegistryModelHasATestCase) {
  std::set<std::string> covered;
  for (const auto& spec : zoo_cases()) covered.insert(models::ModelArgs::parse(spec).name());
  for (const auto& name : registry_names()) EXPECT_TRUE(covered.count(name)) << name << " is not exercised";
  for (const char* name : {"resnet20", "resnet32", "resnet56", "resnet18", "resnet34", "resnet50", "resnet101",
                           "mobilenet_v1", "mobilenet_v2", "mobilenet_v2_small", "mobilenet_v3_small",
                           "mobilenet_v3_large", "vgg11", "vgg16", "vgg19", "googlenet"})
    EXPECT_TRUE(covered.count(name)) << name << " missing from the registry";
}

TEST(Models, ForwardBackwardEveryModel28x28) {
  for (const auto& spec : zoo_cases()) check_forward_backward(spec, 1, 28, 10);
}

TEST(Models, ForwardBackward32x32ThreeChannels) {
  for (const char* spec : {"lenet:image_size=32", "resnet20", "resnet18:width=0.125", "mobilenet_v1:width=0.25",
                           "mobilenet_v2:width=0.25", "mobilenet_v3_large:width=0.25", "vgg11:width=0.125",
                           "googlenet:width=0.125"})
    check_forward_backward(with_args(spec, "in_channels=3,num_classes=100"), 3, 32, 100);
}

TEST(Models, CheckpointRoundTripGivesIdenticalEvalOutputs) {
  fs::path dir = fs::temp_directory_path() / ("qslim_models_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "model.safetensors").string();
  for (const auto& spec : zoo_cases()) {
    SCOPED_TRACE(spec);
    manual_seed(1);
    nn::ModulePtr a = models::create_model(spec);
    {
      NoGradGuard no_grad;  // one training-mode pass so BatchNorm running statistics are not the defaults
      (*a)(randn({2, 1, 28, 28}));
    }
    a->eval();
    manual_seed(2);
    nn::ModulePtr b = models::create_model(spec);
    b->eval();
    Tensor x = randn({2, 1, 28, 28});
    NoGradGuard no_grad;
    Tensor ya = (*a)(x);
    EXPECT_FALSE(AllClose((*b)(x), ya, 1e-3, 0.0)) << "differently seeded models agree before loading";
    nn::save_module(path, *a, {{"model", spec}});
    auto meta = nn::load_module(path, *b);
    EXPECT_EQ(meta["model"], spec);
    EXPECT_TRUE(AllClose((*b)(x), ya, 0.0, 0.0));
  }
  fs::remove_all(dir);
}

// Reference: /usr/bin/python3 with shared/peer/torch_models.py (torch 1.13),
//   m = make_model("resnet20"); sum(p.numel() for p in m.parameters()) -> 272186
//   ' '.join(k + '[' + ','.join(map(str, v.shape)) + ']' for k, v in m.state_dict().items())
// (QuantStub/DeQuantStub and FloatFunctional hold no state, so they add no keys).
TEST(Models, ResNet20MatchesTorchReference) {
  auto m = models::create_model("resnet20");
  EXPECT_EQ(m->num_parameters(), 272186);
  const char* torch_keys = R"(
conv1.weight[16,1,3,3] bn1.weight[16] bn1.bias[16] bn1.running_mean[16] bn1.running_var[16]
bn1.num_batches_tracked[] layers.0.conv1.weight[16,16,3,3] layers.0.bn1.weight[16] layers.0.bn1.bias[16]
layers.0.bn1.running_mean[16] layers.0.bn1.running_var[16] layers.0.bn1.num_batches_tracked[]
layers.0.conv2.weight[16,16,3,3] layers.0.bn2.weight[16] layers.0.bn2.bias[16] layers.0.bn2.running_mean[16]
layers.0.bn2.running_var[16] layers.0.bn2.num_batches_tracked[] layers.1.conv1.weight[16,16,3,3]
layers.1.bn1.weight[16] layers.1.bn1.bias[16] layers.1.bn1.running_mean[16] layers.1.bn1.running_var[16]
layers.1.bn1.num_batches_tracked[] layers.1.conv2.weight[16,16,3,3] layers.1.bn2.weight[16]
layers.1.bn2.bias[16] layers.1.bn2.running_mean[16] layers.1.bn2.running_var[16]
layers.1.bn2.num_batches_tracked[] layers.2.conv1.weight[16,16,3,3] layers.2.bn1.weight[16]
layers.2.bn1.bias[16] layers.2.bn1.running_mean[16] layers.2.bn1.running_var[16]
layers.2.bn1.num_batches_tracked[] layers.2.conv2.weight[16,16,3,3] layers.2.bn2.weight[16]
layers.2.bn2.bias[16] layers.2.bn2.running_mean[16] layers.2.bn2.running_var[16]
layers.2.bn2.num_batches_tracked[] layers.3.conv1.weight[32,16,3,3] layers.3.bn1.weight[32]
layers.3.bn1.bias[32] layers.3.bn1.running_mean[32] layers.3.bn1.running_var[32]
layers.3.bn1.num_batches_tracked[] layers.3.conv2.weight[32,32,3,3] layers.3.bn2.weight[32]
layers.3.bn2.bias[32] layers.3.bn2.running_mean[32] layers.3.bn2.running_var[32]
layers.3.bn2.num_batches_tracked[] layers.3.short.0.weight[32,16,1,1] layers.3.short.1.weight[32]
layers.3.short.1.bias[32] layers.3.short.1.running_mean[32] layers.3.short.1.running_var[32]
layers.3.short.1.num_batches_tracked[] layers.4.conv1.weight[32,32,3,3] layers.4.bn1.weight[32]
layers.4.bn1.bias[32] layers.4.bn1.running_mean[32] layers.4.bn1.running_var[32]
layers.4.bn1.num_batches_tracked[] layers.4.conv2.weight[32,32,3,3] layers.4.bn2.weight[32]
layers.4.bn2.bias[32] layers.4.bn2.running_mean[32] layers.4.bn2.running_var[32]
layers.4.bn2.num_batches_tracked[] layers.5.conv1.weight[32,32,3,3] layers.5.bn1.weight[32]
layers.5.bn1.bias[32] layers.5.bn1.running_mean[32] layers.5.bn1.running_var[32]
layers.5.bn1.num_batches_tracked[] layers.5.conv2.weight[32,32,3,3] layers.5.bn2.weight[32]
layers.5.bn2.bias[32] layers.5.bn2.running_mean[32] layers.5.bn2.running_var[32]
layers.5.bn2.num_batches_tracked[] layers.6.conv1.weight[64,32,3,3] layers.6.bn1.weight[64]
layers.6.bn1.bias[64] layers.6.bn1.running_mean[64] layers.6.bn1.running_var[64]
layers.6.bn1.num_batches_tracked[] layers.6.conv2.weight[64,64,3,3] layers.6.bn2.weight[64]
layers.6.bn2.bias[64] layers.6.bn2.running_mean[64] layers.6.bn2.running_var[64]
layers.6.bn2.num_batches_tracked[] layers.6.short.0.weight[64,32,1,1] layers.6.short.1.weight[64]
layers.6.short.1.bias[64] layers.6.short.1.running_mean[64] layers.6.short.1.running_var[64]
layers.6.short.1.num_batches_tracked[] layers.7.conv1.weight[64,64,3,3] layers.7.bn1.weight[64]
layers.7.bn1.bias[64] layers.7.bn1.running_mean[64] layers.7.bn1.running_var[64]
layers.7.bn1.num_batches_tracked[] layers.7.conv2.weight[64,64,3,3] layers.7.bn2.weight[64]
layers.7.bn2.bias[64] layers.7.bn2.running_mean[64] layers.7.bn2.running_var[64]
layers.7.bn2.num_batches_tracked[] layers.8.conv1.weight[64,64,3,3] layers.8.bn1.weight[64]
layers.8.bn1.bias[64] layers.8.bn1.running_mean[64] layers.8.bn1.running_var[64]
layers.8.bn1.num_batches_tracked[] layers.8.conv2.weight[64,64,3,3] layers.8.bn2.weight[64]
layers.8.bn2.bias[64] layers.8.bn2.running_mean[64] layers.8.bn2.running_var[64]
layers.8.bn2.num_batches_tracked[] fc.weight[10,64] fc.bias[10])";
  EXPECT_EQ(state_keys_with_shapes(*m), split_ws(torch_keys));
}

// Reference: as above with make_model("mbv2") (MobileNetV2S) -> 70058 parameters.
TEST(Models, MobileNetV2SmallMatchesTorchReference) {
  auto m = models::create_model("mobilenet_v2_small");
  EXPECT_EQ(m->num_parameters(), 70058);
  const char* torch_keys = R"(
stem.0.weight[16,1,3,3] stem.1.weight[16] stem.1.bias[16] stem.1.running_mean[16] stem.1.running_var[16]
stem.1.num_batches_tracked[] blocks.0.conv.0.weight[16,1,3,3] blocks.0.conv.1.weight[16]
blocks.0.conv.1.bias[16] blocks.0.conv.1.running_mean[16] blocks.0.conv.1.running_var[16]
blocks.0.conv.1.num_batches_tracked[] blocks.0.conv.3.weight[8,16,1,1] blocks.0.conv.4.weight[8]
blocks.0.conv.4.bias[8] blocks.0.conv.4.running_mean[8] blocks.0.conv.4.running_var[8]
blocks.0.conv.4.num_batches_tracked[] blocks.1.conv.0.weight[48,8,1,1] blocks.1.conv.1.weight[48]
blocks.1.conv.1.bias[48] blocks.1.conv.1.running_mean[48] blocks.1.conv.1.running_var[48]
blocks.1.conv.1.num_batches_tracked[] blocks.1.conv.3.weight[48,1,3,3] blocks.1.conv.4.weight[48]
blocks.1.conv.4.bias[48] blocks.1.conv.4.running_mean[48] blocks.1.conv.4.running_var[48]
blocks.1.conv.4.num_batches_tracked[] blocks.1.conv.6.weight[12,48,1,1] blocks.1.conv.7.weight[12]
blocks.1.conv.7.bias[12] blocks.1.conv.7.running_mean[12] blocks.1.conv.7.running_var[12]
blocks.1.conv.7.num_batches_tracked[] blocks.2.conv.0.weight[72,12,1,1] blocks.2.conv.1.weight[72]
blocks.2.conv.1.bias[72] blocks.2.conv.1.running_mean[72] blocks.2.conv.1.running_var[72]
blocks.2.conv.1.num_batches_tracked[] blocks.2.conv.3.weight[72,1,3,3] blocks.2.conv.4.weight[72]
blocks.2.conv.4.bias[72] blocks.2.conv.4.running_mean[72] blocks.2.conv.4.running_var[72]
blocks.2.conv.4.num_batches_tracked[] blocks.2.conv.6.weight[12,72,1,1] blocks.2.conv.7.weight[12]
blocks.2.conv.7.bias[12] blocks.2.conv.7.running_mean[12] blocks.2.conv.7.running_var[12]
blocks.2.conv.7.num_batches_tracked[] blocks.3.conv.0.weight[72,12,1,1] blocks.3.conv.1.weight[72]
blocks.3.conv.1.bias[72] blocks.3.conv.1.running_mean[72] blocks.3.conv.1.running_var[72]
blocks.3.conv.1.num_batches_tracked[] blocks.3.conv.3.weight[72,1,3,3] blocks.3.conv.4.weight[72]
blocks.3.conv.4.bias[72] blocks.3.conv.4.running_mean[72] blocks.3.conv.4.running_var[72]
blocks.3.conv.4.num_batches_tracked[] blocks.3.conv.6.weight[16,72,1,1] blocks.3.conv.7.weight[16]
blocks.3.conv.7.bias[16] blocks.3.conv.7.running_mean[16] blocks.3.conv.7.running_var[16]
blocks.3.conv.7.num_batches_tracked[] blocks.4.conv.0.weight[96,16,1,1] blocks.4.conv.1.weight[96]
blocks.4.conv.1.bias[96] blocks.4.conv.1.running_mean[96] blocks.4.conv.1.running_var[96]
blocks.4.conv.1.num_batches_tracked[] blocks.4.conv.3.weight[96,1,3,3] blocks.4.conv.4.weight[96]
blocks.4.conv.4.bias[96] blocks.4.conv.4.running_mean[96] blocks.4.conv.4.running_var[96]
blocks.4.conv.4.num_batches_tracked[] blocks.4.conv.6.weight[16,96,1,1] blocks.4.conv.7.weight[16]
blocks.4.conv.7.bias[16] blocks.4.conv.7.running_mean[16] blocks.4.conv.7.running_var[16]
blocks.4.conv.7.num_batches_tracked[] blocks.5.conv.0.weight[96,16,1,1] blocks.5.conv.1.weight[96]
blocks.5.conv.1.bias[96] blocks.5.conv.1.running_mean[96] blocks.5.conv.1.running_var[96]
blocks.5.conv.1.num_batches_tracked[] blocks.5.conv.3.weight[96,1,3,3] blocks.5.conv.4.weight[96]
blocks.5.conv.4.bias[96] blocks.5.conv.4.running_mean[96] blocks.5.conv.4.running_var[96]
blocks.5.conv.4.num_batches_tracked[] blocks.5.conv.6.weight[32,96,1,1] blocks.5.conv.7.weight[32]
blocks.5.conv.7.bias[32] blocks.5.conv.7.running_mean[32] blocks.5.conv.7.running_var[32]
blocks.5.conv.7.num_batches_tracked[] blocks.6.conv.0.weight[192,32,1,1] blocks.6.conv.1.weight[192]
blocks.6.conv.1.bias[192] blocks.6.conv.1.running_mean[192] blocks.6.conv.1.running_var[192]
blocks.6.conv.1.num_batches_tracked[] blocks.6.conv.3.weight[192,1,3,3] blocks.6.conv.4.weight[192]
blocks.6.conv.4.bias[192] blocks.6.conv.4.running_mean[192] blocks.6.conv.4.running_var[192]
blocks.6.conv.4.num_batches_tracked[] blocks.6.conv.6.weight[32,192,1,1] blocks.6.conv.7.weight[32]
blocks.6.conv.7.bias[32] blocks.6.conv.7.running_mean[32] blocks.6.conv.7.running_var[32]
blocks.6.conv.7.num_batches_tracked[] blocks.7.conv.0.weight[192,32,1,1] blocks.7.conv.1.weight[192]
blocks.7.conv.1.bias[192] blocks.7.conv.1.running_mean[192] blocks.7.conv.1.running_var[192]
blocks.7.conv.1.num_batches_tracked[] blocks.7.conv.3.weight[192,1,3,3] blocks.7.conv.4.weight[192]
blocks.7.conv.4.bias[192] blocks.7.conv.4.running_mean[192] blocks.7.conv.4.running_var[192]
blocks.7.conv.4.num_batches_tracked[] blocks.7.conv.6.weight[48,192,1,1] blocks.7.conv.7.weight[48]
blocks.7.conv.7.bias[48] blocks.7.conv.7.running_mean[48] blocks.7.conv.7.running_var[48]
blocks.7.conv.7.num_batches_tracked[] head.0.weight[320,48,1,1] head.1.weight[320] head.1.bias[320]
head.1.running_mean[320] head.1.running_var[320] head.1.num_batches_tracked[] fc.weight[10,320] fc.bias[10])";
  EXPECT_EQ(state_keys_with_shapes(*m), split_ws(torch_keys));
}

// torchvision's published parameter counts (3 input channels, 1000 classes), adjusted only where this
// zoo differs on purpose: the 3x3 stem replaces a 7x7 conv (3*64*49 - 3*64*9 = 7680 fewer weights) and
// VGG's classifier is 512-512-1000 instead of 25088-4096-4096-1000 (123,642,856 -> 1,038,312).
// Stride changes and dropped pools do not change parameter counts.
TEST(Models, TorchvisionArchitecturesMatchPublishedParameterCounts) {
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"resnet18", 11689512 - 7680},
      {"resnet50", 25557032 - 7680},
      {"mobilenet_v2", 3504872},
      {"mobilenet_v3_small", 2542856},
      {"mobilenet_v3_large", 5483032},
      {"vgg16", 138365992 - 123642856 + 1038312},
      {"googlenet", 6624904 - 7680},
  };
  for (const auto& [name, count] : expected)
    EXPECT_EQ(models::create_model(name + ":in_channels=3,num_classes=1000")->num_parameters(), count) << name;
}

TEST(Models, TorchvisionStateDictNames) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected = {
      {"resnet18:width=0.125",
       {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.1.bn2.bias", "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_mean", "layer4.1.conv2.weight", "fc.bias"}},
      {"resnet50:width=0.125",
       {"layer1.0.conv3.weight", "layer1.0.bn3.weight", "layer1.0.downsample.0.weight", "layer3.5.bn3.running_var",
        "fc.weight"}},
      {"mobilenet_v2:width=0.25",
       {"features.0.0.weight", "features.0.1.running_mean", "features.1.conv.0.0.weight",
        "features.1.conv.1.weight", "features.1.conv.2.running_var", "features.2.conv.0.0.weight",
        "features.2.conv.1.0.weight", "features.2.conv.2.weight", "features.2.conv.3.bias", "features.18.0.weight",
        "classifier.1.weight"}},
      {"mobilenet_v3_large:width=0.25",
       {"features.0.0.weight", "features.1.block.0.0.weight", "features.1.block.1.1.weight",
        "features.4.block.2.fc1.weight", "features.4.block.2.fc2.bias", "features.4.block.3.1.running_var",
        "features.16.0.weight", "classifier.0.weight", "classifier.3.bias"}},
      {"mobilenet_v3_small:width=0.25",
       {"features.1.block.0.0.weight", "features.1.block.1.fc1.weight", "features.1.block.2.1.bias",
        "features.12.1.weight", "classifier.3.weight"}},
      {"vgg16:width=0.125",
       {"features.0.weight", "features.1.running_mean", "features.3.weight", "features.7.weight",
        "features.40.weight", "features.41.num_batches_tracked", "classifier.0.weight", "classifier.3.weight",
        "classifier.6.bias"}},
      {"vgg11:width=0.125", {"features.25.weight", "features.26.running_var"}},
      {"vgg19:width=0.125", {"features.49.weight", "features.50.running_var"}},
      {"googlenet:width=0.125",
       {"conv1.conv.weight", "conv1.bn.running_mean", "conv3.conv.weight", "inception3a.branch1.conv.weight",
        "inception3a.branch2.1.bn.weight", "inception4e.branch3.1.conv.weight", "inception5b.branch4.1.conv.weight",
        "fc.weight"}},
  };
  for (const auto& [spec, keys] : expected) {
    auto m = models::create_model(spec);
    for (const auto& key : keys) EXPECT_TRUE(has_key(*m, key)) << spec << " lacks " << key;
  }
}

TEST(Models, ArgumentsAreApplied) {
  auto r = models::create_model("resnet18:width=0.5,in_channels=3");
  EXPECT_EQ(r->get_submodule("conv1")->param("weight").shape(), (Shape{32, 3, 3, 3}));
  EXPECT_EQ(r->get_submodule("layer4.1.conv2")->param("weight").shape(), (Shape{256, 256, 3, 3}));
  auto c = models::create_model("resnet20:width=0.5,num_classes=7");
  EXPECT_EQ(c->get_submodule("fc")->param("weight").shape(), (Shape{7, 32}));
  auto v = models::create_model("mobilenet_v2:width=0.5");
  EXPECT_EQ(v->get_submodule("features.0.0")->param("weight").shape(), (Shape{16, 1, 3, 3}));
  EXPECT_EQ(v->get_submodule("features.18.0")->param("weight").shape(), (Shape{1280, 160, 1, 1}));
  // Depthwise convs keep groups == channels.
  auto dw = std::dynamic_pointer_cast<nn::Conv2D>(v->get_submodule("features.2.conv.1.0"));
  ASSERT_TRUE(dw);
  EXPECT_EQ(dw->groups(), dw->in_channels());
}

TEST(Models, RegistryErrorsNameTheProblem) {
  auto expect_spec_error = [](const std::string& spec, const std::string& fragment) {
    try {
      models::create_model(spec);
      ADD_FAILURE() << spec << " did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << spec << ": " << e.what();
    }
  };
  expect_spec_error("nosuchnet", "unknown model 'nosuchnet'");
  expect_spec_error("resnet20:widht=0.5", "unknown argument 'widht'");
  expect_spec_error("resnet20:widht=0.5", "width");  // the allowed keys are listed
  expect_spec_error("vgg16:width=abc", "is not a number");
  expect_spec_error("mobilenet_v2:width=0", "width multiplier must be a positive number");
  expect_spec_error("googlenet:width=-1", "width multiplier must be a positive number");
  expect_spec_error("resnet18:in_channels=0", "must be positive");
  expect_spec_error("lenet:width=0.5", "unknown argument 'width'");
}

// LeNet by hand: conv1 28*28 outputs x 6 channels x (1*5*5); conv2 10*10 x 16 x (6*5*5);
// fc1 400*120, fc2 120*84, fc3 84*10.
TEST(Flops, LeNetMacsByHand) {
  const int64_t lenet = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10;
  auto m = models::create_model("lenet");
  EXPECT_EQ(models::count_macs(*m, {1, 1, 28, 28}), lenet);
  EXPECT_EQ(models::count_macs(*m, {1, 28, 28}), lenet);  // [C, H, W] is one image
  EXPECT_EQ(models::count_macs(*m, {3, 1, 28, 28}), 3 * lenet);
}

// ResNet-20 by hand: 3x3 convs have 9*cin MACs per output; stages at 28x28 (16 ch), 14x14 (32), 7x7 (64);
// the two projection shortcuts are 1x1 convs.
TEST(Flops, ResNet20MacsByHand) {
  const int64_t stem = 784 * 16 * 9 * 1;
  const int64_t stage1 = 6 * 784 * 16 * 9 * 16;
  const int64_t stage2 = 196 * 32 * 9 * 16 + 5 * 196 * 32 * 9 * 32 + 196 * 32 * 16;
  const int64_t stage3 = 49 * 64 * 9 * 32 + 5 * 49 * 64 * 9 * 64 + 49 * 64 * 32;
  auto m = models::create_model("resnet20");
  EXPECT_EQ(models::count_macs(*m, {1, 1, 28, 28}), stem + stage1 + stage2 + stage3 + 64 * 10);
}

TEST(Flops, GroupedConvAndBareLeaves) {
  // 9x9 input, stride 2, padding 1 -> 5x5; 8 outputs per position, each over (4/2)*3*3 inputs.
  auto seq = std::make_shared<nn::Sequential>(
      std::initializer_list<nn::ModulePtr>{std::make_shared<nn::Conv2D>(4, 8, 3, 2, 1, 1, 2)});
  EXPECT_EQ(models::count_macs(*seq, {1, 4, 9, 9}), 5 * 5 * 8 * 18);
  nn::Conv2D bare(4, 8, 3, 2, 1, 1, 2);
  EXPECT_EQ(models::count_macs(bare, {1, 4, 9, 9}), 5 * 5 * 8 * 18);
  nn::Linear fc(6, 5);
  EXPECT_EQ(models::count_macs(fc, {3, 6}), 3 * 6 * 5);
  EXPECT_THROW(models::count_macs(fc, {6}), Error);
}

TEST(Flops, CountingRestoresModulesModesAndStatistics) {
  auto m = models::create_model("resnet20");
  m->get_submodule("layers.4")->eval();  // a mixed-mode model
  std::vector<std::pair<nn::ModulePtr, bool>> before;
  for (auto& [name, mod] : m->named_modules()) before.emplace_back(mod, mod->is_training());
  auto state_before = m->state_dict();
  std::vector<std::vector<float>> values_before;
  for (auto& [name, t] : state_before) values_before.push_back(t.to(DType::F32).to_vector<float>());

  models::count_macs(*m, {2, 1, 28, 28});
  auto after = m->named_modules();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].second, before[i].first) << after[i].first << " was not restored";
    EXPECT_EQ(after[i].second->is_training(), before[i].second) << after[i].first;
  }
  auto state_after = m->state_dict();
  for (size_t i = 0; i < state_after.size(); ++i)
    EXPECT_EQ(state_after[i].second.to(DType::F32).to_vector<float>(), values_before[i]) << state_after[i].first;

  // Also restored when the forward throws (wrong channel count).
  EXPECT_THROW(models::count_macs(*m, {1, 3, 28, 28}), Error);
  auto after_throw = m->named_modules();
  for (size_t i = 0; i < after_throw.size(); ++i) EXPECT_EQ(after_throw[i].second, before[i].first);
  EXPECT_TRUE(m->is_training());
}

// SqueezeExcitation against a naive loop: s = hardsigmoid(W2 relu(W1 mean_hw(x) + b1) + b2), y = x * s.
TEST(SqueezeExcitation, MatchesNaiveReference) {
  manual_seed(3);
  models::SqueezeExcitation se(4, 8);
  Tensor x = randn({2, 4, 3, 3});
  Tensor y = se(x);
  auto w1 = se.get_submodule("fc1")->param("weight").to_vector<float>();  // [8, 4, 1, 1]
  auto b1 = se.get_submodule("fc1")->param("bias").to_vector<float>();
  auto w2 = se.get_submodule("fc2")->param("weight").to_vector<float>();  // [4, 8, 1, 1]
  auto b2 = se.get_submodule("fc2")->param("bias").to_vector<float>();
  auto xv = x.to_vector<float>();
  std::vector<float> ref(xv.size());
  for (int n = 0; n < 2; ++n) {
    double mean[4], hid[8];
    for (int c = 0; c < 4; ++c) {
      mean[c] = 0;
      for (int i = 0; i < 9; ++i) mean[c] += xv[(n * 4 + c) * 9 + i] / 9.0;
    }
    for (int j = 0; j < 8; ++j) {
      hid[j] = b1[j];
      for (int c = 0; c < 4; ++c) hid[j] += w1[j * 4 + c] * mean[c];
      hid[j] = std::max(0.0, hid[j]);
    }
    for (int c = 0; c < 4; ++c) {
      double s = b2[c];
      for (int j = 0; j < 8; ++j) s += w2[c * 8 + j] * hid[j];
      s = std::min(1.0, std::max(0.0, s / 6.0 + 0.5));
      for (int i = 0; i < 9; ++i) ref[(n * 4 + c) * 9 + i] = static_cast<float>(xv[(n * 4 + c) * 9 + i] * s);
    }
  }
  EXPECT_TRUE(AllClose(y, from_vector(ref, {2, 4, 3, 3}), 1e-5, 1e-6));
}

// Gradients of input and all four SE parameters in f64. By construction no kink is near: x > 0.5 and
// fc1 has positive weights and bias, so the ReLU inputs are >= 0.1; |fc2 pre-activation| < 1 stays
// inside Hardsigmoid's linear range (-3, 3).
TEST(SqueezeExcitation, GradcheckF64) {
  manual_seed(4);
  models::SqueezeExcitation se(3, 2);
  Tensor x = add(rand({2, 3, 3, 3}, DType::F64), 0.5);
  Tensor w1 = add(mul(rand({2, 3, 1, 1}, DType::F64), 0.5), 0.1), b1 = full({2}, 0.1, DType::F64);
  Tensor w2 = add(mul(rand({3, 2, 1, 1}, DType::F64), 0.2), -0.1), b2 = add(mul(rand({3}, DType::F64), 0.2), -0.1);
  std::vector<Tensor> inputs = {x, w1, b1, w2, b2};
  for (Tensor& t : inputs) t.set_requires_grad(true);
  auto f = [&se](const std::vector<Tensor>& in) {
    se.get_submodule("fc1")->set_param("weight", in[1]);
    se.get_submodule("fc1")->set_param("bias", in[2]);
    se.get_submodule("fc2")->set_param("weight", in[3]);
    se.get_submodule("fc2")->set_param("bias", in[4]);
    return se(in[0]);
  };
  auto r = gradcheck(f, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(SqueezeExcitation, MultiplyBroadcastsAndChecksArity) {
  models::Multiply mul_mod;
  Tensor a = tensor({1.f, 2.f, 3.f, 4.f}, {1, 2, 2, 1}), s = tensor({10.f, -1.f}, {1, 2, 1, 1});
  EXPECT_TRUE(AllClose(mul_mod(a, s), tensor({10.f, 20.f, -3.f, -4.f}, {1, 2, 2, 1})));
  EXPECT_THROW(mul_mod(std::vector<Tensor>{a}), Error);
}
