#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "nn/batchnorm.h"
#include "nn/checkpoint.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "tests/support/test_support.h"

using namespace qslim;
using namespace qslim::nn;
using qslim::testing::AllClose;
namespace fs = std::filesystem;

namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qslim_ckpt_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_all(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A hand-built file: header JSON text (unpadded) followed by `data`.
std::string build_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

std::string load_error(const std::string& p) {
  try {
    load_tensors(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::shared_ptr<Sequential> small_net() {
  return std::make_shared<Sequential>(std::initializer_list<ModulePtr>{
      std::make_shared<Conv2D>(1, 2, 3), std::make_shared<BatchNorm2D>(2), std::make_shared<Linear>(4, 3)});
}

}  // namespace

TEST_F(CheckpointTest, RoundTripAllDtypes) {
  NamedTensors in = {
      {"f32", randn({2, 3})},
      {"f64", randn({4}, DType::F64)},
      {"u8", from_vector<uint8_t>({0, 7, 255}, {3})},
      {"i8", from_vector<int8_t>({-128, 0, 127}, {3})},
      {"i16", from_vector<int16_t>({-32768, 5, 32767}, {1, 3})},
      {"i32", from_vector<int32_t>({-2147483647, 1, 2147483647, 4}, {2, 2})},
      {"i64", from_vector<int64_t>({int64_t{1} << 40, -3}, {2})},
      {"scalar", scalar_tensor(2.5)},
      {"empty", zeros({0, 3})},
      {"strided", arange(0, 12, 1, DType::F32).reshape({3, 4}).t()},  // saved in logical (row-major) order
  };
  save_tensors(path("all.safetensors"), in, {{"model", "lenet"}, {"epochs", "3"}});
  EXPECT_FALSE(fs::exists(path("all.safetensors.tmp")));
  LoadedTensors out = load_tensors(path("all.safetensors"));
  EXPECT_EQ(out.metadata, (std::map<std::string, std::string>{{"model", "lenet"}, {"epochs", "3"}}));
  ASSERT_EQ(out.tensors.size(), in.size());
  for (auto& [name, t] : in) {
    auto it = std::find_if(out.tensors.begin(), out.tensors.end(), [&](auto& p) { return p.first == name; });
    ASSERT_NE(it, out.tensors.end()) << name;
    EXPECT_EQ(it->second.dtype(), t.dtype()) << name;
    EXPECT_EQ(it->second.shape(), t.shape()) << name;
    EXPECT_TRUE(AllClose(it->second, t, 0, 0)) << name;
  }
  // Overwriting an existing file works too.
  save_tensors(path("all.safetensors"), {{"only", ones({1})}});
  EXPECT_EQ(load_tensors(path("all.safetensors")).tensors.size(), 1u);
  EXPECT_TRUE(load_tensors(path("all.safetensors")).metadata.empty());
}

TEST_F(CheckpointTest, LayoutIsStandardSafetensors) {
  Tensor a = tensor({1, 2, 3}, {3});
  Tensor b = from_vector<int64_t>({-1, 2}, {1, 2});
  save_tensors(path("x.safetensors"), {{"a", a}, {"b", b}}, {{"k", "v"}});
  std::string bytes = read_all(path("x.safetensors"));
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);  // padded so the data section is aligned
  ASSERT_LE(8 + n, bytes.size());
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  EXPECT_EQ(header["a"]["dtype"], "F32");
  EXPECT_EQ(header["a"]["shape"], nlohmann::json::array({3}));
  EXPECT_EQ(header["b"]["dtype"], "I64");
  EXPECT_EQ(header["b"]["shape"], nlohmann::json::array({1, 2}));
  uint64_t ab = header["a"]["data_offsets"][0], ae = header["a"]["data_offsets"][1];
  uint64_t bb = header["b"]["data_offsets"][0], be = header["b"]["data_offsets"][1];
  EXPECT_EQ(ae - ab, 12u);
  EXPECT_EQ(be - bb, 16u);
  EXPECT_EQ(bytes.size(), 8 + n + 28);  // no gaps, nothing trailing
  float fa[3];
  std::memcpy(fa, bytes.data() + 8 + n + ab, 12);
  EXPECT_EQ(fa[0], 1.0f);
  EXPECT_EQ(fa[2], 3.0f);
  int64_t ib[2];
  std::memcpy(ib, bytes.data() + 8 + n + bb, 16);
  EXPECT_EQ(ib[0], -1);
  EXPECT_EQ(ib[1], 2);
}

TEST_F(CheckpointTest, ReadsHandWrittenFile) {
  // Written the way another tool would: no padding, tensors in reverse order, no metadata.
  float v[2] = {1.5f, -2.0f};
  int32_t w[1] = {9};
  std::string data(reinterpret_cast<char*>(w), 4);
  data += std::string(reinterpret_cast<char*>(v), 8);
  write_all(path("h.safetensors"),
            build_file(R"({"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"w":{"dtype":"I32","shape":[],"data_offsets":[0,4]}})",
                       data));
  LoadedTensors t = load_tensors(path("h.safetensors"));
  ASSERT_EQ(t.tensors.size(), 2u);
  EXPECT_EQ(t.tensors[0].first, "w");  // file order
  EXPECT_EQ(t.tensors[0].second.item(), 9.0);
  EXPECT_EQ(t.tensors[1].second.to_vector<float>(), (std::vector<float>{1.5f, -2.0f}));
}

