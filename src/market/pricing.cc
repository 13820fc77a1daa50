#include "market/pricing.h"

#include <limits>

namespace kvmart::market {

namespace {
StatusOr<int64_t> CeilDivToI64(__int128 num, __int128 den) {
  __int128 q = (num + den - 1) / den;
  if (q > std::numeric_limits<int64_t>::max()) return Status::OutOfRange("price overflow");
  return static_cast<int64_t>(q);
}
}  // namespace

Status ValidateCostModel(const CostModel& m) {
  if (m.prefill_micros_per_1k_tokens < 0) return Status::InvalidArgument("prefill cost must be >= 0");
  if (m.default_price_bps < 0 || m.default_price_bps > Money::kBasisPointsPerOne) {
    return Status::InvalidArgument("default price fraction must be in [0, 10000] bps");
  }
  return Status::Ok();
}

Status ValidateFeeSchedule(const FeeSchedule& f) {
  if (f.fee_bps < 0 || f.fee_bps > Money::kBasisPointsPerOne) return Status::InvalidArgument("fee must be in [0, 10000] bps");
  if (f.fee_per_charge_micros < 0) return Status::InvalidArgument("flat fee must be >= 0");
  if (f.storage_micros_per_gb_hour < 0) return Status::InvalidArgument("storage rate must be >= 0");
  return Status::Ok();
}

StatusOr<Money> DefaultLoadPrice(const CostModel& m, int64_t tokens, Currency currency) {
  KVMART_RETURN_IF_ERROR(ValidateCostModel(m));
  if (tokens < 0) return Status::InvalidArgument("token count must be >= 0");
  // tokens < 2^63, rate < 2^63, bps <= 10^4: the product may exceed 128 bits only
  // in absurd configurations, so bound the first product before multiplying.
  __int128 a = static_cast<__int128>(tokens) * m.prefill_micros_per_1k_tokens;
  if (a > (static_cast<__int128>(1) << 100)) return Status::OutOfRange("price overflow");
  KVMART_ASSIGN_OR_RETURN(int64_t micros, CeilDivToI64(a * m.default_price_bps, static_cast<__int128>(1000) * Money::kBasisPointsPerOne));
  return Money(micros, currency);
}

StatusOr<Money> FreshPrefillCost(const CostModel& m, int64_t tokens, Currency currency) {
  if (tokens < 0) return Status::InvalidArgument("token count must be >= 0");
  KVMART_ASSIGN_OR_RETURN(int64_t micros, CeilDivToI64(static_cast<__int128>(tokens) * m.prefill_micros_per_1k_tokens, 1000));
  return Money(micros, currency);
}

StatusOr<Split> SplitCharge(const FeeSchedule& f, const Money& price) {
  KVMART_RETURN_IF_ERROR(ValidateFeeSchedule(f));
  if (price.is_negative()) return Status::InvalidArgument("price must be >= 0");
  KVMART_ASSIGN_OR_RETURN(Money pct, MulBasisPointsFloor(price, f.fee_bps));
  int64_t fee = pct.micros();
  if (fee > price.micros() - f.fee_per_charge_micros) {
    fee = price.micros();  // cap (also avoids overflow of pct + flat)
  } else {
    fee += f.fee_per_charge_micros;
  }
  return Split{Money(price.micros() - fee, price.currency()), Money(fee, price.currency())};
}

StatusOr<Money> EgressCharge(int64_t bytes, int64_t micros_per_gb, Currency currency) {
  if (bytes < 0 || micros_per_gb < 0) return Status::InvalidArgument("egress bytes and price must be >= 0");
  const __int128 a = static_cast<__int128>(bytes) * micros_per_gb;  // < 2^126
  KVMART_ASSIGN_OR_RETURN(int64_t micros, CeilDivToI64(a, 1'000'000'000));
  return Money(micros, currency);
}

StatusOr<Money> StorageCharge(const FeeSchedule& f, int64_t bytes, int64_t seconds, Currency currency) {
  KVMART_RETURN_IF_ERROR(ValidateFeeSchedule(f));
  if (bytes < 0 || seconds < 0) return Status::InvalidArgument("bytes and seconds must be >= 0");
  __int128 a = static_cast<__int128>(bytes) * seconds;  // < 2^126
  if (a > (static_cast<__int128>(1) << 80) && f.storage_micros_per_gb_hour > 0) {
    // Avoid 128-bit overflow: divide first (loses the ceil only on absurd inputs).
    __int128 gbh = a / (static_cast<__int128>(1'000'000'000) * 3600);
    if (gbh > std::numeric_limits<int64_t>::max()) return Status::OutOfRange("storage charge overflow");
    KVMART_ASSIGN_OR_RETURN(int64_t m, CeilDivToI64(gbh * f.storage_micros_per_gb_hour, 1));
    return Money(m, currency);
  }
  KVMART_ASSIGN_OR_RETURN(int64_t micros, CeilDivToI64(a * f.storage_micros_per_gb_hour, static_cast<__int128>(1'000'000'000) * 3600));
  return Money(micros, currency);
}

}  // namespace kvmart::market
