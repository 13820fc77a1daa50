// Money: an amount in integer micro-units of one currency.
//
// Why integers: a ledger must add up exactly, forever. One unit of the currency
// (e.g. one US dollar) is 1,000,000 micros, so a per-load price of a fraction of
// a cent is still exact. Every arithmetic operation is checked and returns a
// Status instead of wrapping: an overflowing balance is a bug to surface, never a
// number to store. No floating point is used anywhere on this path.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace kvmart::market {

// ISO-4217-like code: exactly three upper-case ASCII letters ("USD").
class Currency {
 public:
  constexpr Currency() : code_{'U', 'S', 'D'} {}
  static StatusOr<Currency> Parse(std::string_view code);
  std::string str() const { return std::string(code_.data(), code_.size()); }
  friend bool operator==(const Currency&, const Currency&) = default;

 private:
  std::array<char, 3> code_;
};

class Money {
 public:
  static constexpr int64_t kMicrosPerUnit = 1'000'000;
  static constexpr int64_t kBasisPointsPerOne = 10'000;

  constexpr Money() = default;
  constexpr Money(int64_t micros, Currency currency) : micros_(micros), currency_(currency) {}
  static Money Zero(Currency c) { return Money(0, c); }

  // "12.5" or "-0.000001" in units of the currency → micros; rejects more than six
  // decimals, stray characters and values that do not fit in int64.
  static StatusOr<Money> Parse(std::string_view decimal, Currency currency);

  int64_t micros() const { return micros_; }
  Currency currency() const { return currency_; }
  bool is_negative() const { return micros_ < 0; }
  bool is_zero() const { return micros_ == 0; }

  // "12.500000 USD" — exact, six decimals.
  std::string ToString() const;
  // "12.500000" without the currency.
  std::string DecimalString() const;

  friend bool operator==(const Money&, const Money&) = default;

 private:
  int64_t micros_ = 0;
  Currency currency_;
};

// Checked arithmetic. Currency mismatch → InvalidArgument; overflow → OutOfRange.
StatusOr<Money> CheckedAdd(const Money& a, const Money& b);
StatusOr<Money> CheckedSub(const Money& a, const Money& b);
StatusOr<Money> CheckedNeg(const Money& a);
StatusOr<Money> CheckedMul(const Money& a, int64_t factor);

// a × bps / 10,000 rounded toward zero (floor for non-negative amounts). Used for
// percentage fees: rounding down means the fee never exceeds the stated percentage,
// and the remainder stays with the publisher.
StatusOr<Money> MulBasisPointsFloor(const Money& a, int64_t bps);

// Raw checked int64 helpers, shared by the pricing code.
StatusOr<int64_t> CheckedAddI64(int64_t a, int64_t b);
StatusOr<int64_t> CheckedMulI64(int64_t a, int64_t b);

}  // namespace kvmart::market
