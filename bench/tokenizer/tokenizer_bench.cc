// kvmart-bench-tokenizer [--mb N] [--only prose|code|cjk] [--no-oracle]
//
// Encode throughput (MB/s, one thread) on three texts, and the reference
// JavaScript tokenizer's throughput on the same texts, run by node in the same
// invocation, as a ratio. Texts:
//   prose: generated English (Zipf-distributed common words plus a long tail of
//          pseudo-words, punctuation, numbers, paragraphs);
//   code:  this repository's own C++ sources, repeated to size;
//   cjk:   generated Chinese (Zipf over the CJK Unified Ideographs block, with
//          punctuation).
// Each text is cut into ~4 KB chunks at line ends and split into three passes
// over *different* slices (so a pass never replays text the pre-token cache
// has just seen); both sides encode chunk by chunk and report their fastest
// pass. Figures are wall-clock on one thread.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "common/usage.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using kvmart::tokenizer::Tokenizer;

void AppendCp(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Samples ranks 0..n-1 with P(k) ~ 1/(k+1)^s, from a fixed seed.
class Zipf {
 public:
  Zipf(size_t n, double s) : cdf_(n) {
    double sum = 0;
    for (size_t k = 0; k < n; ++k) cdf_[k] = (sum += 1.0 / std::pow(static_cast<double>(k + 1), s));
    for (double& c : cdf_) c /= sum;
  }
  size_t operator()(std::mt19937_64& rng) const {
    double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
    return static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

std::string Prose(size_t bytes) {
  static const char* kWords[] = {
      "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with",
      "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "not", "word",
      "but", "what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your",
      "how", "said", "an", "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many",
      "then", "them", "write", "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him",
      "two", "has", "look", "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most",
      "people", "my", "over", "know", "water", "than", "call", "first", "who", "may", "down", "side", "been",
      "now", "find", "any", "new", "work", "part", "take", "get", "place", "made", "live", "where", "after",
      "back", "little", "only", "round", "man", "year", "came", "show", "every", "good", "me", "give", "our",
      "under", "name", "very", "through", "just", "form", "sentence", "great", "think", "say", "help", "low",
      "line", "differ", "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old", "too",
      "same", "tell", "does", "set", "three", "want", "air", "well", "also", "play", "small", "end", "put",
      "home", "read", "hand", "port", "large", "spell", "add", "even", "land", "here", "must", "big", "high",
      "such", "follow", "act", "why", "ask", "men", "change", "went", "light", "kind", "off", "need", "house",
      "picture", "try", "us", "again", "animal", "point", "mother", "world", "near", "build", "self", "earth",
      "father", "head", "stand", "own", "page", "should", "country", "found", "answer", "school", "grow",
      "study", "still", "learn", "plant", "cover", "food", "sun", "four", "between", "state", "keep", "eye",
      "never", "last", "let", "thought", "city", "tree", "cross", "farm", "hard", "start", "might", "story",
      "saw", "far", "sea", "draw", "left", "late", "run", "don't", "while", "press", "close", "night", "real",
      "life", "few", "north", "open", "seem", "together", "next", "white", "children", "begin", "got", "walk",
      "example", "ease", "paper", "group", "always", "music", "those", "both", "mark", "often", "letter",
      "until", "mile", "river", "car", "feet", "care", "second", "book", "carry", "took", "science", "eat",
      "room", "friend", "began", "idea", "fish", "mountain", "stop", "once", "base", "hear", "horse", "cut",
      "sure", "watch", "color", "face", "wood", "main", "enough", "plain", "girl", "usual", "young", "ready",
      "above", "ever", "red", "list", "though", "feel", "talk", "bird", "soon", "body", "dog", "family",
      "direct", "pose", "leave", "song", "measure", "door", "product", "black", "short", "numeral", "class",
      "wind", "question", "happen", "complete", "ship", "area", "half", "rock", "order", "fire", "south",
      "problem", "piece", "told", "knew", "pass", "since", "top", "whole", "king", "space", "heard", "best",
      "hour", "better", "true", "during", "hundred", "five", "remember", "step", "early", "hold", "west",
      "ground", "interest", "reach", "fast", "verb", "sing", "listen", "six", "table", "travel", "less",
      "morning", "ten", "simple", "several", "vowel", "toward", "war", "lay", "against", "pattern", "slow",
      "center", "love", "person", "money", "serve", "appear", "road", "map", "rain", "rule", "govern", "pull",
      "cold", "notice", "voice", "unit", "power", "town", "fine", "certain", "fly", "fall", "lead", "cry",
      "dark", "machine", "note", "wait", "plan", "figure", "star", "box", "noun", "field", "rest", "correct",
      "able", "pound", "done", "beauty", "drive", "stood", "contain", "front", "teach", "week", "final",
      "gave", "green", "oh", "quick", "develop", "ocean", "warm", "free", "minute", "strong", "special",
      "mind", "behind", "clear", "tail", "produce", "fact", "street", "inch", "multiply", "nothing", "course",
      "stay", "wheel", "full", "force", "blue", "object", "decide", "surface", "deep", "moon", "island",
      "foot", "system", "busy", "test", "record", "boat", "common", "gold", "possible", "plane", "stead",
      "dry", "wonder", "laugh", "thousand", "ago", "ran", "check", "game", "shape", "equate", "hot", "miss",
      "brought", "heat", "snow", "tire", "bring", "yes", "distant", "fill", "east", "paint", "language",
  };
  static const char* kSyl[] = {"ka", "ri", "mo", "ten", "sul", "pra", "vi", "gon", "el", "tha", "quo", "zer",
                               "lin", "dra", "fe", "nis", "bor", "ul", "chi", "wes", "pho", "str", "ight", "ous"};
  std::mt19937_64 rng(7);
  Zipf zipf(std::size(kWords), 1.0);
  std::string s;
  size_t sentence = 0, para = 0;
  while (s.size() < bytes) {
    std::string w;
    if (rng() % 100 < 12) {  // long tail: rare words and names the cache has not seen
      for (size_t k = 0, n = 2 + rng() % 3; k < n; ++k) w += kSyl[rng() % std::size(kSyl)];
    } else {
      w = kWords[zipf(rng)];
    }
    if (rng() % 100 < 2) w = std::to_string(rng() % 100000);
    if (sentence == 0) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
    s += w;
    ++sentence;
    if (sentence > 6 && rng() % 100 < 10) {
      s += ". ";
      sentence = 0;
      if (++para % 6 == 0) {
        s.back() = '\n';
        s += '\n';
      }
    } else if (rng() % 100 < 8) {
      s += ", ";
    } else {
      s += ' ';
    }
  }
  return s;
}

std::string Code(size_t bytes) {
  std::string all;
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(KVMART_SOURCE_DIR) / "src")) {
    auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".cc" || ext == ".h")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    all += ss.str();
  }
  if (all.empty()) all = "int main() { return 0; }\n";
  std::string s;
  while (s.size() < bytes) s += all;
  return s;
}

