// ring/ktls.h: the kernel TLS probe answers on any kernel, names the reason
// when the kernel says no, and leaves no descriptor behind.  Kernels with and
// without the tls module both pass; the run prints which one this was.

#include "ring/ktls.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>

namespace {

using rg::ring::Ktls;
using rg::ring::ktls_refusal_reason;
using rg::ring::ktls_text;
using rg::ring::KtlsProbe;
using rg::ring::probe_ktls;

// Open descriptors of this process: entries of /proc/self/fd (the directory's
// own descriptor counts in every call alike).
int open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (const dirent* entry = readdir(dir))
    if (entry->d_name[0] != '.') ++count;
  closedir(dir);
  return count;
}

TEST(Ktls, ProbeAnswersAndClosesEverything) {
  const int before = open_fds();
  ASSERT_GT(before, 0);
  // More than once: the second probe must not trip over the first's sockets
  // (an ephemeral port each time, nothing left listening).
  for (int i = 0; i < 3; ++i) {
    const KtlsProbe p = probe_ktls();
    // Loopback works wherever these tests run, so the kernel was asked.
    ASSERT_NE(p.state, Ktls::unknown) << p.reason;
    if (p.available()) {
      EXPECT_EQ(p.error, 0);
      EXPECT_TRUE(p.step.empty());
      EXPECT_TRUE(p.reason.empty());
    } else {
      EXPECT_EQ(p.state, Ktls::unavailable);
      EXPECT_NE(p.error, 0);
      EXPECT_EQ(p.step, "setsockopt(TCP_ULP)");
      EXPECT_FALSE(p.reason.empty());
      EXPECT_EQ(p.reason, ktls_refusal_reason(p.error));
    }
    if (i == 0) {
      std::cout << "[ kTLS     ] " << ktls_text(p.state);
      if (!p.available()) std::cout << ": " << std::strerror(p.error) << ": " << p.reason;
      std::cout << "\n";
    }
  }
  EXPECT_EQ(open_fds(), before);
}

TEST(Ktls, RefusalReasons) {
  struct Case {
    int error;
    const char* says;  // a phrase the sentence must hold
  } cases[] = {
      {ENOENT, "the kernel has no tls module (modprobe tls"},
      {ENOPROTOOPT, "4.13"},
      {ENOTCONN, "not connected"},
      {EEXIST, "already has an upper-layer protocol"},
      {EPERM, "refused tls to this process"},
      {EACCES, "refused tls to this process"},
      {EINVAL, "setsockopt(TCP_ULP, \"tls\") failed: Invalid argument"},
      {ENOMEM, "failed: Cannot allocate memory"},
  };
  for (const Case& c : cases) {
    const std::string reason = ktls_refusal_reason(c.error);
    EXPECT_NE(reason.find(c.says), std::string::npos) << c.error << ": " << reason;
  }
}

TEST(Ktls, StateText) {
  EXPECT_EQ(ktls_text(Ktls::available), "available");
  EXPECT_EQ(ktls_text(Ktls::unavailable), "unavailable");
  EXPECT_EQ(ktls_text(Ktls::unknown), "unknown");
}

}  // namespace
