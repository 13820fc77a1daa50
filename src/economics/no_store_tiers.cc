// Built when src/store has no implementation yet: only the file tiers exist.
#include "economics/tiers.h"

namespace kvmart::economics {

bool StoreAvailable() { return false; }

StatusOr<std::unique_ptr<Tiers>> OpenStoreTiers(const std::string&) {
  return Status::FailedPrecondition("this build has no store (src/store)");
}

}  // namespace kvmart::economics