std::string Cjk(size_t bytes) {
  std::mt19937_64 rng(11);
  const size_t n = 0x9FA5 - 0x4E00 + 1;
  std::vector<char32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<char32_t>(0x4E00 + i);
  std::shuffle(order.begin(), order.end(), rng);  // fixed "frequency" ranking
  Zipf zipf(n, 1.05);
  static const char32_t kPunct[] = {U'，', U'。', U'、', U'；', U'：', U'？', U'！', U'「', U'」'};
  std::string s;
  size_t run = 0;
  while (s.size() < bytes) {
    AppendCp(order[zipf(rng)], &s);
    if (++run > 4 && rng() % 100 < 12) {
      AppendCp(kPunct[rng() % std::size(kPunct)], &s);
      run = 0;
      if (rng() % 100 < 10) s += "\n";
    }
  }
  return s;
}

// ~4 KB chunks cut after a newline (or at a character boundary when a line is long).
std::vector<std::string> Chunks(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = std::min(text.size(), pos + 4096);
    size_t nl = text.rfind('\n', end - 1);
    if (end < text.size() && nl != std::string::npos && nl > pos) end = nl + 1;
    while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
    out.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

struct Result {
  double bytes = 0, seconds = 0, tokens = 0;
  double MBps() const { return seconds > 0 ? bytes / seconds / 1e6 : 0; }
};

constexpr int kPasses = 3;
size_t PassOf(size_t chunk, size_t chunks) { return chunk * kPasses / chunks; }

Result RunKvmart(const Tokenizer& tok, const std::vector<std::string>& chunks) {
  Result r;
  r.seconds = 1e30;
  for (size_t p = 0; p < kPasses; ++p) {
    size_t tokens = 0;
    double bytes = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < chunks.size(); ++i) {
      if (PassOf(i, chunks.size()) != p) continue;
      const std::string& c = chunks[i];
      bytes += static_cast<double>(c.size());
      auto ids = tok.Encode(c);
      if (!ids.ok()) {
        std::cerr << "encode failed: " << ids.status().ToString() << "\n";
        std::exit(1);
      }
      tokens += ids->size();
    }
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (bytes / sec > r.bytes / r.seconds) {
      r.seconds = sec;
      r.bytes = bytes;
    }
    r.tokens += static_cast<double>(tokens);
  }
  return r;
}

bool RunOracle(const std::vector<std::string>& chunks, Result* r) {
  fs::path in = fs::temp_directory_path() / ("kvmart-bench-" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream f(in, std::ios::binary);
    for (size_t i = 0; i < chunks.size(); ++i) {
      f << nlohmann::json::array({PassOf(i, chunks.size()), chunks[i]}).dump() << "\n";
    }
  }
  std::string cmd = "node '" + std::string(KVMART_SOURCE_DIR) + "/tests/tokenizer/oracle.mjs' bench '" +
                    std::string(KVMART_SOURCE_DIR) + "/tools/npm/node_modules' '" + in.string() + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return false;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  fs::remove(in);
  if (rc != 0) return false;
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) return false;
  r->bytes = j["bytes"].get<double>();
  r->seconds = j["seconds"].get<double>();
  r->tokens = j["tokens"].get<double>();
  return true;
}

