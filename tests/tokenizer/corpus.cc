#include "corpus.h"

#include <random>
#include <string_view>

namespace kvmart::tokenizer::testing {
namespace {

void AppendCp(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

constexpr std::string_view kWords[] = {
    "the", "of", "and", "to", "in", "is", "that", "it", "was", "for", "on", "are", "with", "as", "I",
    "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "word", "but", "what",
    "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how",
    "said", "an", "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many",
    "then", "them", "would", "write", "like", "so", "these", "her", "long", "make", "thing", "see",
    "him", "two", "has", "look", "more", "day", "could", "go", "come", "did", "number", "sound", "no",
    "most", "people", "my", "over", "know", "water", "than", "call", "first", "who", "may", "down",
    "side", "been", "now", "find", "cache", "tokenizer", "prefill", "artifact", "ledger", "receipt",
    "Qwen", "kvmart", "inference", "bit-exact", "content-addressed", "don't", "it's", "we'll",
    "they're", "I'VE", "She'd", "can't", "O'Neill", "naïve", "café", "résumé", "Zürich", "façade",
    "coöperate", "Москва", "привет", "Ελληνικά", "λόγος", "straße", "İstanbul", "ǅemal", "ﬁne",
    "Ⅻ", "x²", "½", "①", "ﾊﾝｶｸ", "ｆｕｌｌｗｉｄｔｈ", "MiXeD", "CamelCaseIdentifier", "snake_case_name",
    "HTTP/1.1", "e.g.", "i.e.", "U.S.A.", "$1,234.56", "100%", "#hashtag", "@mention", "user@example.com",
    "https://example.com/a?b=c&d=e#f", "C++20", "--flag=value", "~/path/to/file.txt", "¿Qué?", "¡Hola!",
};

constexpr std::string_view kCode[] = {
    "int main(int argc, char** argv) {\n  return 0;\n}\n",
    "for (size_t i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}",
    "def f(x):\n    if x <= 1:\n        return x\n    return f(x - 1) + f(x - 2)\n",
    "const ids = tokenizer.encode(text, { add_special_tokens: false });\n",
    "#include <vector>\n#include \"base/status.h\"\n\nnamespace kvmart {\n",
    "SELECT id, name FROM accounts WHERE balance >= 0 ORDER BY id DESC;",
    "    }\n  }\n}\n\n\n",
    "x=>x*2; y = [1, 2, 3].map(x => x ** 2); // comment",
    "if (a && b || !c) { throw new Error(`bad: ${a}`); }",
    "std::unique_ptr<Foo> p = std::make_unique<Foo>(42);",
    "<div class=\"a\"><span>text</span></div>",
    "{\"key\": [1, 2.5e-3, true, null], \"nested\": {\"x\": \"y\"}}",
    "\r\n\tmov eax, [rbp-8]\r\n\tret\r\n",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "    # indented comment with trailing spaces   \n",
    "a+=1;b-=2;c*=3;d/=4;e%=5;f<<=6;g>>=7;h&=8;i|=9;j^=10;",
    "````markdown\n## Heading\n- item\n- [ ] todo\n````",
};

constexpr std::string_view kSpecial[] = {
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    // Near misses that must stay ordinary text.
    "<|im_start", "im_end|>", "<think", "</ think>", "< |im_end|>", "<|IM_END|>", "<<|im_end|>>",
};

constexpr char32_t kEmoji[] = {
    0x1F600, 0x1F602, 0x1F923, 0x1F60D, 0x1F44D, 0x1F64F, 0x1F525, 0x2764, 0x1F680, 0x1F389,
    0x1F468, 0x1F469, 0x1F467, 0x1F466, 0x1F9D1, 0x1F4BB, 0x1F3F3, 0x1F308, 0x2705, 0x26A0,
    0x1F916, 0x1F9E0, 0x1F4A9, 0x1F937, 0x1F926, 0x270C, 0x1F91D, 0x1FAE0, 0x1F97A, 0x1F30D,
};

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}

  // Uniform in [0, n): the raw engine output is fixed by the standard, unlike
  // the distributions, so the corpus is the same with every library.
  size_t U(size_t n) { return static_cast<size_t>(rng_() % n); }
  bool Chance(size_t percent) { return U(100) < percent; }
  char32_t Range(char32_t lo, char32_t hi) { return lo + static_cast<char32_t>(U(hi - lo + 1)); }

