// control/secrets.h: reading secrets from files, the length and character
// rules, the error that says how to make a good one, constant-time equality.

#include "control/secrets.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace {

using rg::server::read_secret;
using rg::server::Secret;
using rg::server::SecretKind;

// A file holding `bytes`, removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& bytes) {
    char name[] = "/tmp/ringgate-secret-XXXXXX";
    const int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    close(fd);
    path = name;
  }
  ~TempFile() { std::remove(path.c_str()); }
};

TEST(Secrets, LengthRules) {
  struct Case {
    std::string bytes;
    SecretKind kind;
    bool ok;
    std::string kept = {};  // when ok
  } cases[] = {
      {std::string(32, 'k'), SecretKind::hs256_key, true, std::string(32, 'k')},
      {std::string(32, 'k') + "\n", SecretKind::hs256_key, true, std::string(32, 'k')},
      {std::string(32, 'k') + "\r\n", SecretKind::hs256_key, true, std::string(32, 'k')},
      {std::string(31, 'k') + "\n", SecretKind::hs256_key, false},
      {"k", SecretKind::hs256_key, false},
      {"", SecretKind::hs256_key, false},
      {std::string(256, 'k'), SecretKind::hs256_key, true, std::string(256, 'k')},
      {std::string(257, 'k'), SecretKind::hs256_key, false},
      {std::string(31, 't'), SecretKind::api_token, false},
      {std::string(4096, 't'), SecretKind::api_token, true, std::string(4096, 't')},
      {std::string(4097, 't'), SecretKind::api_token, false},
      {std::string(20, 't') + " " + std::string(20, 't'), SecretKind::api_token, false},
      {std::string(40, 't') + "\x01", SecretKind::api_token, false},
      {std::string(40, 't') + "\xC3\xA9", SecretKind::api_token, false},
      // An HS256 key is bytes: anything goes.
      {std::string(40, '\0') + " \xC3\xA9", SecretKind::hs256_key, true, std::string(40, '\0') + " \xC3\xA9"},
  };
  for (const auto& c : cases) {
    const TempFile f(c.bytes);
    const Secret s = read_secret(f.path, c.kind);
    EXPECT_EQ(s.ok(), c.ok) << c.bytes.size() << " bytes: " << s.error;
    if (c.ok) {
      EXPECT_EQ(s.bytes, c.kept);
    } else {
      EXPECT_TRUE(s.bytes.empty());
      EXPECT_NE(s.error.find(f.path), std::string::npos) << s.error;
      EXPECT_NE(s.error.find("head -c 32 /dev/urandom | base64 > " + f.path), std::string::npos) << s.error;
    }
  }
}

TEST(Secrets, ShortOnesSayTheRuleAndTheSetting) {
  const TempFile f("x\n");
  const Secret key = read_secret(f.path, SecretKind::hs256_key);
  EXPECT_NE(key.error.find("jwt_secret_file"), std::string::npos) << key.error;
  EXPECT_NE(key.error.find("holds 1 byte;"), std::string::npos) << key.error;
  EXPECT_NE(key.error.find("RFC 7518"), std::string::npos) << key.error;
  const Secret token = read_secret(f.path, SecretKind::api_token);
  EXPECT_NE(token.error.find("api_token_file"), std::string::npos) << token.error;
  EXPECT_NE(token.error.find("at least 32 bytes"), std::string::npos) << token.error;
}

TEST(Secrets, MissingFile) {
  const Secret s = read_secret("/nonexistent/ringgate.key", SecretKind::api_token);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error.find("No such file"), std::string::npos) << s.error;
}

TEST(Secrets, SameSecret) {
  EXPECT_TRUE(rg::server::same_secret("abc", "abc"));
  EXPECT_FALSE(rg::server::same_secret("abc", "abd"));
  EXPECT_FALSE(rg::server::same_secret("abc", "abcd"));
  EXPECT_TRUE(rg::server::same_secret("", ""));
}

}  // namespace
