// Which certificate name covers which SNI (proto/tls_names.h), table-driven.
#include <gtest/gtest.h>

#include "proto/tls_names.h"

namespace {

using rg::proto::tls::name_matches;

struct Case {
  const char* pattern;
  const char* host;
  bool matches;
};

constexpr Case cases[] = {
    {"example.com", "example.com", true},
    {"example.com", "EXAMPLE.com", true},           // case-insensitive
    {"Example.COM", "example.com", true},
    {"example.com", "example.com.", true},          // a fully qualified name's root dot
    {"example.com.", "example.com", true},
    {"example.com", "www.example.com", false},
    {"www.example.com", "example.com", false},
    {"example.com", "example.co", false},
    {"example.com", "", false},
    {"", "example.com", false},
    {"*.example.com", "a.example.com", true},
    {"*.example.com", "A.Example.Com", true},
    {"*.example.com", "example.com", false},        // the wildcard is one whole label
    {"*.example.com", "a.b.example.com", false},    // never more than one
    {"*.example.com", ".example.com", false},       // an empty label is no label
    {"*.example.com", "aexample.com", false},
    {"*.com", "example.com", false},                // too wide to honour
    {"*", "example.com", false},
    {"*.", "example.", false},
    {"a*.example.com", "ab.example.com", false},    // partial-label wildcards are not supported
    {"*.*.example.com", "a.b.example.com", false},
    {"localhost", "localhost", true},
    {"127.0.0.1", "127.0.0.1", true},               // an IP literal is compared as text
};

TEST(TlsNames, Table) {
  for (const Case& c : cases)
    EXPECT_EQ(name_matches(c.pattern, c.host), c.matches) << "pattern '" << c.pattern << "' host '" << c.host << "'";
}

}  // namespace
