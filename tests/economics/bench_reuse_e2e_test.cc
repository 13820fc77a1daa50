// Smoke test of the real `kvmart bench reuse` and `kvmart economics` commands on
// the tiny synthetic shape: the table, CSV, JSON and plots are written and every
// length is bit-exact on every reuse path, the resident (Attach) one included.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "../testing/synthetic_model.h"

namespace kvmart {
namespace {

namespace fs = std::filesystem;

struct ShellRun {
  int status = -1;
  std::string out;
};

ShellRun Shell(const std::string& cmd) {
  ShellRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.status = ::pclose(p);
  return r;
}

std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(BenchReuse, TinyShapeWritesTableCsvJsonPlotsAndIsExact) {
  testing::SyntheticModels models;
  const std::string model = models.Dir("tiny");
  testing::TempDir tmp;
  const std::string out = tmp.Sub("bench");
  const std::string kvmart = std::string(KVMART_BINARY_DIR) + "/kvmart";
  const ShellRun run = Shell(kvmart + " bench reuse --model " + model +
                        " --lengths 40,300 --question 8 --decode 4 --repeat 2 --threads 2 --quiet --name tiny --out " +
                        out + " 2>&1");
  ASSERT_EQ(run.status, 0) << run.out;
  EXPECT_NE(run.out.find("reuse resident s"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("reuse memory s"), std::string::npos) << run.out;
  // The provider's hit path comes first in the table.
  EXPECT_LT(run.out.find("reuse resident s"), run.out.find("reuse memory s")) << run.out;
  EXPECT_NE(run.out.find("exact"), std::string::npos);
  EXPECT_EQ(run.out.find("FALSE"), std::string::npos) << run.out;

  const auto j = nlohmann::json::parse(Slurp(fs::path(out) / "reuse.json"));
  EXPECT_TRUE(j.at("all_exact").get<bool>());
  ASSERT_EQ(j.at("lengths").size(), 2u);
  for (const auto& l : j.at("lengths")) {
    EXPECT_TRUE(l.at("exact").get<bool>());
    for (const char* path : {"resident", "memory", "disk_raw", "disk_lossless"}) {
      const auto& p = l.at("reuse").at(path);
      EXPECT_TRUE(p.at("tokens_identical").get<bool>()) << path;
      EXPECT_TRUE(p.at("logits_identical").get<bool>()) << path;
      EXPECT_GT(p.at("total_s").at("median").get<double>(), 0) << path;
      EXPECT_GT(p.at("question_s").at("median").get<double>(), 0) << path;
      EXPECT_GT(l.at("ratio").at(path).get<double>(), 0) << path;
    }
    // Attach is timed (min ≤ median ≤ max over the 2 repeats) and the whole
    // reuse is at least its question prefill.
    const auto& res = l.at("reuse").at("resident");
    EXPECT_LE(res.at("load_s").at("min").get<double>(), res.at("load_s").at("median").get<double>());
    EXPECT_LE(res.at("load_s").at("median").get<double>(), res.at("load_s").at("max").get<double>());
    EXPECT_GE(res.at("total_s").at("median").get<double>(), res.at("question_s").at("median").get<double>());
    EXPECT_GT(l.at("scratch").at("wall_s").at("median").get<double>(), 0);
    EXPECT_GT(l.at("sizes").at("raw_bytes").get<uint64_t>(), 0u);
    EXPECT_EQ(l.at("greedy_tokens").size(), 4u);
  }
  EXPECT_EQ(j["lengths"][1]["sizes"]["raw_bytes_per_token"].get<double>(),
            j["model"]["kv_bytes_per_token"].get<double>());

  const std::string csv = Slurp(fs::path(out) / "reuse.csv");
  std::istringstream lines(csv);
  std::string header, row1, row2, extra;
  std::getline(lines, header);
  std::getline(lines, row1);
  std::getline(lines, row2);
  EXPECT_EQ(header.rfind("doc_tokens,question_tokens,decode_tokens,exact,", 0), 0u) << header;
  EXPECT_NE(header.find(",resident_s,resident_min,resident_max,"), std::string::npos) << header;
  EXPECT_NE(header.find(",ratio_resident,"), std::string::npos) << header;
  EXPECT_EQ(row1.rfind("40,8,4,1,", 0), 0u) << row1;
  EXPECT_EQ(row2.rfind("300,8,4,1,", 0), 0u) << row2;
  EXPECT_FALSE(std::getline(lines, extra) && !extra.empty());
  EXPECT_FALSE(Slurp(fs::path(out) / "reuse.txt").empty());

  for (const char* plot : {"time_vs_length", "ratio_vs_length", "cost_vs_length"}) {
    const std::string png = Slurp(fs::path(out) / (std::string(plot) + ".png"));
    const std::string svg = Slurp(fs::path(out) / (std::string(plot) + ".svg"));
    EXPECT_EQ(png.substr(0, 4), "\x89PNG") << plot;
    EXPECT_NE(svg.find("<svg"), std::string::npos) << plot;
  }
  EXPECT_FALSE(fs::exists(fs::path(out) / "work"));  // artifacts cleaned up

  // The cost model over the same run.
  const ShellRun econ = Shell(kvmart + " economics --from " + out + "/reuse.json --out " + tmp.Sub("econ") + " 2>&1");
  ASSERT_EQ(econ.status, 0) << econ.out;
  EXPECT_NE(econ.out.find("hot document: 3774 tokens"), std::string::npos) << econ.out;
  const auto e = nlohmann::json::parse(Slurp(fs::path(tmp.Sub("econ")) / "economics.json"));
  EXPECT_EQ(e.at("lengths").size(), 2u);
  for (const auto& l : e.at("lengths")) {
    // A read is priced as a hit on the resident pages.
    EXPECT_EQ(l.at("hit_path").get<std::string>(), "resident");
    EXPECT_EQ(l.at("reuse_hit_usd").get<double>(), l.at("reuse_resident_usd").get<double>());
    EXPECT_EQ(l.at("tariff").at("provider_cost_usd").get<double>(), l.at("reuse_resident_usd").get<double>());
  }
  EXPECT_EQ(Slurp(fs::path(tmp.Sub("econ")) / "cost_vs_length.png").substr(0, 4), "\x89PNG");
}

TEST(BenchReuse, BadArgumentsFail) {
  testing::SyntheticModels models;
  const std::string kvmart = std::string(KVMART_BINARY_DIR) + "/kvmart";
  testing::TempDir tmp;
  const ShellRun run = Shell(kvmart + " bench reuse --model " + models.Dir("tiny") + " --lengths 40 --question 0 --out " +
                        tmp.Sub("x") + " --quiet 2>&1");
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.out.find("question"), std::string::npos) << run.out;
}

}  // namespace
}  // namespace kvmart
