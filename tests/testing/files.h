// Whole-file reads and writes for tests that damage files on purpose.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

namespace kvmart::testing {

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace kvmart::testing
