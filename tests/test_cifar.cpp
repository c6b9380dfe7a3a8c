#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include "data/cifar.h"
#include "tests/support/test_support.h"

namespace qslim {
using qslim::testing::expect_error;

namespace {

namespace fs = std::filesystem;
using data::CifarLabels;
using data::CifarVariant;

// Temporary directories: qslim::testing::TempDir("test_cifar").
class TempDir : public qslim::testing::TempDir {
 public:
  TempDir() : qslim::testing::TempDir("test_cifar") {}
};

// One record as the binary distribution stores it: label byte(s), then R, G, B planes of 32x32.
struct Record {
  std::vector<uint8_t> labels;
  std::vector<uint8_t> pixels;  // 3072
};

Record make_record(std::vector<uint8_t> labels, int seed) {
  Record r{std::move(labels), std::vector<uint8_t>(3072)};
  for (int j = 0; j < 3072; ++j) r.pixels[j] = static_cast<uint8_t>((j * 7 + seed * 13 + (j >> 10) * 5) % 256);
  return r;
}

void write_records(const std::string& path, const std::vector<Record>& records, size_t extra_bytes = 0) {
  std::ofstream f(path, std::ios::binary);
  for (const Record& r : records) {
    f.write(reinterpret_cast<const char*>(r.labels.data()), static_cast<std::streamsize>(r.labels.size()));
    f.write(reinterpret_cast<const char*>(r.pixels.data()), 3072);
  }
  for (size_t i = 0; i < extra_bytes; ++i) f.put('\x01');
}

// CIFAR-10 records for file k: labels cycle through 0..9.
std::vector<Record> cifar10_records(int count, int k) {
  std::vector<Record> out;
  for (int i = 0; i < count; ++i) out.push_back(make_record({static_cast<uint8_t>((i * 3 + k) % 10)}, 100 * k + i));
  return out;
}

// Pixel (c, y, x) of image n must equal byte c*1024 + y*32 + x of record n's pixels.
void expect_matches(const Tensor& images, const Tensor& labels, const std::vector<Record>& records, int label_byte) {
  ASSERT_EQ(images.shape(), (Shape{static_cast<int64_t>(records.size()), 3, 32, 32}));
  ASSERT_EQ(labels.numel(), static_cast<int64_t>(records.size()));
  const uint8_t* px = images.data<uint8_t>();
  const auto lab = labels.to_vector<int64_t>();
  for (size_t n = 0; n < records.size(); ++n) {
    EXPECT_EQ(lab[n], records[n].labels[label_byte]) << "record " << n;
    // Spot checks by (c, y, x) and then the whole image.
    EXPECT_EQ(px[n * 3072 + 2 * 1024 + 5 * 32 + 7], records[n].pixels[2 * 1024 + 5 * 32 + 7]);
    EXPECT_EQ(std::memcmp(px + n * 3072, records[n].pixels.data(), 3072), 0) << "record " << n;
  }
}

TEST(Cifar10, ReadsTrainingBatchesInOrderAndTheTestBatch) {
  TempDir dir;
  const int counts[5] = {3, 2, 4, 1, 2};
  std::vector<Record> all;
  for (int k = 1; k <= 5; ++k) {
    auto recs = cifar10_records(counts[k - 1], k);
    write_records(dir.file("data_batch_" + std::to_string(k) + ".bin"), recs);
    all.insert(all.end(), recs.begin(), recs.end());
  }
  auto test = cifar10_records(5, 0);
  write_records(dir.file("test_batch.bin"), test);

  auto train = data::load_cifar10(true, dir.str());
  EXPECT_EQ(train->size(), 12);
  expect_matches(train->images(), train->labels(), all, 0);
  auto t = data::load_cifar10(false, dir.str());
  expect_matches(t->images(), t->labels(), test, 0);
  // Pixels come out as value / 255 in [C, H, W].
  data::Example e = t->get(1);
  EXPECT_EQ(e.image.shape(), (Shape{3, 32, 32}));
  EXPECT_FLOAT_EQ(e.image.to_vector<float>()[1024 + 32 + 2], test[1].pixels[1024 + 32 + 2] / 255.0f);
  EXPECT_EQ(e.label, test[1].labels[0]);

  // A limit spanning two files; later files are not read (batch 5 may be absent).
  fs::remove(dir.file("data_batch_5.bin"));
  auto four = data::load_cifar10(true, dir.str(), 4);
  expect_matches(four->images(), four->labels(), std::vector<Record>(all.begin(), all.begin() + 4), 0);
  EXPECT_EQ(data::load_cifar10(true, dir.str(), 0)->size(), 0);
  expect_error([&] { data::load_cifar10(true, dir.str()); }, {"data_batch_5.bin", "no such file"});
}

TEST(Cifar10, FindsTheArchiveSubfolder) {
  TempDir dir;
  fs::create_directories(dir.file("cifar-10-batches-bin"));
  auto test = cifar10_records(2, 7);
  write_records(dir.file("cifar-10-batches-bin/test_batch.bin"), test);
  auto t = data::load_cifar10(false, dir.str());
  expect_matches(t->images(), t->labels(), test, 0);
  expect_error([&] { data::load_cifar10(true, dir.str()); },
               {dir.file("data_batch_1.bin"), dir.file("cifar-10-batches-bin/data_batch_1.bin"), "CIFAR-10"});
}

TEST(Cifar10, ReadFileWithMaxRecords) {
  TempDir dir;
  auto recs = cifar10_records(6, 2);
  write_records(dir.file("b.bin"), recs);
  data::CifarRecords r = data::read_cifar_file(dir.file("b.bin"), CifarVariant::Cifar10, CifarLabels::Fine, 4);
  EXPECT_EQ(r.labels.dtype(), DType::U8);
  expect_matches(r.images, r.labels, std::vector<Record>(recs.begin(), recs.begin() + 4), 0);
  r = data::read_cifar_file(dir.file("b.bin"), CifarVariant::Cifar10);
  expect_matches(r.images, r.labels, recs, 0);
  // The size check covers the whole file even when a prefix is read.
  write_records(dir.file("odd.bin"), recs, 1);
  expect_error([&] { data::read_cifar_file(dir.file("odd.bin"), CifarVariant::Cifar10, CifarLabels::Fine, 2); },
               {"odd.bin", "not a whole number"});
}

TEST(Cifar10, BadFilesNameTheFileAndTheProblem) {
  TempDir dir;
  auto recs = cifar10_records(3, 1);
  write_records(dir.file("trailing.bin"), recs, 5);
  expect_error([&] { data::read_cifar_file(dir.file("trailing.bin"), CifarVariant::Cifar10); },
               {"trailing.bin", "9224 bytes", "3073-byte CIFAR-10 records", "3 records and 5 extra bytes"});

  recs[2].labels[0] = 10;
  write_records(dir.file("label.bin"), recs);
  expect_error([&] { data::read_cifar_file(dir.file("label.bin"), CifarVariant::Cifar10); },
               {"label.bin", "record 2", "label 10", "0..9"});
  // Only the records read are checked.
  EXPECT_EQ(data::read_cifar_file(dir.file("label.bin"), CifarVariant::Cifar10, CifarLabels::Fine, 2).labels.numel(),
            2);

  write_records(dir.file("empty.bin"), {});
  expect_error([&] { data::read_cifar_file(dir.file("empty.bin"), CifarVariant::Cifar10); },
               {"empty.bin", "empty file"});
  expect_error([&] { data::read_cifar_file(dir.file("nope.bin"), CifarVariant::Cifar10); },
               {"nope.bin", "no such file", "CIFAR-10"});

  // In the loader, the bad file is named.
  write_records(dir.file("test_batch.bin"), recs);
  expect_error([&] { data::load_cifar10(false, dir.str()); }, {"test_batch.bin", "label 10"});
  fs::remove(dir.file("test_batch.bin"));
  expect_error([&] { data::load_cifar10(false, dir.str()); }, {"test_batch.bin", "missing file"});
}

std::vector<Record> cifar100_records(int count) {
  std::vector<Record> out;
  for (int i = 0; i < count; ++i)
    out.push_back(make_record({static_cast<uint8_t>((i * 7) % 20), static_cast<uint8_t>((i * 37 + 11) % 100)}, i));
  return out;
}

TEST(Cifar100, FineAndCoarseLabels) {
  TempDir dir;
  auto train = cifar100_records(7), test = cifar100_records(3);
  write_records(dir.file("train.bin"), train);
  write_records(dir.file("test.bin"), test);
  auto fine = data::load_cifar100(true, dir.str());
  expect_matches(fine->images(), fine->labels(), train, 1);
  auto coarse = data::load_cifar100(true, dir.str(), CifarLabels::Coarse);
  expect_matches(coarse->images(), coarse->labels(), train, 0);
  auto t = data::load_cifar100(false, dir.str(), CifarLabels::Fine, 2);
  expect_matches(t->images(), t->labels(), std::vector<Record>(test.begin(), test.begin() + 2), 1);

  TempDir outer;
  fs::create_directories(outer.file("cifar-100-binary"));
  write_records(outer.file("cifar-100-binary/test.bin"), test);
  auto sub = data::load_cifar100(false, outer.str(), CifarLabels::Coarse);
  expect_matches(sub->images(), sub->labels(), test, 0);
  expect_error([&] { data::load_cifar100(true, outer.str()); }, {"train.bin", "cifar-100-binary", "CIFAR-100"});
}

TEST(Cifar100, BadFilesNameTheFileAndTheProblem) {
  TempDir dir;
  // Three CIFAR-10-sized records are not a whole number of 3074-byte records.
  write_records(dir.file("c10.bin"), cifar10_records(3, 0));
  expect_error([&] { data::read_cifar_file(dir.file("c10.bin"), CifarVariant::Cifar100); },
               {"c10.bin", "9219 bytes", "3074-byte CIFAR-100 records", "2 label bytes (coarse, fine)",
                "2 records and 3071 extra bytes"});

  // Both label bytes are validated, whichever is used.
  auto recs = cifar100_records(4);
  recs[3].labels[0] = 20;
  write_records(dir.file("coarse.bin"), recs);
  for (CifarLabels which : {CifarLabels::Fine, CifarLabels::Coarse})
    expect_error([&] { data::read_cifar_file(dir.file("coarse.bin"), CifarVariant::Cifar100, which); },
                 {"coarse.bin", "record 3", "coarse label 20", "0..19"});
  recs = cifar100_records(4);
  recs[1].labels[1] = 100;
  write_records(dir.file("fine.bin"), recs);
  for (CifarLabels which : {CifarLabels::Fine, CifarLabels::Coarse})
    expect_error([&] { data::read_cifar_file(dir.file("fine.bin"), CifarVariant::Cifar100, which); },
                 {"fine.bin", "record 1", "fine label 100", "0..99"});

  fs::copy_file(dir.file("fine.bin"), dir.file("train.bin"));
  expect_error([&] { data::load_cifar100(true, dir.str()); }, {"train.bin", "fine label 100"});
  expect_error([&] { data::load_cifar100(false, dir.str()); }, {"test.bin", "missing file"});
}

template <size_t N>
void expect_sorted_unique_names(const std::array<const char*, N>& names) {
  std::set<std::string> seen;
  for (size_t i = 0; i < N; ++i) {
    ASSERT_NE(names[i], nullptr) << i;
    ASSERT_GT(std::strlen(names[i]), 0u) << i;
    seen.insert(names[i]);
    if (i > 0) {
      EXPECT_LT(std::string(names[i - 1]), std::string(names[i])) << i;  // the archives list them sorted
    }
  }
  EXPECT_EQ(seen.size(), N);
}

TEST(Cifar, ClassNames) {
  expect_sorted_unique_names(data::cifar10_classes());
  EXPECT_STREQ(data::cifar10_classes()[0], "airplane");
  EXPECT_STREQ(data::cifar10_classes()[3], "cat");
  EXPECT_STREQ(data::cifar10_classes()[9], "truck");
  expect_sorted_unique_names(data::cifar100_fine_classes());
  expect_sorted_unique_names(data::cifar100_coarse_classes());
  EXPECT_STREQ(data::cifar100_fine_classes()[0], "apple");
  EXPECT_STREQ(data::cifar100_fine_classes()[47], "maple_tree");
  EXPECT_STREQ(data::cifar100_fine_classes()[99], "worm");
  EXPECT_STREQ(data::cifar100_coarse_classes()[17], "trees");
  EXPECT_STREQ(data::cifar100_coarse_classes()[19], "vehicles_2");
}

}  // namespace
}  // namespace qslim
