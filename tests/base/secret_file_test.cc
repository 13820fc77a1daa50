#include "base/secret_file.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "testing/temp_dir.h"

namespace kvmart {
namespace {

unsigned ModeOf(const std::string& path) {
  struct stat sb {};
  EXPECT_EQ(::stat(path.c_str(), &sb), 0) << path;
  return sb.st_mode & 0777;
}

size_t EntriesIn(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

// The umask of a careless shell must not make a secret readable, not even
// for a moment (the file is 0600 from creation, not chmod'ed afterwards).
TEST(SecretFileTest, WrittenWithMode0600WhateverTheUmask) {
  testing::TempDir tmp;
  const mode_t old = ::umask(0);
  const std::string path = tmp.Sub("admin.key");
  Status st = WriteSecretFile(path, "s3cret\n", SecretWrite::kCreateOnly);
  ::umask(old);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(ModeOf(path), 0600u);
  auto text = ReadSecretFile(path);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "s3cret\n");
  EXPECT_EQ(EntriesIn(tmp.path()), 1u) << "no temporary file is left";
}

TEST(SecretFileTest, CreateOnlyNeverReplacesAndReplaceDoes) {
  testing::TempDir tmp;
  const std::string path = tmp.Sub("provider.key");
  ASSERT_TRUE(WriteSecretFile(path, "first", SecretWrite::kCreateOnly).ok());
  EXPECT_EQ(WriteSecretFile(path, "second", SecretWrite::kCreateOnly).code(), Status::Code::kAlreadyExists);
  EXPECT_EQ(*ReadSecretFile(path), "first");
  ASSERT_TRUE(WriteSecretFile(path, "third", SecretWrite::kReplace).ok());
  EXPECT_EQ(*ReadSecretFile(path), "third");
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(EntriesIn(tmp.path()), 1u);
}

TEST(SecretFileTest, FailuresAreReportedAndLeaveNothing) {
  testing::TempDir tmp;
  // A directory that does not exist: the error is returned, not ignored.
  EXPECT_EQ(WriteSecretFile(tmp.Sub("missing/admin.key"), "x", SecretWrite::kReplace).code(),
            Status::Code::kIOError);
  EXPECT_EQ(ReadSecretFile(tmp.Sub("absent")).status().code(), Status::Code::kNotFound);
  // A secret others can read is refused rather than trusted.
  const std::string loose = tmp.Sub("loose.key");
  std::ofstream(loose) << "x";
  ::chmod(loose.c_str(), 0644);
  EXPECT_EQ(ReadSecretFile(loose).status().code(), Status::Code::kPermissionDenied);
}

}  // namespace
}  // namespace kvmart
