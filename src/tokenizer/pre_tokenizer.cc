#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace kvmart::tokenizer {
namespace {

// ECMAScript WhiteSpace + LineTerminator (the JS `\s`), as class contents.
constexpr std::string_view kJsSpace =
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}";

constexpr std::string_view kContractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
constexpr std::string_view kContractionsExplicit =
    "(?:'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

std::string PcreError(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string TranslatePattern(std::string_view pattern) {
  std::string p;
  // Literal replacement of the contraction group first (the reference does
  // the same textual rewrite).
  for (size_t i = 0; i < pattern.size();) {
    if (pattern.substr(i, kContractions.size()) == kContractions) {
      p.append(kContractionsExplicit);
      i += kContractions.size();
    } else {
      p.push_back(pattern[i++]);
    }
  }
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      if (e == 's') {
        if (in_class) {
          out.append(kJsSpace);
        } else {
          out.append("[").append(kJsSpace).append("]");
        }
      } else if (e == 'S' && !in_class) {
        out.append("[^").append(kJsSpace).append("]");
      } else {
        out.push_back(c);
        out.push_back(e);
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out.push_back(c);
  }
  return out;
}

struct RegexSplitter::Impl {
  pcre2_code* code = nullptr;
  ~Impl() {
    if (code != nullptr) pcre2_code_free(code);
  }
};

RegexSplitter::RegexSplitter(std::unique_ptr<Impl> impl, std::string translated)
    : impl_(std::move(impl)), translated_(std::move(translated)) {}
RegexSplitter::~RegexSplitter() = default;

StatusOr<std::unique_ptr<RegexSplitter>> RegexSplitter::Create(std::string_view pattern) {
  std::string translated = TranslatePattern(pattern);
  auto impl = std::make_unique<Impl>();
  int err = 0;
  PCRE2_SIZE offset = 0;
  // NO_UTF_CHECK at match time is safe: Encode validates UTF-8 first.
  impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                             PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (impl->code == nullptr) {
    return Status::InvalidArgument("pre-tokenizer regex does not compile at offset " +
                                   std::to_string(offset) + ": " + PcreError(err));
  }
  // JIT is an optimisation: when unavailable the interpreter gives the same matches.
  (void)pcre2_jit_compile(impl->code, PCRE2_JIT_COMPLETE);
  return std::unique_ptr<RegexSplitter>(new RegexSplitter(std::move(impl), std::move(translated)));
}

Status RegexSplitter::SplitSpans(std::string_view text,
                                 std::vector<std::pair<size_t, size_t>>* spans) const {
  spans->clear();
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(impl_->code, nullptr), &pcre2_match_data_free);
  if (!md) return Status::ResourceExhausted("pcre2_match_data_create failed");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  size_t prev = 0;  // end of the last piece emitted
  while (pos < text.size()) {
    int rc = pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) return Status::Internal("pre-tokenizer regex match failed: " + PcreError(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    size_t b = ov[0], e = ov[1];
    if (b > prev) spans->emplace_back(prev, b - prev);
    if (e > b) {
      spans->emplace_back(b, e - b);
      prev = e;
      pos = e;
    } else {
      // Empty match: step over one code point so the scan always progresses.
      prev = b;
      pos = b + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
  if (prev < text.size()) spans->emplace_back(prev, text.size() - prev);
  return Status::Ok();
}

}  // namespace kvmart::tokenizer
