// `ringgate tune`: profiles, the state file, and apply / rollback / check
// against a fake /proc/sys in a temporary directory (the real kernel is
// exercised by tests/integration/test_tune.py, inside network namespaces).

#include "tooling/tune.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tooling/capacity_model.h"

namespace {

namespace tune = rg::server::tune;
namespace cap = rg::server::capacity;
namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// A temporary tree: proc/ (a fake /proc/sys), etc/ (sysctl.d), state.
class Tree {
 public:
  Tree() {
    std::string pattern = ::testing::TempDir() + "ringgate_tune_XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    EXPECT_NE(::mkdtemp(buf.data()), nullptr);
    root_ = buf.data();
    paths.proc_root = (root_ / "proc").string();
    paths.sysctl_dir = (root_ / "etc").string();
    paths.state_file = (root_ / "var" / "state").string();
    // As the kernel prints them: tab-separated fields, a trailing newline.
    set("net.core.somaxconn", "4096");
    set("net.ipv4.tcp_mem", "287898\t383865\t575796");
    set("net.ipv4.ip_local_port_range", "32768\t60999");
    set("net.ipv4.tcp_fin_timeout", "60");
    set("net.ipv4.tcp_tw_reuse", "2");
    set("fs.file-max", "2466160");
  }
  ~Tree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path file(const std::string& key) const {
    std::string rel = key;
    for (char& c : rel)
      if (c == '.') c = '/';
    return root_ / "proc" / rel;
  }
  void set(const std::string& key, const std::string& value) { write(file(key), value + "\n"); }
  std::string get(const std::string& key) const { return read(file(key)); }
  std::map<std::string, std::string> snapshot() const {
    std::map<std::string, std::string> all;
    for (const auto& e : fs::recursive_directory_iterator(root_ / "proc"))
      if (e.is_regular_file()) all[e.path().string()] = read(e.path());
    return all;
  }
  fs::path conf() const { return paths.conf_path(); }
  fs::path state() const { return paths.state_file; }
  const fs::path& root() const { return root_; }

  tune::Paths paths;

 private:
  fs::path root_;
};

std::vector<tune::Entry> profile(const std::string& text) {
  std::vector<tune::Entry> entries;
  std::string error;
  EXPECT_TRUE(tune::parse_profile(text, "test.conf", entries, error)) << error;
  return entries;
}

struct Outcome {
  int status;
  std::string out, err;
};

Outcome apply(const Tree& t, const std::string& text, bool dry_run = false) {
  std::ostringstream out, err;
  const int status = tune::apply(t.paths, profile(text), "test", dry_run, out, err);
  return {status, out.str(), err.str()};
}

Outcome rollback(const Tree& t) {
  std::ostringstream out, err;
  const int status = tune::rollback(t.paths, out, err);
  return {status, out.str(), err.str()};
}

Outcome check(const Tree& t, const std::string& text) {
  std::ostringstream out, err;
  const int status = tune::check(t.paths, profile(text), out, err);
  return {status, out.str(), err.str()};
}

const char* const kProfile =
    "# a comment about the file\n"
    "\n"
    "# why somaxconn\n"
    "net.core.somaxconn = 16384\n"
    "; why tcp_mem\n"
    "net.ipv4.tcp_mem = 1000000   1250000\t1500000\n"
    "net.ipv4.ip_local_port_range = 10000 65535\n"
    "net.ipv4.tcp_fin_timeout = 15\n"
    "net.ipv4.tcp_tw_reuse = 1\n"
    "fs.file-max = 196608\n"
    "-net.netfilter.nf_conntrack_max = 131072\n";

// ------------------------------------------------------------ profiles

TEST(Profile, Parses) {
  const auto e = profile(kProfile);
  ASSERT_EQ(e.size(), 7u);
  EXPECT_EQ(e[0].key, "net.core.somaxconn");
  EXPECT_EQ(e[0].value, "16384");
  EXPECT_EQ(e[0].comments, std::vector<std::string>{"why somaxconn"});  // not the file's comment
  EXPECT_EQ(e[1].value, "1000000 1250000 1500000");
  EXPECT_EQ(e[1].comments, std::vector<std::string>{"why tcp_mem"});
  EXPECT_FALSE(e[5].optional);
  EXPECT_EQ(e[5].key, "fs.file-max");
  EXPECT_TRUE(e[6].optional);
  EXPECT_EQ(e[6].key, "net.netfilter.nf_conntrack_max");
}

TEST(Profile, ErrorsNameTheLine) {
  const std::pair<std::string, std::string> cases[] = {
      {"net.core.somaxconn 4096\n", "test.conf:1: expected 'key = value'"},
      {"# x\nnet.core.somaxconn =\n", "test.conf:2: net.core.somaxconn has no value"},
      {"a.b = 1\na.b = 2\n", "test.conf:2: a.b is set twice"},
      {"../etc/passwd = 1\n", "test.conf:1: '../etc/passwd' is not a sysctl name"},
      {"net/core/somaxconn = 1\n", "is not a sysctl name"},
      {"# only comments\n", "test.conf: no settings"},
  };
  for (const auto& [text, part] : cases) {
    std::vector<tune::Entry> entries;
    std::string error;
    EXPECT_FALSE(tune::parse_profile(text, "test.conf", entries, error)) << text;
    EXPECT_NE(error.find(part), std::string::npos) << error;
  }
}

TEST(Profile, RenderedPlanParsesBackToThePlan) {
  cap::HostFacts h;
  h.ram_bytes = 24 * cap::GiB;
  h.cpus = 2;
  h.nofile_hard = 20'000;
  const cap::Plan p = cap::make_plan(h, cap::Target{.connections = 1'000'000});
  const std::string text = tune::render_profile(p, cap::Target{.connections = 1'000'000}, "high-density", "cmd");
  std::vector<tune::Entry> entries;
  std::string error;
  ASSERT_TRUE(tune::parse_profile(text, "rendered", entries, error)) << error;
  ASSERT_EQ(entries.size(), p.settings.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].key, p.settings[i].key);
    EXPECT_EQ(entries[i].value, p.settings[i].value);
    EXPECT_EQ(entries[i].optional, p.settings[i].optional);
    EXPECT_FALSE(entries[i].comments.empty()) << entries[i].key << ": every line says why";
  }
  // Comments wrap within 78 columns.
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("#", 0) == 0) {
      EXPECT_LE(line.size(), 78u) << line;
    }
}

