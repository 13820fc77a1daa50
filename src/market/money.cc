#include "market/money.h"

#include <cstdlib>
#include <limits>

namespace kvmart::market {

StatusOr<Currency> Currency::Parse(std::string_view code) {
  if (code.size() != 3) return Status::InvalidArgument("currency must be three letters, got '" + std::string(code) + "'");
  Currency c;
  for (size_t i = 0; i < 3; ++i) {
    char ch = code[i];
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
    if (ch < 'A' || ch > 'Z') return Status::InvalidArgument("currency must be three letters, got '" + std::string(code) + "'");
    c.code_[i] = ch;
  }
  return c;
}

StatusOr<int64_t> CheckedAddI64(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return Status::OutOfRange("amount overflow");
  return r;
}

StatusOr<int64_t> CheckedMulI64(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return Status::OutOfRange("amount overflow");
  return r;
}

static Status SameCurrency(const Money& a, const Money& b) {
  if (!(a.currency() == b.currency())) {
    return Status::InvalidArgument("currency mismatch: " + a.currency().str() + " vs " + b.currency().str());
  }
  return Status::Ok();
}

StatusOr<Money> CheckedAdd(const Money& a, const Money& b) {
  KVMART_RETURN_IF_ERROR(SameCurrency(a, b));
  KVMART_ASSIGN_OR_RETURN(int64_t r, CheckedAddI64(a.micros(), b.micros()));
  return Money(r, a.currency());
}

StatusOr<Money> CheckedSub(const Money& a, const Money& b) {
  KVMART_RETURN_IF_ERROR(SameCurrency(a, b));
  int64_t r;
  if (__builtin_sub_overflow(a.micros(), b.micros(), &r)) return Status::OutOfRange("amount overflow");
  return Money(r, a.currency());
}

StatusOr<Money> CheckedNeg(const Money& a) {
  if (a.micros() == std::numeric_limits<int64_t>::min()) return Status::OutOfRange("amount overflow");
  return Money(-a.micros(), a.currency());
}

StatusOr<Money> CheckedMul(const Money& a, int64_t factor) {
  KVMART_ASSIGN_OR_RETURN(int64_t r, CheckedMulI64(a.micros(), factor));
  return Money(r, a.currency());
}

StatusOr<Money> MulBasisPointsFloor(const Money& a, int64_t bps) {
  if (bps < 0 || bps > Money::kBasisPointsPerOne) return Status::InvalidArgument("basis points must be in [0, 10000]");
  // |a| * 10000 fits in 128 bits; the result is at most |a| so it fits in int64.
  __int128 p = static_cast<__int128>(a.micros()) * bps;
  return Money(static_cast<int64_t>(p / Money::kBasisPointsPerOne), a.currency());
}

StatusOr<Money> Money::Parse(std::string_view s, Currency currency) {
  std::string_view in = s;
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return Status::InvalidArgument("empty amount");
  __int128 whole = 0, frac = 0;
  int frac_digits = 0;
  bool seen_dot = false, any_digit = false;
  for (char ch : s) {
    if (ch == '.') {
      if (seen_dot) return Status::InvalidArgument("bad amount '" + std::string(in) + "'");
      seen_dot = true;
      continue;
    }
    if (ch < '0' || ch > '9') return Status::InvalidArgument("bad amount '" + std::string(in) + "'");
    any_digit = true;
    if (seen_dot) {
      if (++frac_digits > 6) return Status::InvalidArgument("amount '" + std::string(in) + "' has more than 6 decimals");
      frac = frac * 10 + (ch - '0');
    } else {
      whole = whole * 10 + (ch - '0');
      if (whole > std::numeric_limits<int64_t>::max()) return Status::OutOfRange("amount '" + std::string(in) + "' overflows");
    }
  }
  if (!any_digit) return Status::InvalidArgument("bad amount '" + std::string(in) + "'");
  for (int i = frac_digits; i < 6; ++i) frac *= 10;
  __int128 total = whole * kMicrosPerUnit + frac;
  if (neg) total = -total;
  if (total > std::numeric_limits<int64_t>::max() || total < std::numeric_limits<int64_t>::min()) {
    return Status::OutOfRange("amount '" + std::string(in) + "' overflows");
  }
  return Money(static_cast<int64_t>(total), currency);
}

std::string Money::DecimalString() const {
  // Work in unsigned to handle INT64_MIN.
  uint64_t mag = micros_ < 0 ? (~static_cast<uint64_t>(micros_) + 1) : static_cast<uint64_t>(micros_);
  std::string frac = std::to_string(mag % kMicrosPerUnit);
  frac.insert(0, 6 - frac.size(), '0');
  return (micros_ < 0 ? "-" : "") + std::to_string(mag / kMicrosPerUnit) + "." + frac;
}

std::string Money::ToString() const { return DecimalString() + " " + currency_.str(); }

}  // namespace kvmart::market