TEST_F(CheckpointTest, MissingAndTruncatedFiles) {
  std::string err = load_error(path("nope.safetensors"));
  EXPECT_TRUE(contains(err, "nope.safetensors") && contains(err, "no such file")) << err;

  save_tensors(path("t.safetensors"), {{"w", randn({10, 10})}});
  std::string bytes = read_all(path("t.safetensors"));
  write_all(path("short.safetensors"), bytes.substr(0, 5));
  err = load_error(path("short.safetensors"));
  EXPECT_TRUE(contains(err, "short.safetensors") && contains(err, "too short")) << err;

  write_all(path("trunc.safetensors"), bytes.substr(0, bytes.size() - 4));
  err = load_error(path("trunc.safetensors"));
  EXPECT_TRUE(contains(err, "trunc.safetensors") && contains(err, "'w'") && contains(err, "out of range")) << err;

  write_all(path("trunc_header.safetensors"), bytes.substr(0, 20));
  err = load_error(path("trunc_header.safetensors"));
  EXPECT_TRUE(contains(err, "header length")) << err;
}

TEST_F(CheckpointTest, CorruptedHeaderLength) {
  save_tensors(path("c.safetensors"), {{"w", randn({4})}});
  std::string bytes = read_all(path("c.safetensors"));
  write_all(path("c.safetensors"), le64(uint64_t{1} << 40) + bytes.substr(8));
  std::string err = load_error(path("c.safetensors"));
  EXPECT_TRUE(contains(err, "c.safetensors") && contains(err, "header length 1099511627776")) << err;
  write_all(path("c.safetensors"), le64(~uint64_t{0}) + bytes.substr(8));
  EXPECT_TRUE(contains(load_error(path("c.safetensors")), "header length")) << load_error(path("c.safetensors"));
}

TEST_F(CheckpointTest, BadJsonAndBadEntries) {
  auto check = [&](const std::string& header, const std::string& data, const std::string& expect) {
    write_all(path("b.safetensors"), build_file(header, data));
    std::string err = load_error(path("b.safetensors"));
    EXPECT_TRUE(contains(err, "b.safetensors") && contains(err, expect)) << "header " << header << "\nerror: " << err;
  };
  const std::string d8(8, '\0');
  check(R"({"w": {"dtype": "F32", )", d8, "not valid JSON");
  check(R"([1, 2])", d8, "not a JSON object");
  check(R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", d8, "unknown dtype 'BF16'");
  check(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8, "negative dimension");
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", d8, "out of range");
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8, "after end");
  check(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8, "needs 12 bytes");
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d8, "[begin, end]");
  check(R"({"w":{"dtype":"F32","shape":[2]}})", d8, "no 'data_offsets'");
  check(R"({"w":{"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,8]}})", d8, "too many");
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})",
        d8, "overlaps");
  check(R"({"__metadata__":{"k":3},"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", d8, "metadata 'k'");
}

