// CIFAR-10 and CIFAR-100 in their binary distributions (cifar-10-batches-bin/, cifar-100-binary/).
// Each file is a sequence of fixed-size records: the label byte(s), then 3072 pixel bytes (the red,
// green and blue 32x32 planes, rows top to bottom).
//   CIFAR-10:  data_batch_1.bin .. data_batch_5.bin (train), test_batch.bin; record = label + 3072.
//   CIFAR-100: train.bin, test.bin; record = coarse label (0..19) + fine label (0..99) + 3072.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace qslim::data {

enum class CifarVariant { Cifar10, Cifar100 };
enum class CifarLabels { Fine, Coarse };  // CIFAR-100's 100 classes or its 20 superclasses

// Images u8 [N, 3, 32, 32] and labels u8 [N] of one binary file. Every record's label bytes are
// validated (CIFAR-100: both). With max_records >= 0 only the first max_records are read (the size
// check still covers the whole file). Errors name the file and what was expected vs found: a missing
// file, a size that is not a whole number of records, an empty file, a label out of range.
struct CifarRecords {
  Tensor images;
  Tensor labels;
};
CifarRecords read_cifar_file(const std::string& path, CifarVariant variant, CifarLabels labels = CifarLabels::Fine,
                             int64_t max_records = -1);

// `dir` holds the files, or is the folder the archive was extracted into (holding
// cifar-10-batches-bin/ or cifar-100-binary/). The training split concatenates the batches in order;
// `limit` >= 0 keeps only the first `limit` examples (later files are then not read).
std::shared_ptr<TensorDataset> load_cifar10(bool train, const std::string& dir, int64_t limit = -1);
std::shared_ptr<TensorDataset> load_cifar100(bool train, const std::string& dir, CifarLabels labels = CifarLabels::Fine,
                                             int64_t limit = -1);

// Class names indexed by label, as in the archives' meta files.
const std::array<const char*, 10>& cifar10_classes();
const std::array<const char*, 100>& cifar100_fine_classes();
const std::array<const char*, 20>& cifar100_coarse_classes();

}  // namespace qslim::data
