// Pricing rules: the cost-model default price, the provider's fee split and
// storage billing. Pure functions over Money, so every back end prices alike.
#pragma once

#include <cstdint>

#include "market/money.h"

namespace kvmart::market {

// What a load is worth is anchored to what it saves: a fresh prefill.
struct CostModel {
  // Cost of a fresh prefill, in micros of the currency per 1,000 tokens. This is a
  // configuration input (the operator knows its hardware); 3,000 micros per 1k
  // tokens is $3 per million input tokens, a typical API input tariff.
  int64_t prefill_micros_per_1k_tokens = 3'000;
  // Default price of one load as a fraction of that prefill cost, in basis points:
  // 1,000 bps = 0.1, like the cache-read tariff of the big APIs.
  int64_t default_price_bps = 1'000;
};

// The provider's cut and its storage tariff.
struct FeeSchedule {
  int64_t fee_bps = 1'000;          // percentage fee on every charge (10%)
  int64_t fee_per_charge_micros = 0;  // flat fee per charge, added to the percentage
  int64_t storage_micros_per_gb_hour = 100;  // billed to the publisher; GB = 10^9 bytes
};

Status ValidateCostModel(const CostModel& m);
Status ValidateFeeSchedule(const FeeSchedule& f);

// ceil(tokens × prefill_micros_per_1k × bps / (1000 × 10000)). Rounded up so that a
// non-empty artifact is never free by accident of rounding.
StatusOr<Money> DefaultLoadPrice(const CostModel& m, int64_t tokens, Currency currency);

// Cost of the same tokens prefilled from scratch (for "cost saved" figures).
StatusOr<Money> FreshPrefillCost(const CostModel& m, int64_t tokens, Currency currency);

struct Split {
  Money publisher;  // price - fee
  Money provider;   // the fee
};
// fee = min(price, fee_per_charge + floor(price × fee_bps / 10000)). The
// percentage rounds down (the remainder stays with the publisher); the fee is
// capped at the price so a publisher's share is never negative.
StatusOr<Split> SplitCharge(const FeeSchedule& f, const Money& price);

// ceil(bytes × seconds × rate / (10^9 × 3600)): storage of `bytes` for `seconds`.
StatusOr<Money> StorageCharge(const FeeSchedule& f, int64_t bytes, int64_t seconds, Currency currency);
// ceil(bytes × micros_per_gb / 10^9): shipping `bytes` out of the provider at a
// $/GB egress tariff (GB = 10^9 bytes). Never free by accident of rounding.
StatusOr<Money> EgressCharge(int64_t bytes, int64_t micros_per_gb, Currency currency);

}  // namespace kvmart::market