TEST_F(CheckpointTest, FailedSaveKeepsPreviousFile) {
  const std::string p = path("model.safetensors");
  save_tensors(p, {{"w", tensor({1, 2, 3}, {3})}}, {{"version", "1"}});
  const std::string before = read_all(p);

  // The temporary path is a directory: opening it for writing fails.
  fs::create_directory(p + ".tmp");
  EXPECT_THROW(save_tensors(p, {{"w", tensor({4, 5, 6}, {3})}}), Error);
  fs::remove(p + ".tmp");
  EXPECT_EQ(read_all(p), before);

  // Writing fails midway (the temporary file is a full device): the error names it.
  if (fs::exists("/dev/full")) {
    fs::create_symlink("/dev/full", p + ".tmp");
    try {
      save_tensors(p, {{"w", randn({1000})}});
      ADD_FAILURE() << "expected the save to fail";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), p + ".tmp")) << e.what();
    }
    EXPECT_EQ(read_all(p), before);
    EXPECT_FALSE(fs::exists(fs::symlink_status(p + ".tmp")));  // the failed temporary is cleaned up
  }

  // The destination cannot be replaced (it is a directory): the temporary is removed.
  fs::create_directory(path("adir"));
  EXPECT_THROW(save_tensors(path("adir"), {{"w", ones({1})}}), Error);
  EXPECT_FALSE(fs::exists(path("adir.tmp")));

  // A save into a missing directory fails with the path in the message.
  try {
    save_tensors(path("missing/dir/x.safetensors"), {{"w", ones({1})}});
    ADD_FAILURE() << "expected the save to fail";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "missing/dir/x.safetensors.tmp")) << e.what();
  }
  LoadedTensors still = load_tensors(p);
  EXPECT_EQ(still.metadata.at("version"), "1");
  EXPECT_EQ(still.tensors[0].second.to_vector<float>(), (std::vector<float>{1, 2, 3}));
}

TEST_F(CheckpointTest, SaveRejectsBadNames) {
  EXPECT_THROW(save_tensors(path("n.safetensors"), {{"a", ones({1})}, {"a", ones({1})}}), Error);
  EXPECT_THROW(save_tensors(path("n.safetensors"), {{"__metadata__", ones({1})}}), Error);
  EXPECT_THROW(save_tensors(path("n.safetensors"), {{"a", Tensor()}}), Error);
  EXPECT_FALSE(fs::exists(path("n.safetensors")));
}

TEST_F(CheckpointTest, ModuleRoundTrip) {
  manual_seed(1);
  auto a = small_net();
  a->child("1").buffer("running_mean").copy_(tensor({0.5, -0.5}, {2}));
  a->child("1").buffer("num_batches_tracked").fill_(7);
  save_module(path("m.safetensors"), *a, {{"arch", "small"}});
  manual_seed(2);
  auto b = small_net();
  auto meta = load_module(path("m.safetensors"), *b);
  EXPECT_EQ(meta.at("arch"), "small");
  auto sa = a->state_dict(), sb = b->state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(AllClose(sa[i].second, sb[i].second, 0, 0)) << sa[i].first;
  }
  EXPECT_EQ(b->child("1").buffer("num_batches_tracked").dtype(), DType::I64);
  EXPECT_EQ(b->child("1").buffer("num_batches_tracked").item(), 7.0);
}

TEST_F(CheckpointTest, ModuleLoadErrorsNameKeys) {
  auto net = small_net();
  const std::string p = path("bad.safetensors");
  auto state = net->state_dict();

  auto load_err = [&](const NamedTensors& s, bool strict = true) {
    save_tensors(p, s);
    try {
      load_module(p, *net, strict);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  NamedTensors wrong = state;
  wrong[0].second = zeros({2, 1, 5, 5});
  std::string err = load_err(wrong);
  EXPECT_TRUE(contains(err, "bad.safetensors") && contains(err, "0.weight") && contains(err, "[2, 1, 5, 5]") &&
              contains(err, "[2, 1, 3, 3]"))
      << err;

  NamedTensors missing(state.begin() + 1, state.end());
  err = load_err(missing);
  EXPECT_TRUE(contains(err, "missing") && contains(err, "0.weight")) << err;
  EXPECT_EQ(load_err(missing, /*strict=*/false), "");

  NamedTensors extra = state;
  extra.emplace_back("3.weight", ones({1}));
  err = load_err(extra);
  EXPECT_TRUE(contains(err, "unexpected") && contains(err, "3.weight")) << err;

  NamedTensors wrong_dtype = state;
  wrong_dtype[1].second = wrong_dtype[1].second.to(DType::F64);
  err = load_err(wrong_dtype);
  EXPECT_TRUE(contains(err, "0.bias") && contains(err, "f64") && contains(err, "f32")) << err;
}
