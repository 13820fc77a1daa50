#include "tokenizer/utf8.h"

namespace kvmart::tokenizer {
namespace {

// Bounds of the second byte for each lead byte (Unicode Table 3-7), which is
// what rules out overlongs, surrogates and values above U+10FFFF.
struct Lead {
  int len;
  unsigned char lo, hi;
};

Lead LeadInfo(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes of the maximal subpart starting at s[0] (>= 1) and whether
// it is a complete sequence (`complete`) or stopped at the end of input (`eof`).
size_t Scan(std::string_view s, bool* complete, bool* eof) {
  *complete = false;
  *eof = false;
  const auto b0 = static_cast<unsigned char>(s[0]);
  Lead lead = LeadInfo(b0);
  if (lead.len == 1) {
    *complete = true;
    return 1;
  }
  if (lead.len == 0) return 1;
  size_t i = 1;
  for (; i < static_cast<size_t>(lead.len); ++i) {
    if (i >= s.size()) {
      *eof = true;
      return i;
    }
    const auto b = static_cast<unsigned char>(s[i]);
    const unsigned char lo = i == 1 ? lead.lo : 0x80;
    const unsigned char hi = i == 1 ? lead.hi : 0xBF;
    if (b < lo || b > hi) return i;
  }
  *complete = true;
  return i;
}

}  // namespace

int Utf8SequenceLength(std::string_view s) {
  bool complete = false, eof = false;
  size_t n = Scan(s, &complete, &eof);
  if (complete) return static_cast<int>(n);
  return eof ? -1 : 0;
}

Status ValidateUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII fast path: most text is mostly ASCII.
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    bool complete = false, eof = false;
    size_t n = Scan(s.substr(i), &complete, &eof);
    if (!complete) {
      return Status::InvalidArgument("invalid UTF-8 at byte offset " + std::to_string(i) +
                                     (eof ? " (truncated sequence at end of input)" : ""));
    }
    i += n;
  }
  return Status::Ok();
}

void AppendUtf8Lossy(std::string_view bytes, std::string* out) {
  size_t i = 0;
  while (i < bytes.size()) {
    size_t start = i;
    while (i < bytes.size() && static_cast<unsigned char>(bytes[i]) < 0x80) ++i;
    out->append(bytes.substr(start, i - start));
    if (i >= bytes.size()) break;
    bool complete = false, eof = false;
    size_t n = Scan(bytes.substr(i), &complete, &eof);
    if (complete) {
      out->append(bytes.substr(i, n));
    } else {
      out->append("\xEF\xBF\xBD");
    }
    i += n;
  }
}

size_t StableUtf8PrefixLength(std::string_view bytes) {
  // A completable truncated sequence is at most 3 bytes long, so only the
  // last few lead positions need checking.
  const size_t n = bytes.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    size_t pos = n - back;
    const auto b = static_cast<unsigned char>(bytes[pos]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    bool complete = false, eof = false;
    size_t len = Scan(bytes.substr(pos), &complete, &eof);
    if (eof && pos + len == n) return pos;  // truncated but completable: hold it back
    return n;
  }
  return n;
}

}  // namespace kvmart::tokenizer