// Cost growth on inputs without a pre-token boundary: the input grows 8x;
// linear is 8x, n log n about 10x, quadratic 64x. Best of three each.
double GrowthFactor(const Tokenizer& tok, const std::function<std::string(size_t)>& make) {
  double best[2] = {1e300, 1e300};
  const size_t sizes[2] = {size_t{32} << 10, size_t{256} << 10};
  for (int i = 0; i < 2; ++i) {
    const std::string s = make(sizes[i]);
    for (int rep = 0; rep < 3; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      auto ids = tok.Encode(s);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!ids.ok()) {
        std::cerr << "encode failed: " << ids.status().ToString() << "\n";
        std::exit(1);
      }
      best[i] = std::min(best[i], sec);
    }
  }
  return best[1] / std::max(best[0], 1e-9);
}

void ReportPathological(const Tokenizer& tok) {
  struct Case {
    const char* name;
    std::function<std::string(size_t)> make;
  };
  const Case cases[] = {
      {"long word", [](size_t n) {
         std::string s;
         for (int i = 0; s.size() < n; ++i) s += "abcdefghij"[(i * 7) % 10];
         return s;
       }},
      {"one emoji repeated", [](size_t n) {
         std::string s;
         while (s.size() < n) s += "\xF0\x9F\x98\x80";
         return s;
       }},
      {"newlines", [](size_t n) { return std::string(n, '\n'); }},
      {"spaces", [](size_t n) { return std::string(n, ' ') + "x"; }},
  };
  std::printf("\npathological inputs, 32 KiB -> 256 KiB (8x; linear 8x, n log n ~10x, quadratic 64x):\n");
  for (const Case& c : cases) std::printf("  %-20s time grew %.1fx\n", c.name, GrowthFactor(tok, c.make));
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 2;
  bool oracle = true;
  std::string only;
  const kvmart::bench::Usage usage(
      "usage: kvmart-bench-tokenizer [--mb N] [--only prose|code|cjk] [--no-oracle]\n"
      "Encode throughput against the reference tokenizer (node), and cost growth on pathological inputs.\n");
  usage.HandleHelp(argc, argv);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mb") {
      mb = std::atof(usage.Value(argc, argv, &i).c_str());
    } else if (a == "--only") {
      only = usage.Value(argc, argv, &i);
    } else if (a == "--no-oracle") {
      oracle = false;
    } else {
      usage.Fail("unknown option " + a);
    }
  }
  const char* env = std::getenv("KVMART_DATA_DIR");
  std::string data = env != nullptr && *env != '\0' ? env : KVMART_DATA_DIR;
  auto t0 = std::chrono::steady_clock::now();
  auto tok = Tokenizer::Load(data + "/tokenizer.json");
  if (!tok.ok()) {
    std::cerr << "error: " << tok.status().ToString() << "\n";
    return 1;
  }
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tokenizer.json loaded in %.2f s; texts of %.1f MB each, one thread, fastest of 3 passes over distinct slices\n", load_s,
              mb);
  std::printf("%-6s %10s %12s %12s %12s %8s\n", "text", "tokens", "kvmart MB/s", "oracle MB/s", "ratio",
              "B/token");
  const size_t bytes = static_cast<size_t>(mb * 1e6);
  struct Text {
    const char* name;
    std::string body;
  };
  Text texts[] = {{"prose", Prose(bytes * kPasses)}, {"code", Code(bytes * kPasses)}, {"cjk", Cjk(bytes * kPasses)}};
  bool mismatch = false;
  for (const Text& t : texts) {
    if (!only.empty() && only != t.name) continue;
    auto chunks = Chunks(t.body);
    Result k = RunKvmart(**tok, chunks);
    Result o;
    const bool have_oracle = oracle && RunOracle(chunks, &o);
    if (oracle && !have_oracle) {
      // The baseline is part of the figure; without it the run says so and fails.
      std::fprintf(stderr, "error: the reference tokenizer (node + tools/npm) failed; run `make setup`, or pass --no-oracle\n");
      return 1;
    }
    if (have_oracle && o.tokens != k.tokens) mismatch = true;
    if (have_oracle) {
      std::printf("%-6s %10.0f %12.1f %12.2f %11.1fx %8.2f\n", t.name, k.tokens, k.MBps(), o.MBps(),
                  k.MBps() / o.MBps(), static_cast<double>(t.body.size()) / k.tokens);
    } else {
      std::printf("%-6s %10.0f %12.1f %12s %12s %8.2f\n", t.name, k.tokens, k.MBps(), "-", "-", static_cast<double>(t.body.size()) / k.tokens);
    }
  }
  ReportPathological(**tok);
  if (mismatch) {
    std::fprintf(stderr, "error: token counts differ from the oracle\n");
    return 1;
  }
  return 0;
}