// ------------------------------------------------------------ state

TEST(State, RoundTripsExactly) {
  tune::State s;
  s.netns = "net:[4026531833]";
  s.conf_path = "/etc/sysctl.d/60-ringgate.conf";
  s.conf_existed = true;
  s.conf_before = "# old\nnet.core.somaxconn = 1\n\tback\\slash \\t literal\n";
  s.previous = {{"net.ipv4.tcp_mem", "287898\t383865\t575796"},
                {"net.ipv4.ip_local_port_range", "32768\t60999"},
                {"kernel.odd", " leading and trailing \\ "}};
  tune::State back;
  std::string error;
  ASSERT_TRUE(tune::decode_state(tune::encode_state(s), back, error)) << error;
  EXPECT_EQ(back.netns, s.netns);
  EXPECT_EQ(back.conf_path, s.conf_path);
  EXPECT_TRUE(back.conf_existed);
  EXPECT_EQ(back.conf_before, s.conf_before);
  EXPECT_EQ(back.previous, s.previous);

  s.conf_existed = false;
  s.conf_before.clear();
  ASSERT_TRUE(tune::decode_state(tune::encode_state(s), back, error)) << error;
  EXPECT_FALSE(back.conf_existed);
}

TEST(State, RejectsOtherFiles) {
  tune::State s;
  std::string error;
  EXPECT_FALSE(tune::decode_state("net.core.somaxconn = 1\n", s, error));
  EXPECT_FALSE(tune::decode_state("ringgate-tune-state 1\nsysctl a.b \\q\n", s, error));
  EXPECT_NE(error.find("line 2"), std::string::npos) << error;
  EXPECT_FALSE(tune::decode_state("", s, error));
}

// ------------------------------------------------------------ apply / rollback

