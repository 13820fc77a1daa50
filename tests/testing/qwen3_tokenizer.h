// The real Qwen3 tokenizer.json (installed by `make setup`, copied to the
// build's data folder), loaded once per test process.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace kvmart::testing {

// Aborts the test process with the reason when the file is missing or does
// not load: every test that uses it would fail anyway, and loudly is better.
inline const tokenizer::Tokenizer& Qwen3Tokenizer() {
  static const std::unique_ptr<tokenizer::Tokenizer> tok = [] {
    auto t = tokenizer::Tokenizer::Load(std::string(KVMART_DATA_DIR) + "/tokenizer.json");
    if (!t.ok()) {
      std::fprintf(stderr, "fatal: %s (run `make setup`)\n", t.status().ToString().c_str());
      std::abort();
    }
    return std::move(t).value();
  }();
  return *tok;
}

}  // namespace kvmart::testing
