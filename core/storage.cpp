#include "core/storage.h"

#include "core/allocator.h"

namespace qslim {

Storage::Storage(size_t nbytes) : data_(cpu_alloc(nbytes)), nbytes_(nbytes) {}
Storage::~Storage() { cpu_free(data_, nbytes_); }

}  // namespace qslim