TEST(Apply, ThenRollbackRestoresExactly) {
  Tree t;
  const auto before = t.snapshot();
  const Outcome a = apply(t, kProfile);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(t.get("net.core.somaxconn"), "16384\n");
  EXPECT_EQ(t.get("net.ipv4.tcp_mem"), "1000000 1250000 1500000\n");
  EXPECT_EQ(t.get("net.ipv4.ip_local_port_range"), "10000 65535\n");
  EXPECT_EQ(t.get("net.ipv4.tcp_fin_timeout"), "15\n");
  EXPECT_EQ(t.get("net.ipv4.tcp_tw_reuse"), "1\n");
  EXPECT_EQ(t.get("fs.file-max"), "2466160\n") << "never lowered";
  EXPECT_NE(a.out.find("kept: already past the profile"), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("skipped: not on this kernel (optional)"), std::string::npos) << a.out;
  ASSERT_TRUE(fs::exists(t.conf()));
  const std::string conf = read(t.conf());
  EXPECT_NE(conf.find("# why somaxconn\nnet.core.somaxconn = 16384\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("fs.file-max = 2466160\n"), std::string::npos) << conf;
  EXPECT_NE(conf.find("-net.netfilter.nf_conntrack_max = 131072\n"), std::string::npos) << conf;
  ASSERT_TRUE(fs::exists(t.state()));

  const Outcome r = rollback(t);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(t.snapshot(), before) << "every value back, tabs included";
  EXPECT_FALSE(fs::exists(t.conf())) << "there was no file before";
  EXPECT_FALSE(fs::exists(t.state()));
  EXPECT_EQ(rollback(t).status, 1) << "nothing left to roll back";
}

TEST(Apply, RollbackRestoresTheFileItReplaced) {
  Tree t;
  write(t.conf(), "# the operator's own\nnet.core.somaxconn = 8192\n");
  ASSERT_EQ(apply(t, kProfile).status, 0);
  EXPECT_NE(read(t.conf()).find("ringgate tune apply"), std::string::npos);
  ASSERT_EQ(rollback(t).status, 0);
  EXPECT_EQ(read(t.conf()), "# the operator's own\nnet.core.somaxconn = 8192\n");
}

TEST(Apply, TwiceThenRollbackReturnsToBeforeTheFirst) {
  Tree t;
  const auto before = t.snapshot();
  ASSERT_EQ(apply(t, "net.core.somaxconn = 8192\n").status, 0);
  t.set("net.core.somaxconn", "9000");  // changed by hand in between
  ASSERT_EQ(apply(t, kProfile).status, 0);
  EXPECT_EQ(t.get("net.core.somaxconn"), "16384\n");
  ASSERT_EQ(rollback(t).status, 0);
  EXPECT_EQ(t.snapshot(), before);
}

TEST(Apply, DryRunWritesNothing) {
  Tree t;
  const auto before = t.snapshot();
  const Outcome a = apply(t, kProfile, /*dry_run=*/true);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_NE(a.out.find("would write " + t.conf().string()), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("net.core.somaxconn = 16384"), std::string::npos);
  EXPECT_NE(a.out.find("dry run: nothing written"), std::string::npos);
  EXPECT_EQ(t.snapshot(), before);
  EXPECT_FALSE(fs::exists(t.conf()));
  EXPECT_FALSE(fs::exists(t.state()));
}

TEST(Apply, MissingKeyIsNamedAndNothingChanges) {
  Tree t;
  const auto before = t.snapshot();
  for (bool dry_run : {false, true}) {
    const Outcome a = apply(t, "net.core.somaxconn = 16384\nnet.core.no_such_key = 1\nnet.ipv4.also_missing = 2\n",
                        dry_run);
    EXPECT_EQ(a.status, 1);
    EXPECT_NE(a.err.find("net.core.no_such_key: does not exist on this kernel"), std::string::npos) << a.err;
    EXPECT_NE(a.err.find("net.ipv4.also_missing: does not exist"), std::string::npos) << a.err;
    EXPECT_NE(a.err.find("nothing was changed"), std::string::npos) << a.err;
    EXPECT_EQ(t.snapshot(), before);
    EXPECT_FALSE(fs::exists(t.conf()));
    EXPECT_FALSE(fs::exists(t.state()));
  }
}

TEST(Apply, WriteFailingHalfwayPutsBackWhatItChanged) {
  Tree t;
  // A key that reads and takes writes but keeps another value, as a kernel
  // that clamps does: /dev/null reads back empty.
  fs::remove(t.file("net.ipv4.tcp_tw_reuse"));
  fs::create_symlink("/dev/null", t.file("net.ipv4.tcp_tw_reuse"));
  write(t.conf(), "# before\n");
  const auto before = t.snapshot();
  const Outcome a = apply(t, "net.core.somaxconn = 16384\nnet.ipv4.tcp_fin_timeout = 15\nnet.ipv4.tcp_tw_reuse = 1\n");
  EXPECT_EQ(a.status, 1);
  EXPECT_NE(a.err.find("net.ipv4.tcp_tw_reuse: the kernel kept '' after writing '1'"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("restored the values and the file this run had changed"), std::string::npos) << a.err;
  EXPECT_EQ(t.snapshot(), before);
  EXPECT_EQ(t.get("net.core.somaxconn"), "4096\n");
  EXPECT_EQ(read(t.conf()), "# before\n");
  EXPECT_FALSE(fs::exists(t.state()));
}

TEST(Apply, StateFromAnotherNamespaceIsRefused) {
  Tree t;
  tune::State other;
  other.netns = "net:[1]";
  other.previous = {{"net.core.somaxconn", "128"}};
  write(t.state(), tune::encode_state(other));
  const auto before = t.snapshot();
  Outcome a = apply(t, kProfile);
  EXPECT_EQ(a.status, 1);
  EXPECT_NE(a.err.find("network namespace net:[1]"), std::string::npos) << a.err;
  Outcome r = rollback(t);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("network namespace net:[1]"), std::string::npos) << r.err;
  EXPECT_EQ(t.snapshot(), before);
}

TEST(Rollback, AKeyThatVanishedIsNamedAndTheStateKept) {
  Tree t;
  ASSERT_EQ(apply(t, "net.core.somaxconn = 16384\nnet.ipv4.tcp_fin_timeout = 15\n").status, 0);
  fs::remove(t.file("net.ipv4.tcp_fin_timeout"));
  const Outcome r = rollback(t);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("net.ipv4.tcp_fin_timeout"), std::string::npos) << r.err;
  EXPECT_EQ(t.get("net.core.somaxconn"), "4096\n") << "the others are still restored";
  EXPECT_TRUE(fs::exists(t.state())) << "kept for another try";
}

// ------------------------------------------------------------ check

std::string line_of(const std::string& out, const std::string& key) {
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("  " + key + " ", 0) == 0) return line;
  return "(no line for " + key + ")";
}

