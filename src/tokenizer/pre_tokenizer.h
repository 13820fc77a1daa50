// The Split pre-tokenizer: a regex (from tokenizer.json) cuts normalized text
// into pre-tokens; matches and the gaps between them are both kept
// ("Isolated" behaviour). Compiled with PCRE2 in UTF+UCP mode, JIT.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace kvmart::tokenizer {

class RegexSplitter {
 public:
  // Compiles a tokenizer.json regex written in the Rust `regex`/Oniguruma
  // dialect, rewritten to the reference semantics (see TranslatePattern).
  static StatusOr<std::unique_ptr<RegexSplitter>> Create(std::string_view pattern);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Fills *spans with (offset, length) of each pre-token of `text`
  // (well-formed UTF-8), in order; the spans tile `text` exactly. Thread-safe.
  Status SplitSpans(std::string_view text, std::vector<std::pair<size_t, size_t>>* spans) const;
  // The same, always through PCRE2 (SplitSpans takes an exact ASCII fast path
  // for the Qwen2 pattern); exposed so tests can compare the two.
  Status SplitSpansPcre2(std::string_view text, std::vector<std::pair<size_t, size_t>>* spans) const;

  const std::string& translated_pattern() const { return translated_; }

 private:
  struct Impl;
  explicit RegexSplitter(std::unique_ptr<Impl> impl, std::string translated);
  std::unique_ptr<Impl> impl_;
  std::string translated_;
};

// Rewrites a tokenizer.json pattern for PCRE2 so that it matches like the
// reference (the JavaScript tokenizer the oracle test runs):
//  - `\s`/`\S` become ECMAScript's white-space set (Zs, TAB..CR, LS, PS and
//    U+FEFF), not PCRE2's Unicode notion;
//  - the case-insensitive contraction group `(?i:'s|'t|...)` becomes explicit
//    [sS]-style classes, as the reference rewrites it, so no Unicode case
//    folding (e.g. U+017F) applies.
std::string TranslatePattern(std::string_view pattern);

}  // namespace kvmart::tokenizer