  std::string Prose() {
    std::string s;
    size_t words = 3 + U(40);
    for (size_t i = 0; i < words; ++i) {
      std::string w(kWords[U(std::size(kWords))]);
      if (i == 0 || Chance(8)) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
      if (Chance(5)) {
        for (char& c : w) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
      s += w;
      if (Chance(10)) s += ",;:"[U(3)];
      if (Chance(7)) s += std::string(".!?")[U(3)];
      if (Chance(3)) s += "'s";
      if (i + 1 < words) s += Chance(95) ? " " : (Chance(50) ? "  " : "\n");
    }
    s += ".";
    return s;
  }

  std::string Code() {
    std::string s;
    size_t n = 1 + U(4);
    for (size_t i = 0; i < n; ++i) s += kCode[U(std::size(kCode))];
    return s;
  }

  std::string Numbers() {
    std::string s;
    size_t n = 1 + U(6);
    for (size_t i = 0; i < n; ++i) {
      size_t len = 1 + U(Chance(20) ? 60 : 8);
      for (size_t k = 0; k < len; ++k) s += static_cast<char>('0' + U(10));
      switch (U(8)) {
        case 0: s += "."; break;
        case 1: s += ","; break;
        case 2: s += " "; break;
        case 3: s += "-"; break;
        case 4: s += "e+"; break;
        case 5: AppendCp(Range(0x0660, 0x0669), &s); break;  // Arabic-Indic digit
        case 6: AppendCp(Range(0xFF10, 0xFF19), &s); break;  // fullwidth digit
        default: s += " x "; break;
      }
    }
    return s;
  }

  std::string Whitespace() {
    static constexpr char32_t kWs[] = {' ', ' ', ' ', '\t', '\n', '\n', '\r', 0x0B, 0x0C,
                                       0xA0, 0x3000, 0x2003, 0x2028, 0x2029, 0x202F, 0x205F,
                                       0x1680, 0x0085, 0xFEFF, 0x200B, 0x180E};
    std::string s;
    size_t parts = 1 + U(5);
    for (size_t p = 0; p < parts; ++p) {
      size_t run = 1 + U(Chance(10) ? 200 : 8);
      for (size_t i = 0; i < run; ++i) {
        if (Chance(15)) {
          s += "\r\n";
        } else {
          AppendCp(kWs[U(std::size(kWs))], &s);
        }
      }
      if (Chance(70)) s += kWords[U(std::size(kWords))];
    }
    return s;
  }

  std::string Cjk() {
    std::string s;
    size_t n = 1 + U(60);
    for (size_t i = 0; i < n; ++i) {
      switch (U(10)) {
        case 0: AppendCp(Range(0x3041, 0x3096), &s); break;  // hiragana
        case 1: AppendCp(Range(0x30A1, 0x30FA), &s); break;  // katakana
        case 2: AppendCp(Range(0xAC00, 0xD7A3), &s); break;  // hangul syllables
        case 3: AppendCp(U"，。！？「」、：；（）"[U(11)], &s); break;
        case 4:
          if (Chance(30)) s += ' ';
          else AppendCp(Range(0x4E00, 0x4FFF), &s);  // the most common CJK block start
          break;
        default: AppendCp(Range(0x4E00, 0x9FA5), &s); break;
      }
    }
    return s;
  }

  std::string Arabic() {
    std::string s;
    size_t n = 2 + U(40);
    for (size_t i = 0; i < n; ++i) {
      if (Chance(15)) {
        s += ' ';
      } else {
        AppendCp(Range(0x0621, 0x064A), &s);
        if (Chance(25)) AppendCp(Range(0x064B, 0x0652), &s);  // harakat (combining)
      }
      if (Chance(3)) AppendCp(U"؟،؛"[U(3)], &s);
    }
    return s;
  }

  std::string Devanagari() {
    std::string s;
    size_t n = 2 + U(30);
    for (size_t i = 0; i < n; ++i) {
      if (Chance(15)) {
        s += ' ';
        continue;
      }
      AppendCp(Range(0x0915, 0x0939), &s);
      if (Chance(20)) AppendCp(0x093C, &s);                      // nukta: NFC recomposes some
      if (Chance(40)) AppendCp(Range(0x093E, 0x094C), &s);       // vowel sign
      if (Chance(10)) AppendCp(0x094D, &s);                      // virama
      if (Chance(5)) AppendCp(Range(0x0958, 0x095F), &s);        // composition-excluded
      if (Chance(5)) AppendCp(Range(0x0966, 0x096F), &s);        // digits
      if (Chance(3)) AppendCp(0x0964, &s);                       // danda
    }
    return s;
  }

  std::string Emoji() {
    std::string s;
    size_t n = 1 + U(12);
    for (size_t i = 0; i < n; ++i) {
      AppendCp(kEmoji[U(std::size(kEmoji))], &s);
      if (Chance(30)) AppendCp(Range(0x1F3FB, 0x1F3FF), &s);  // skin tone
      if (Chance(20)) AppendCp(0xFE0F, &s);                   // VS16
      if (Chance(35)) AppendCp(0x200D, &s);                   // ZWJ
      if (Chance(10)) {                                       // flag
        AppendCp(Range(0x1F1E6, 0x1F1FF), &s);
        AppendCp(Range(0x1F1E6, 0x1F1FF), &s);
      }
      if (Chance(5)) {  // keycap
        s += static_cast<char>('0' + U(10));
        AppendCp(0xFE0F, &s);
        AppendCp(0x20E3, &s);
      }
      if (Chance(15)) s += ' ';
    }
    return s;
  }

  std::string Combining() {
    std::string s;
    size_t n = 1 + U(20);
    for (size_t i = 0; i < n; ++i) {
      switch (U(6)) {
        case 0:
        case 1:  // Latin letter + 1..3 combining marks (NFC composes some, reorders others)
          s += static_cast<char>((Chance(50) ? 'a' : 'A') + U(26));
          for (size_t k = 0, m = 1 + U(3); k < m; ++k) AppendCp(Range(0x0300, 0x036F), &s);
          break;
        case 2:  // conjoining Hangul jamo: NFC builds syllables
          AppendCp(Range(0x1100, 0x1112), &s);
          AppendCp(Range(0x1161, 0x1175), &s);
          if (Chance(50)) AppendCp(Range(0x11A8, 0x11C2), &s);
          break;
        case 3:  // precomposed Latin-1/Extended-A letters
          AppendCp(Range(0x00C0, 0x017F), &s);
          break;
        case 4:  // combining mark with no base, or after punctuation/space
          if (Chance(50)) s += " ";
          AppendCp(Range(0x0300, 0x0315), &s);
          break;
        default:  // Vietnamese-style stacked diacritics
          AppendCp(U"ếệởữằẫ"[U(6)], &s);
          break;
      }
      if (Chance(20)) s += ' ';
    }
    return s;
  }

  std::string Special() {
    std::string s;
    size_t n = 1 + U(6);
    for (size_t i = 0; i < n; ++i) {
      s += kSpecial[U(std::size(kSpecial))];
      if (Chance(60)) s += Chance(50) ? Prose() : std::string(kWords[U(std::size(kWords))]);
      if (Chance(30)) s += "\n";
    }
    return s;
  }

  std::string LongWord() {
    std::string s;
    size_t len = 100 + U(Chance(20) ? 3000 : 400);
    switch (U(6)) {
      case 0:
        for (size_t i = 0; i < len; ++i) s += static_cast<char>('a' + U(26));
        break;
      case 1:
        for (size_t i = 0; i < len; ++i) s += "abcab"[U(5)];
        break;
      case 2:
        s.assign(len, "=-_*#~."[U(7)]);
        break;
      case 3:
        for (size_t i = 0; i < len; ++i) s += static_cast<char>('0' + U(10));
        break;
      case 4:
        for (size_t i = 0; i < len / 3; ++i) AppendCp(Range(0x4E00, 0x9FA5), &s);
        break;
      default:
        for (size_t i = 0; i < len / 4; ++i) AppendCp(kEmoji[U(4)], &s);
        break;
    }
    return s;
  }

  std::string Ascii() {
    std::string s;
    size_t n = 1 + U(50);
    for (size_t i = 0; i < n; ++i) s += static_cast<char>(Chance(10) ? U(32) : 32 + U(95));
    return s;
  }

  std::string Segment() {
    switch (U(13)) {
      case 0: case 1: case 2: return Prose();
      case 3: return Code();
      case 4: return Numbers();
      case 5: return Whitespace();
      case 6: return Cjk();
      case 7: return Arabic();
      case 8: return Devanagari();
      case 9: return Emoji();
      case 10: return Combining();
      case 11: return Special();
      default: return Chance(30) ? LongWord() : Ascii();
    }
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace

std::vector<std::string> GenerateOracleCorpus(size_t count, uint64_t seed) {
  std::vector<std::string> out = {
      "", " ", "\n", "\r\n", "'s", "'S", "'ll", "'\xC5\xBF", "\xEF\xBB\xBF", "\xC2\x85", "a\xC2\x85 b",
      "x \xEF\xBB\xBF y", "\xC2\xA0\xC2\xA0x", "   \n", "a  \n\n b", "<|im_end|>", "<|im_end|><|im_end|>",
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
      "e\xCC\x81", "\xE1\x84\x80\xE1\x85\xA1", "<think>\xCC\x81", "\xCC\x81<think>",
  };
  Gen g(seed);
  while (out.size() < count) {
    std::string s;
    size_t parts = g.Chance(40) ? 1 : 2 + g.U(5);
    for (size_t i = 0; i < parts; ++i) {
      if (i > 0) s += g.Chance(60) ? " " : (g.Chance(50) ? "\n" : "");
      s += g.Segment();
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace kvmart::tokenizer::testing