TEST(Check, ExitStatusAndTable) {
  Tree t;
  Outcome c = check(t, "net.core.somaxconn = 4096\nnet.ipv4.tcp_fin_timeout = 60\n-net.netfilter.nf_conntrack_max = 1\n");
  EXPECT_EQ(c.status, 0) << c.out;
  EXPECT_NE(line_of(c.out, "net.netfilter.nf_conntrack_max").find("n/a (not on this kernel)"), std::string::npos)
      << c.out;
  EXPECT_NE(c.out.find("all 3 settings meet the wanted values"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("  setting"), std::string::npos);
  EXPECT_NE(c.out.find("now"), std::string::npos);
  EXPECT_NE(c.out.find("wanted"), std::string::npos);

  c = check(t, kProfile);
  EXPECT_EQ(c.status, 1);
  const std::string somaxconn = line_of(c.out, "net.core.somaxconn");
  EXPECT_NE(somaxconn.find(" 4096 "), std::string::npos) << somaxconn;
  EXPECT_NE(somaxconn.find(">= 16384"), std::string::npos) << somaxconn;
  EXPECT_EQ(somaxconn.substr(somaxconn.size() - 2), "NO") << somaxconn;
  EXPECT_NE(line_of(c.out, "net.ipv4.tcp_mem").find("287898 383865 575796"), std::string::npos) << c.out;
  EXPECT_NE(line_of(c.out, "net.ipv4.ip_local_port_range").find("covers 10000 65535"), std::string::npos) << c.out;
  EXPECT_EQ(line_of(c.out, "fs.file-max").substr(line_of(c.out, "fs.file-max").size() - 3), "yes") << c.out;
  EXPECT_NE(c.out.find("5 of 7 settings fall short"), std::string::npos) << c.out;

  c = check(t, "net.core.gone = 1\n");
  EXPECT_EQ(c.status, 1);
  EXPECT_NE(line_of(c.out, "net.core.gone").find("MISSING"), std::string::npos) << c.out;
  EXPECT_NE(c.err.find("net.core.gone: does not exist"), std::string::npos) << c.err;
}

// ------------------------------------------------------------ the command

Outcome run(std::vector<std::string> args) {
  args.insert(args.begin(), "tune");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::ostringstream out, err;
  const int status = tune::run(static_cast<int>(args.size()), argv.data(), out, err);
  return {status, out.str(), err.str()};
}

TEST(Command, Usage) {
  EXPECT_EQ(run({}).status, 2);
  EXPECT_EQ(run({"--help"}).status, 0);
  EXPECT_EQ(run({"frobnicate"}).status, 2);
  EXPECT_EQ(run({"plan"}).status, 2);
  EXPECT_EQ(run({"plan", "--connections", "0"}).status, 2);
  EXPECT_EQ(run({"plan", "--connections", "lots"}).status, 2);
  EXPECT_EQ(run({"plan", "--connections", "1000", "--buffer", "big"}).status, 2);
  EXPECT_EQ(run({"plan", "--connections", "1000", "--no-such-server-option", "1"}).status, 2);
  EXPECT_EQ(run({"plan", "--connections", "1000", "--format", "yaml"}).status, 2);
  EXPECT_EQ(run({"check"}).status, 2);
  EXPECT_EQ(run({"check", "--connections", "1", "--profile", "x"}).status, 2);
  EXPECT_EQ(run({"apply"}).status, 2);
  EXPECT_EQ(run({"apply", "--profile", "no-such-profile", "--profile-dir", "/nonexistent"}).status, 2);
  EXPECT_EQ(run({"rollback", "--connections", "1"}).status, 2);
}

TEST(Command, PlanPrintsTheBudgetAndSaysWhetherItFits) {
  const std::vector<std::string> host = {"--ram", "24GiB", "--cpus", "2", "--nofile", "20000"};
  auto args = host;
  args.insert(args.begin(), {"plan", "--connections", "1M"});
  Outcome r = run(args);
  EXPECT_EQ(r.status, 0) << r.err;
  for (const char* part : {"LimitNOFILE=589824", "workers 2", "--max-connections 1000000 --backlog 16384",
                           "RLIMIT_NOFILE 20,000: 53 workers", "kernel per socket", "ringgate per connection",
                           "socket buffers", "headroom", "total", "host RAM", "fits: ", "fits this host: yes"})
    EXPECT_NE(r.out.find(part), std::string::npos) << part << "\n" << r.out;

  args = host;
  args.insert(args.begin(), {"plan", "--connections", "5M"});
  r = run(args);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("DOES NOT FIT"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fits this host: NO"), std::string::npos) << r.out;

  // Server options shape the fixed memory: the density run's pools.
  r = run({"plan", "--connections", "100000", "--recv-buffer-count", "64", "--max-pending-handshakes", "1024",
           "--ram", "24GiB", "--cpus", "2"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("1.0 MiB recv buffers + 512.0 KiB answer slots"), std::string::npos) << r.out;
}

TEST(Command, SysctlFormatIsAProfile) {
  Outcome r = run({"plan", "--connections", "1000000", "--format", "sysctl", "--name", "high-density"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<tune::Entry> entries;
  std::string error;
  ASSERT_TRUE(tune::parse_profile(r.out, "out", entries, error)) << error;
  EXPECT_EQ(entries.size(), 14u);
  EXPECT_NE(r.out.find("# ringgate sysctl profile: high-density."), std::string::npos);
}

TEST(Command, ApplyAndRollbackTakeTheirPathsFromFlagsOrEnvironment) {
  Tree t;
  write(t.root() / "p.conf", "net.core.somaxconn = 16384\n");
  const auto before = t.snapshot();
  Outcome r = run({"apply", "--profile", (t.root() / "p.conf").string(), "--proc-sys", t.paths.proc_root,
               "--sysctl-dir", t.paths.sysctl_dir, "--state-file", t.paths.state_file});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(t.get("net.core.somaxconn"), "16384\n");
  ::setenv("RINGGATE_PROC_SYS", t.paths.proc_root.c_str(), 1);
  ::setenv("RINGGATE_SYSCTL_DIR", t.paths.sysctl_dir.c_str(), 1);
  ::setenv("RINGGATE_TUNE_STATE", t.paths.state_file.c_str(), 1);
  r = run({"rollback"});
  ::unsetenv("RINGGATE_PROC_SYS");
  ::unsetenv("RINGGATE_SYSCTL_DIR");
  ::unsetenv("RINGGATE_TUNE_STATE");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(t.snapshot(), before);
}

}  // namespace
