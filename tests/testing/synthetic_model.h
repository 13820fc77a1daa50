// Synthetic checkpoints for tests, written once per test process into a
// temporary directory (real Hugging Face layout, real tokenizer.json).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "model/model.h"
#include "model/synth.h"
#include "temp_dir.h"

namespace kvmart::testing {

class SyntheticModels {
 public:
  // Directory of a checkpoint of `shape` (seed 1, bf16), created on first use.
  const std::string& Dir(const std::string& shape) {
    auto it = dirs_.find(shape);
    if (it != dirs_.end()) return it->second;
    SynthOptions o;
    o.shape = shape;
    o.out_dir = tmp_.Sub(shape);
    o.tokenizer_dir = KVMART_DATA_DIR;
    Status st = WriteSyntheticCheckpoint(o);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return dirs_[shape] = o.out_dir;
  }
  std::shared_ptr<const Model> Load(const std::string& shape) {
    auto it = models_.find(shape);
    if (it != models_.end()) return it->second;
    auto m = Model::Load(Dir(shape));
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return models_[shape] = std::shared_ptr<const Model>(std::move(m).value());
  }

 private:
  TempDir tmp_;
  std::map<std::string, std::string> dirs_;
  std::map<std::string, std::shared_ptr<const Model>> models_;
};

}  // namespace kvmart::testing
