// Start-up preflight: each finding, with the exact command that fixes it,
// and none on a kernel tuned for the configuration.

#include "tooling/preflight.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "tooling/capacity_model.h"

namespace {

namespace pf = rg::server::preflight;

// A kernel and a server that agree: the defaults of this machine.
pf::KernelFacts tuned_kernel() {
  pf::KernelFacts k;
  k.somaxconn = 4096;
  k.file_max = 2'466'160;
  k.tcp_mem = {287'898, 383'865, 575'796};
  k.conntrack_max = 262'144;
  k.port_low = 32'768;
  k.port_high = 60'999;
  return k;
}

pf::ServerFacts default_server() {
  pf::ServerFacts s;
  s.backlog = 4096;
  s.listen_port = 8080;
  s.admin_port = 9090;
  s.capacity = 39'872;  // 2 workers x 19,936
  s.workers = 2;
  s.cpus = 2;
  s.nofile_soft = 20'000;
  s.nofile_hard = 20'000;
  s.reserved_slots = 64;
  return s;
}

struct Case {
  std::string name;
  std::function<void(pf::KernelFacts&, pf::ServerFacts&)> change;
  std::vector<std::pair<std::string, std::string>> findings;  // (part of what, exact fix)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Findings : public ::testing::TestWithParam<Case> {};

TEST_P(Findings, EachWithItsFix) {
  const Case& c = GetParam();
  pf::KernelFacts k = tuned_kernel();
  pf::ServerFacts s = default_server();
  c.change(k, s);
  const auto got = pf::check(k, s);
  ASSERT_EQ(got.size(), c.findings.size()) << [&] {
    std::string all;
    for (const auto& f : got) all += "\n  " + f.what + "; fix: " + f.fix;
    return all;
  }();
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NE(got[i].what.find(c.findings[i].first), std::string::npos) << got[i].what;
    EXPECT_EQ(got[i].fix, c.findings[i].second);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, Findings,
    ::testing::Values(
        Case{"tuned", [](pf::KernelFacts&, pf::ServerFacts&) {}, {}},
        Case{"unreadable_facts_are_not_findings",
             [](pf::KernelFacts& k, pf::ServerFacts&) { k = pf::KernelFacts{}; }, {}},
        Case{"somaxconn",
             [](pf::KernelFacts& k, pf::ServerFacts&) { k.somaxconn = 128; },
             {{"backlog 4096 exceeds net.core.somaxconn 128, so the kernel uses 128",
               "sysctl -w net.core.somaxconn=4096"}}},
        Case{"soft_nofile",
             [](pf::KernelFacts&, pf::ServerFacts& s) { s.nofile_soft = 1024; },
             {{"RLIMIT_NOFILE soft limit 1024 is below the hard limit 20000",
               "ulimit -Sn 20000 in the shell that starts ringgate, or LimitNOFILE=20000 in ringgate.service"}}},
        Case{"hard_nofile_costs_workers",
             [](pf::KernelFacts&, pf::ServerFacts& s) {
               s.capacity = 1'000'000;
               s.workers = 53;
             },
             {{"capacity 1000000 takes 53 workers on 2 CPUs",
               "LimitNOFILE=589824 in ringgate.service (with sysctl -w fs.nr_open=589824 if it is lower); then 2 "
               "workers suffice"},
              {"net.ipv4.tcp_mem caps TCP buffers at 575796 pages",
               "sysctl -w net.ipv4.tcp_mem=\"1000000 1250000 1500000\""},
              {"nf_conntrack_max 262144 is below the 1310720", "sysctl -w net.netfilter.nf_conntrack_max=1310720"}}},
        Case{"workers_chosen_by_hand_are_not_a_nofile_finding",
             [](pf::KernelFacts&, pf::ServerFacts& s) {
               s.capacity = 200'000;
               s.workers = 2;  // --workers 2 --table-slots-per-worker ...: the operator's call
             },
             {}},
        Case{"file_max",
             [](pf::KernelFacts& k, pf::ServerFacts&) { k.file_max = 100'000; },
             {{"fs.file-max 100000 is below the 131072 that 39872 connections need", "sysctl -w fs.file-max=131072"}}},
        Case{"tcp_mem_keeps_larger_fields",
             [](pf::KernelFacts& k, pf::ServerFacts&) { k.tcp_mem = {50'000, 60'000, 40'000}; },
             {{"net.ipv4.tcp_mem caps TCP buffers at 40000 pages (",
               "sysctl -w net.ipv4.tcp_mem=\"50000 60000 59808\""}}},
        Case{"conntrack",
             [](pf::KernelFacts& k, pf::ServerFacts&) { k.conntrack_max = 1'000; },
             {{"nf_conntrack_max 1000 is below the 65536", "sysctl -w net.netfilter.nf_conntrack_max=65536"}}},
        Case{"conntrack_not_loaded",
             [](pf::KernelFacts& k, pf::ServerFacts& s) {
               k.conntrack_max.reset();
               s.capacity = 10'000'000;
               s.workers = 2;
             },
             {{"fs.file-max 2466160 is below", "sysctl -w fs.file-max=12582912"},
              {"net.ipv4.tcp_mem", "sysctl -w net.ipv4.tcp_mem=\"10000000 12500000 15000000\""}}},
        Case{"listen_and_admin_ports_in_the_ephemeral_range",
             [](pf::KernelFacts& k, pf::ServerFacts&) {
               k.port_low = 1024;
               k.port_high = 65'535;
             },
             {{"listen port 8080 is inside net.ipv4.ip_local_port_range 1024-65535 and not reserved",
               "sysctl -w net.ipv4.ip_local_reserved_ports=8080"},
              {"admin port 9090 is inside", "sysctl -w net.ipv4.ip_local_reserved_ports=9090"}}},
        Case{"reserved_ports_are_kept_in_the_fix",
             [](pf::KernelFacts& k, pf::ServerFacts&) {
               k.port_low = 1024;
               k.port_high = 65'535;
               k.reserved_ports = "9000-9100,22222";
             },
             {{"listen port 8080", "sysctl -w net.ipv4.ip_local_reserved_ports=9000-9100,22222,8080"}}},
        Case{"port_zero_is_not_checked",
             [](pf::KernelFacts& k, pf::ServerFacts& s) {
               k.port_low = 1024;
               k.port_high = 65'535;
               s.listen_port = 0;
               s.admin_port = 0;
             },
             {}}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(ReservedPorts, ListsAndRanges) {
  EXPECT_FALSE(pf::port_reserved("", 8080));
  EXPECT_TRUE(pf::port_reserved("8080", 8080));
  EXPECT_TRUE(pf::port_reserved("22,8000-8100", 8080));
  EXPECT_TRUE(pf::port_reserved("22,8000-8100", 8000));
  EXPECT_TRUE(pf::port_reserved("22,8000-8100", 8100));
  EXPECT_FALSE(pf::port_reserved("22,8000-8100", 8101));
  EXPECT_FALSE(pf::port_reserved("x,y-z", 8080));
}

TEST(Thresholds, AreTheModels) {
  // The preflight and `ringgate tune plan` agree on every threshold.
  pf::KernelFacts k = tuned_kernel();
  pf::ServerFacts s = default_server();
  s.capacity = 3'000'000;
  s.workers = 2;
  k.file_max = rg::server::capacity::file_max_for(s.capacity, 1);
  k.conntrack_max = rg::server::capacity::conntrack_max_for(s.capacity);
  k.tcp_mem = rg::server::capacity::tcp_mem_for(s.capacity, rg::server::capacity::default_buffer_bytes, 4096);
  EXPECT_TRUE(pf::check(k, s).empty());
  k.file_max = *k.file_max - 1;
  k.conntrack_max = *k.conntrack_max - 1;
  k.tcp_mem[2] -= 1;
  EXPECT_EQ(pf::check(k, s).size(), 3u);
}

}  // namespace
