// `ringgate tune` (tooling/tune.h): plan, check, apply and rollback of kernel settings.
#include "tooling/tune.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <absl/strings/str_format.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "config/config.h"
#include "tooling/sysctl.h"

namespace rg::server::tune {

namespace cap = rg::server::capacity;

namespace {

constexpr const char* state_magic = "ringgate-tune-state 1";
constexpr std::size_t comment_width = 78;

// ------------------------------------------------------------ text

std::string trim(const std::string& s) {
  const auto from = s.find_first_not_of(" \t\r");
  if (from == std::string::npos) return "";
  return s.substr(from, s.find_last_not_of(" \t\r") - from + 1);
}

using cap::spaced;

std::vector<std::string> wrap(const std::string& text, std::size_t width) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string word;
  std::string line;
  while (in >> word) {
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      lines.push_back(line);
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

// Columns separated by two spaces; `right` marks right-aligned columns.
std::string table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right = {}) {
  std::vector<std::size_t> width;
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  std::string out;
  for (const auto& row : rows) {
    std::string line = "  ";
    for (std::size_t i = 0; i < row.size(); ++i) {
      const std::string pad(width[i] - row[i].size(), ' ');
      line += (i < right.size() && right[i]) ? pad + row[i] : row[i] + pad;
      line += "  ";
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line + "\n";
  }
  return out;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '\t') out += "\\t";
    else if (ch == '\n') out += "\\n";
    else out += ch;
  }
  return out;
}

bool unescape(const std::string& s, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) return false;
    if (s[i] == '\\') out += '\\';
    else if (s[i] == 't') out += '\t';
    else if (s[i] == 'n') out += '\n';
    else return false;
  }
  return true;
}

// ------------------------------------------------------------ files

using sysctl::read_file;

// mkdir -p.
bool make_dirs(const std::string& dir, std::string& error) {
  const bool absolute = !dir.empty() && dir[0] == '/';
  std::string at;
  std::istringstream in(dir);
  std::string part;
  while (std::getline(in, part, '/')) {
    if (part.empty()) continue;
    at += (at.empty() && !absolute ? "" : "/") + part;
    if (::mkdir(at.c_str(), 0755) != 0 && errno != EEXIST) {
      error = "cannot create " + at + ": " + std::strerror(errno);
      return false;
    }
  }
  return true;
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Write to a temporary file beside `path`, flush it to disk, rename over:
// a crash leaves the old file or the new one, never half of either.
bool write_file_atomic(const std::string& path, const std::string& content, std::string& error) {
  if (!make_dirs(parent_of(path), error)) return false;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot write " + tmp + ": " + std::strerror(errno);
    return false;
  }
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = "cannot write " + tmp + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot write " + path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

std::string current_netns() {
  char buf[128];
  const ssize_t n = ::readlink("/proc/self/ns/net", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "unknown";
}

// ------------------------------------------------------------ arguments

struct Args {
  std::string command;
  std::map<std::string, std::string> values;  // tune's own options
  std::vector<std::pair<std::string, std::string>> server;  // anything else: a server option
  std::vector<std::string> positional;
  [[nodiscard]] bool has(const std::string& k) const { return values.contains(k); }
  [[nodiscard]] std::string get(const std::string& k, const std::string& fallback = "") const {
    const auto it = values.find(k);
    return it == values.end() ? fallback : it->second;
  }
};

bool is_switch(const std::string& name) {
  return name == "dry-run" || name == "clients-on-host" || name == "tls" || name == "help";
}

bool is_tune_option(const std::string& name) {
  for (const char* o : {"connections", "msg-rate", "buffer", "clients-on-host", "tls", "format", "name", "ram", "cpus",
                        "nofile", "profile", "profile-dir", "dry-run", "proc-sys", "sysctl-dir", "state-file",
                        "config", "help"})
    if (name == o) return true;
  return false;
}

bool parse_args(int argc, char** argv, Args& a, std::string& error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h") arg = "--help";
    if (arg.rfind("--", 0) != 0) {
      if (a.command.empty()) a.command = arg;
      else a.positional.push_back(arg);
      continue;
    }
    arg.erase(0, 2);
    std::string value;
    const auto eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (is_switch(arg)) {
      value = "1";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      error = "option --" + arg + " needs a value";
      return false;
    }
    if (is_tune_option(arg)) a.values[arg] = value;
    else a.server.emplace_back(arg, value);
  }
  return true;
}

// "1000000", "100k", "1M" (decimal).
bool parse_count(const std::string& text, std::uint64_t& n) {
  std::uint64_t mult = 1;
  std::string digits = text;
  if (!digits.empty() && (digits.back() == 'k' || digits.back() == 'K')) mult = 1000;
  else if (!digits.empty() && digits.back() == 'M') mult = 1000 * 1000;
  if (mult != 1) digits.pop_back();
  if (digits.empty() || digits.size() > 12 || digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  n = std::stoull(digits) * mult;
  return true;
}

std::string path_option(const Args& a, const char* flag, const char* env, const std::string& fallback) {
  if (a.has(flag)) return a.get(flag);
  if (const char* e = std::getenv(env); e && *e) return e;
  return fallback;
}

Paths paths_of(const Args& a) {
  Paths p;
  p.proc_root = path_option(a, "proc-sys", "RINGGATE_PROC_SYS", p.proc_root);
  p.sysctl_dir = path_option(a, "sysctl-dir", "RINGGATE_SYSCTL_DIR", p.sysctl_dir);
  p.state_file = path_option(a, "state-file", "RINGGATE_TUNE_STATE", p.state_file);
  return p;
}

std::string exe_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  return parent_of(std::string(buf, static_cast<std::size_t>(n)));
}

// A name ("high-density") is looked up in the profile directories; anything
// with a '/' or ending in .conf is a path.
bool load_profile(const Args& a, std::vector<Entry>& entries, std::string& name, std::string& error) {
  const std::string p = a.get("profile");
  std::vector<std::string> candidates;
  if (p.find('/') != std::string::npos || (p.size() > 5 && p.substr(p.size() - 5) == ".conf")) {
    candidates.push_back(p);
  } else {
    const std::string dir = path_option(a, "profile-dir", "RINGGATE_PROFILE_DIR", "");
    if (!dir.empty()) candidates.push_back(dir + "/" + p + ".conf");
    const std::string exe = exe_dir();
    if (!exe.empty()) {
      candidates.push_back(exe + "/../sysctl/" + p + ".conf");  // the build tree: build/ringgate
      candidates.push_back(exe + "/../share/ringgate/sysctl/" + p + ".conf");
    }
    candidates.push_back("/usr/share/ringgate/sysctl/" + p + ".conf");
  }
  std::string looked;
  for (const auto& path : candidates) {
    std::string text;
    int e = 0;
    if (!read_file(path, text, e)) {
      looked += (looked.empty() ? "" : ", ") + path + " (" + std::strerror(e) + ")";
      continue;
    }
    name = p;
    return parse_profile(text, path, entries, error);
  }
  error = "profile '" + p + "' not found; looked at " + looked;
  return false;
}

// ------------------------------------------------------------ plan

struct PlanInput {
  cap::HostFacts host;
  cap::Target target;
};

bool plan_input(const Args& a, const Paths& paths, PlanInput& in, std::string& error) {
  if (!a.has("connections") || !parse_count(a.get("connections"), in.target.connections) ||
      in.target.connections == 0) {
    error = "--connections N is required: a whole number of connections, at least 1 (100k and 1M work too)";
    return false;
  }
  if (a.has("msg-rate") && !parse_count(a.get("msg-rate"), in.target.msg_rate)) {
    error = "--msg-rate takes messages per second over all connections, e.g. 50000 or 50k, not '" +
            a.get("msg-rate") + "'";
    return false;
  }
  if (a.has("buffer") && !parse_size(a.get("buffer"), in.target.buffer_bytes)) {
    error = "--buffer takes a size, e.g. 4KiB or 16KiB, not '" + a.get("buffer") + "'";
    return false;
  }
  in.target.clients_on_host = a.has("clients-on-host");
  in.target.tls = a.has("tls");
  // The server's own settings: a config file and any server flag.
  Config config;
  if (a.has("config")) {
    std::string text;
    int e = 0;
    if (!read_file(a.get("config"), text, e)) {
      error = "cannot read config file " + a.get("config") + ": " + std::strerror(e);
      return false;
    }
    if (!apply_toml(text, a.get("config"), config, error)) return false;
  }
  for (const auto& [k, v] : a.server)
    if (!apply_option(k, v, config, error)) return false;
  in.target.recv_buffer_count = config.recv_buffer_count;
  in.target.recv_buffer_size = config.recv_buffer_size;
  in.target.max_pending_handshakes = config.max_pending_handshakes;
  in.target.reserved_slots = config.reserved_slots;
  in.target.tls_record_buffers = config.tls_record_buffers;

  in.host = read_host(paths.proc_root);
  std::uint64_t n = 0;
  if (a.has("ram") && !parse_size(a.get("ram"), in.host.ram_bytes)) {
    error = "--ram takes a size, e.g. 24GiB, not '" + a.get("ram") + "'";
    return false;
  }
  if (a.has("cpus")) {
    if (!parse_count(a.get("cpus"), n) || n == 0 || n > 65536) {
      error = "--cpus takes a number of CPUs, not '" + a.get("cpus") + "'";
      return false;
    }
    in.host.cpus = static_cast<std::uint32_t>(n);
  }
  if (a.has("nofile") && !parse_count(a.get("nofile"), in.host.nofile_hard)) {
    error = "--nofile takes a number of descriptors, not '" + a.get("nofile") + "'";
    return false;
  }
  return true;
}

std::string describe_target(const cap::Target& t) {
  return absl::StrFormat("%s %sconnections (%s), %s messages/s, %s of socket buffer each",
                         cap::group_digits(t.connections), t.tls ? "wss:// " : "",
                         t.clients_on_host ? "clients on this host" : "clients elsewhere",
                         cap::group_digits(t.msg_rate), cap::format_bytes(t.buffer_bytes));
}

std::string plan_command(const cap::Target& t) {
  std::string cmd = "ringgate tune plan --connections " + std::to_string(t.connections);
  if (t.msg_rate) cmd += " --msg-rate " + std::to_string(t.msg_rate);
  if (t.buffer_bytes != cap::default_buffer_bytes) cmd += " --buffer " + std::to_string(t.buffer_bytes);
  if (t.clients_on_host) cmd += " --clients-on-host";
  if (t.tls) cmd += " --tls";
  return cmd;
}

void print_plan(const PlanInput& in, const cap::Plan& p, std::ostream& out) {
  const auto& h = in.host;
  const auto& t = in.target;
  out << "ringgate tune plan: " << describe_target(t) << "\n";
  out << absl::StrFormat("host: %u CPUs, %s RAM, RLIMIT_NOFILE hard %s, %u-byte pages, nf_conntrack %s\n\n", h.cpus,
                         cap::format_bytes(h.ram_bytes), cap::group_digits(h.nofile_hard), h.page_bytes,
                         h.conntrack ? "loaded" : "not loaded");

  out << "ringgate\n";
  std::vector<std::vector<std::string>> rows = {
      {"LimitNOFILE=" + std::to_string(p.limit_nofile),
       absl::StrFormat("in ringgate.service: each worker ring's table holds %s slots (%s reserved for refusals)",
                       cap::group_digits(p.tables.slots), cap::group_digits(p.tables.reserved))},
      {absl::StrFormat("workers %u", p.workers),
       absl::StrFormat("%s / (%s usable slots x %u%%), at least one per CPU", cap::group_digits(t.connections),
                       cap::group_digits(p.tables.usable), cap::table_fill_percent)},
      {"flags", absl::StrFormat("--max-connections %u --backlog %u", t.connections, p.backlog)},
      {absl::StrFormat("cpu %.2f cores", static_cast<double>(p.cores_needed_milli) / 1000.0),
       absl::StrFormat("of %u for %s messages/s (%s per core planned; %s)", h.cpus, cap::group_digits(t.msg_rate),
                       cap::group_digits(cap::msgs_per_core), p.cpu_fits ? "fits" : "DOES NOT FIT")},
  };
  if (t.tls)
    rows.push_back(
        {absl::StrFormat("--accept-rate %u", p.tls_accept_rate),
         absl::StrFormat("TLS handshakes are CPU: %u cores x %s full handshakes/s (ECDSA P-256; RSA 2048 a third) x "
                         "%u%%; after a restart all %s clients are back in %.0f s (sooner with session tickets)",
                         h.cpus, cap::group_digits(cap::tls_handshakes_per_core), cap::tls_storm_cpu_percent,
                         cap::group_digits(t.connections), static_cast<double>(p.tls_storm_ms) / 1000.0)});
  if (p.workers_now != p.workers)
    rows.push_back({"under the hard limit now",
                    absl::StrFormat("RLIMIT_NOFILE %s: %u workers of %s slots", cap::group_digits(h.nofile_hard),
                                    p.workers_now, cap::group_digits(p.tables_now.slots))});
  if (t.clients_on_host)
    rows.push_back({"ringgate-load", absl::StrFormat("--sources %u", p.load_sources)});
  if (!p.workers_fit)
    rows.push_back({"DOES NOT FIT", absl::StrFormat("more than %u workers", cap::workers_max)});
  out << table(rows) << "\n";

  out << "sysctls (" << conf_name << ")\n";
  rows = {{"setting", "value", "check"}};
  for (const auto& s : p.settings)
    rows.push_back({s.key, s.value, std::string(cap::compare_name(s.compare)) +
                                        (s.optional ? (h.conntrack ? ", where loaded" : ", where loaded (not here)")
                                                    : "")});
  out << table(rows) << "\n";

  out << "memory budget\n";
  rows = {{"item", "per connection", "total", "basis"}};
  for (const auto& m : p.memory)
    rows.push_back({m.item, m.per_connection ? cap::group_digits(m.per_connection) + " B" : "-",
                    cap::format_bytes(m.total), m.basis});
  rows.push_back({"total", cap::group_digits((p.total_bytes + t.connections - 1) / t.connections) + " B",
                  cap::format_bytes(p.total_bytes), ""});
  rows.push_back({"host RAM", "", cap::format_bytes(p.ram_bytes),
                  p.memory_fits ? absl::StrFormat("fits: %u%% of RAM", p.total_bytes * 100 / std::max<std::uint64_t>(p.ram_bytes, 1))
                                : absl::StrFormat("DOES NOT FIT: %s short", cap::format_bytes(p.total_bytes - p.ram_bytes))});
  out << table(rows, {false, true, true, false}) << "\n";

  const std::uint64_t largest = cap::largest_fitting(in.host, in.target);
  out << absl::StrFormat("fits this host: %s; the most connections that fit with these settings: %s\n",
                         p.fits() ? "yes" : "NO", cap::group_digits(largest));
}

int cmd_plan(const Args& a, std::ostream& out, std::ostream& err) {
  PlanInput in;
  std::string error;
  if (!plan_input(a, paths_of(a), in, error)) {
    err << "ringgate tune plan: " << error << "\n";
    return 2;
  }
  const cap::Plan p = cap::make_plan(in.host, in.target);
  const std::string format = a.get("format", "table");
  if (format == "sysctl") {
    out << render_profile(p, in.target, a.get("name", "custom"), plan_command(in.target) + " --format sysctl");
    return 0;
  }
  if (format != "table") {
    err << "ringgate tune plan: --format is table or sysctl, not '" << format << "'\n";
    return 2;
  }
  print_plan(in, p, out);
  return p.fits() ? 0 : 1;
}

int cmd_check(const Args& a, std::ostream& out, std::ostream& err) {
  const Paths paths = paths_of(a);
  std::vector<Entry> wanted;
  std::string error;
  if (a.has("profile") == a.has("connections")) {
    err << "ringgate tune check: give --connections N or --profile P (one of them)\n";
    return 2;
  }
  if (a.has("profile")) {
    std::string name;
    if (!load_profile(a, wanted, name, error)) {
      err << "ringgate tune check: " << error << "\n";
      return 2;
    }
    out << "ringgate tune check: live values against profile " << name << "\n";
  } else {
    PlanInput in;
    if (!plan_input(a, paths, in, error)) {
      err << "ringgate tune check: " << error << "\n";
      return 2;
    }
    const cap::Plan p = cap::make_plan(in.host, in.target);
    wanted = entries_of(p);
    out << "ringgate tune check: live values against the plan for " << describe_target(in.target) << "\n";
    out << absl::StrFormat("(LimitNOFILE=%u belongs in ringgate.service; this process's hard limit is %s)\n",
                           p.limit_nofile, cap::group_digits(in.host.nofile_hard));
  }
  return check(paths, wanted, out, err);
}

int cmd_apply(const Args& a, std::ostream& out, std::ostream& err) {
  if (!a.has("profile")) {
    err << "ringgate tune apply: --profile P is required (a name such as high-density, or a path)\n";
    return 2;
  }
  std::vector<Entry> entries;
  std::string name;
  std::string error;
  if (!load_profile(a, entries, name, error)) {
    err << "ringgate tune apply: " << error << "\n";
    return 2;
  }
  return apply(paths_of(a), entries, name, a.has("dry-run"), out, err);
}

const char* usage =
    "usage: ringgate tune plan --connections N [--msg-rate R] [--buffer SIZE] [--clients-on-host] [--tls]\n"
    "                          [--config FILE] [--SERVER-OPTION VALUE ...] [--ram SIZE] [--cpus N] [--nofile N]\n"
    "                          [--format table|sysctl] [--name NAME]\n"
    "       ringgate tune check (--connections N [plan options] | --profile P)\n"
    "       ringgate tune apply --profile P [--dry-run]\n"
    "       ringgate tune rollback\n"
    "\n"
    "plan      the sysctls, LimitNOFILE, worker count and memory budget for N connections on this host;\n"
    "          exits 1 when the host cannot hold them\n"
    "check     live values against the plan or a profile: setting, now, wanted, ok; exits 1 when one falls short\n"
    "apply     writes the profile to <sysctl-dir>/60-ringgate.conf and to the kernel, after saving the values\n"
    "          it replaces; --dry-run shows what it would do and writes nothing\n"
    "rollback  restores the values (and the file) saved by apply\n"
    "\n"
    "--msg-rate   messages per second over all connections (default 0)\n"
    "--buffer     kernel socket-buffer memory planned per connection (default 4KiB: one queued message)\n"
    "--clients-on-host  the clients (ringgate-load) run on this host too: the capacity lab\n"
    "--tls        every connection is wss://: TLS memory per connection and record buffers, and\n"
    "             the CPU for every client's full handshake within a reconnect storm\n"
    "--ram, --cpus, --nofile  plan for another host than this one\n"
    "P            a profile name (high-density, capacity-lab) or a path to a sysctl.d file\n"
    "\n"
    "paths (flag, environment, default):\n"
    "  --proc-sys DIR     RINGGATE_PROC_SYS     /proc/sys\n"
    "  --sysctl-dir DIR   RINGGATE_SYSCTL_DIR   /etc/sysctl.d\n"
    "  --state-file FILE  RINGGATE_TUNE_STATE   /var/lib/ringgate/sysctl-state\n"
    "  --profile-dir DIR  RINGGATE_PROFILE_DIR  sysctl/ beside the build, then /usr/share/ringgate/sysctl\n"
    "\n"
    "exit status: 0 done, 1 short or failed (named on stderr), 2 bad usage\n";

}  // namespace

// ------------------------------------------------------------ profiles

bool parse_profile(const std::string& text, const std::string& origin, std::vector<Entry>& entries,
                   std::string& error) {
  entries.clear();
  std::istringstream in(text);
  std::string raw;
  std::vector<std::string> comments;
  int line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    const std::string line = trim(raw);
    if (line.empty()) {
      comments.clear();  // a blank line ends a comment block: it was about the file, not the key
      continue;
    }
    if (line[0] == '#' || line[0] == ';') {
      comments.push_back(trim(line.substr(1)));
      continue;
    }
    Entry e;
    std::string rest = line;
    if (rest[0] == '-') {
      e.optional = true;
      rest.erase(0, 1);
    }
    const auto eq = rest.find('=');
    if (eq == std::string::npos) {
      error = absl::StrFormat("%s:%d: expected 'key = value', got '%s'", origin, line_no, line);
      return false;
    }
    e.key = trim(rest.substr(0, eq));
    e.value = spaced(rest.substr(eq + 1));
    std::string path;
    if (!sysctl::path_of("", e.key, path)) {
      error = absl::StrFormat("%s:%d: '%s' is not a sysctl name", origin, line_no, e.key);
      return false;
    }
    if (e.value.empty()) {
      error = absl::StrFormat("%s:%d: %s has no value", origin, line_no, e.key);
      return false;
    }
    for (const auto& other : entries)
      if (other.key == e.key) {
        error = absl::StrFormat("%s:%d: %s is set twice", origin, line_no, e.key);
        return false;
      }
    e.comments = std::move(comments);
    comments.clear();
    entries.push_back(std::move(e));
  }
  if (entries.empty()) {
    error = origin + ": no settings";
    return false;
  }
  return true;
}

std::string render_profile(const cap::Plan& plan, const cap::Target& target, const std::string& name,
                           const std::string& command) {
  std::string out;
  const auto block = [&](const std::string& text) {
    for (const auto& l : wrap(text, comment_width - 2)) out += "# " + l + "\n";
  };
  block("ringgate sysctl profile: " + name + ".");
  block("Target: " + describe_target(target) + ".");
  block("Generated by: " + command + " --name " + name);
  block(absl::StrFormat("Every value follows from that target and none from the host it was generated on; the "
                        "plan prints the memory budget, LimitNOFILE and the worker count for a host. Install with: "
                        "ringgate tune apply --profile %s (writes /etc/sysctl.d/%s and saves the values it "
                        "replaces; ringgate tune rollback restores them).",
                        name, conf_name));
  for (const auto& s : plan.settings) {
    out += "\n";
    block(s.why);
    out += (s.optional ? "-" : "") + s.key + " = " + s.value + "\n";
  }
  return out;
}

std::vector<Entry> entries_of(const cap::Plan& plan) {
  std::vector<Entry> out;
  for (const auto& s : plan.settings) out.push_back(Entry{s.key, s.value, s.optional, {s.why}});
  return out;
}

// ------------------------------------------------------------ state

std::string encode_state(const State& s) {
  std::string out = "# Values `ringgate tune apply` replaced; `ringgate tune rollback` restores them.\n";
  out += std::string(state_magic) + "\n";
  out += "netns " + escape(s.netns) + "\n";
  out += "conf " + escape(s.conf_path) + "\n";
  out += s.conf_existed ? "conf-before " + escape(s.conf_before) + "\n" : "conf-absent\n";
  for (const auto& [k, v] : s.previous) out += "sysctl " + k + " " + escape(v) + "\n";
  return out;
}

bool decode_state(const std::string& text, State& s, std::string& error) {
  s = State{};
  std::istringstream in(text);
  std::string line;
  bool magic = false;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.find(' ');
    const std::string word = line.substr(0, sp);
    const std::string rest = sp == std::string::npos ? "" : line.substr(sp + 1);
    const auto bad = [&] {
      error = absl::StrFormat("line %d: cannot read '%s'", line_no, line);
      return false;
    };
    if (!magic) {
      if (line != state_magic) return bad();
      magic = true;
    } else if (word == "netns") {
      if (!unescape(rest, s.netns)) return bad();
    } else if (word == "conf") {
      if (!unescape(rest, s.conf_path)) return bad();
    } else if (word == "conf-absent") {
      s.conf_existed = false;
    } else if (word == "conf-before") {
      s.conf_existed = true;
      if (!unescape(rest, s.conf_before)) return bad();
    } else if (word == "sysctl") {
      const auto sp2 = rest.find(' ');
      std::string value;
      if (sp2 == std::string::npos || !unescape(rest.substr(sp2 + 1), value)) return bad();
      s.previous.emplace_back(rest.substr(0, sp2), value);
    } else {
      return bad();
    }
  }
  if (!magic) {
    error = "not a ringgate tune state file";
    return false;
  }
  return true;
}

// ------------------------------------------------------------ operations

namespace {

struct Live {
  Entry entry;
  bool present = false;
  std::string now;     // raw, as the kernel printed it
  std::string target;  // what apply writes
};

// Writes `value` and reads it back: a kernel may accept a write and keep
// another value (clamping), which is a refusal too.
bool write_checked(const Paths& paths, const std::string& key, const std::string& value, std::string& error) {
  int e = 0;
  if (!sysctl::write(paths.proc_root, key, value, e)) {
    error = sysctl::describe(key, e, true) + " (value '" + spaced(value) + "')";
    return false;
  }
  std::string back;
  if (!sysctl::read(paths.proc_root, key, back, e)) {
    error = sysctl::describe(key, e, false);
    return false;
  }
  if (spaced(back) != spaced(value)) {
    error = key + ": the kernel kept '" + spaced(back) + "' after writing '" + spaced(value) + "'";
    return false;
  }
  return true;
}

std::string conf_text(const std::vector<Live>& live, const std::string& profile_name) {
  std::string out = "# Written by `ringgate tune apply --profile " + profile_name +
                    "`; `ringgate tune rollback` restores what was here before.\n"
                    "# Each value is the profile's, or the live one where that was already past it.\n";
  for (const auto& l : live) {
    out += "\n";
    for (const auto& c : l.entry.comments) out += c.empty() ? "#\n" : "# " + c + "\n";
    out += (l.entry.optional ? "-" : "") + l.entry.key + " = " + spaced(l.present ? l.target : l.entry.value) + "\n";
  }
  return out;
}

}  // namespace

int apply(const Paths& paths, const std::vector<Entry>& profile, const std::string& profile_name, bool dry_run,
          std::ostream& out, std::ostream& err) {
  const char* who = "ringgate tune apply: ";
  // 1. Read every key and make sure each can be written, before changing any.
  std::vector<Live> live;
  std::vector<std::string> errors;
  for (const auto& e : profile) {
    Live l{e, false, "", ""};
    int code = 0;
    if (!sysctl::read(paths.proc_root, e.key, l.now, code)) {
      if (!(e.optional && code == ENOENT)) errors.push_back(sysctl::describe(e.key, code, false));
      live.push_back(l);
      continue;
    }
    l.present = true;
    if (!sysctl::writable(paths.proc_root, e.key, code)) errors.push_back(sysctl::describe(e.key, code, true));
    l.target = cap::tighten(cap::compare_for(e.key), l.now, e.value);
    live.push_back(l);
  }

  std::vector<std::vector<std::string>> rows = {{"setting", "now", "profile", "apply", "action"}};
  for (const auto& l : live) {
    if (!l.present) {
      rows.push_back({l.entry.key, "-", l.entry.value, "-",
                      l.entry.optional ? "skipped: not on this kernel (optional)" : "MISSING"});
      continue;
    }
    const bool same = spaced(l.now) == spaced(l.target);
    const bool kept = same && spaced(l.now) != l.entry.value;
    rows.push_back({l.entry.key, spaced(l.now), l.entry.value, spaced(l.target),
                    same ? (kept ? "kept: already past the profile" : "unchanged") : "set"});
  }
  out << (dry_run ? "ringgate tune apply --dry-run: " : "ringgate tune apply: ") << "profile " << profile_name
      << "\n" << table(rows);
  if (!errors.empty()) {
    for (const auto& e : errors) err << who << e << "\n";
    err << who << "nothing was changed\n";
    return 1;
  }
  const std::string conf = conf_text(live, profile_name);
  if (dry_run) {
    out << "\nwould write " << paths.conf_path() << ":\n" << conf;
    out << "\nwould save the values it replaces in " << paths.state_file << "\n";
    out << "dry run: nothing written\n";
    return 0;
  }

  // 2. Save what is there now.  A state left by an earlier apply keeps its
  // values: rollback returns to before the first apply.
  int code = 0;
  State state;
  bool had_state = false;
  std::string old_state_text;
  if (read_file(paths.state_file, old_state_text, code)) {
    std::string error;
    if (!decode_state(old_state_text, state, error)) {
      err << who << paths.state_file << ": " << error << "; nothing was changed\n";
      return 1;
    }
    had_state = true;
  } else if (code != ENOENT) {
    err << who << "cannot read " << paths.state_file << ": " << std::strerror(code) << "; nothing was changed\n";
    return 1;
  } else {
    state.netns = current_netns();
    state.conf_path = paths.conf_path();
    state.conf_existed = read_file(paths.conf_path(), state.conf_before, code);
    if (!state.conf_existed && code != ENOENT) {
      err << who << "cannot read " << paths.conf_path() << ": " << std::strerror(code) << "; nothing was changed\n";
      return 1;
    }
  }
  if (state.netns != current_netns()) {
    err << who << paths.state_file << " was saved in network namespace " << state.netns << ", this is "
        << current_netns() << ": roll back there first; nothing was changed\n";
    return 1;
  }
  for (const auto& l : live) {
    if (!l.present) continue;
    bool saved = false;
    for (const auto& [k, v] : state.previous) saved = saved || k == l.entry.key;
    if (!saved) state.previous.emplace_back(l.entry.key, l.now);
  }
  std::string conf_before_this_run;
  const bool conf_existed_before_this_run = read_file(paths.conf_path(), conf_before_this_run, code);
  std::string error;
  if (!write_file_atomic(paths.state_file, encode_state(state), error)) {
    err << who << error << "; nothing was changed\n";
    return 1;
  }

  // 3. The file, then the kernel.  On the first refusal, put back what this
  // run changed and say so.
  const auto undo = [&](std::size_t written) {
    for (std::size_t i = 0; i < written; ++i) {
      if (!live[i].present || spaced(live[i].now) == spaced(live[i].target)) continue;
      std::string e2;
      if (!write_checked(paths, live[i].entry.key, live[i].now, e2)) err << who << "could not restore " << e2 << "\n";
    }
    std::string e2;
    if (conf_existed_before_this_run) {
      if (!write_file_atomic(paths.conf_path(), conf_before_this_run, e2)) err << who << e2 << "\n";
    } else if (::unlink(paths.conf_path().c_str()) != 0 && errno != ENOENT) {
      err << who << "cannot remove " << paths.conf_path() << ": " << std::strerror(errno) << "\n";
    }
    if (had_state) {
      if (!write_file_atomic(paths.state_file, old_state_text, e2)) err << who << e2 << "\n";
    } else {
      ::unlink(paths.state_file.c_str());
    }
  };
  if (!write_file_atomic(paths.conf_path(), conf, error)) {
    err << who << error << "\n";
    undo(0);
    err << who << "nothing was changed\n";
    return 1;
  }
  for (std::size_t i = 0; i < live.size(); ++i) {
    if (!live[i].present || spaced(live[i].now) == spaced(live[i].target)) continue;
    if (!write_checked(paths, live[i].entry.key, live[i].target, error)) {
      err << who << error << "\n";
      undo(i);
      err << who << "restored the values and the file this run had changed\n";
      return 1;
    }
  }
  out << "\nwrote " << paths.conf_path() << " and applied it; the values it replaced are in " << paths.state_file
      << "\nundo with: ringgate tune rollback\n";
  return 0;
}

int rollback(const Paths& paths, std::ostream& out, std::ostream& err) {
  const char* who = "ringgate tune rollback: ";
  std::string text;
  int code = 0;
  if (!read_file(paths.state_file, text, code)) {
    if (code == ENOENT) err << who << "no saved state at " << paths.state_file << ": nothing to roll back\n";
    else err << who << "cannot read " << paths.state_file << ": " << std::strerror(code) << "\n";
    return 1;
  }
  State state;
  std::string error;
  if (!decode_state(text, state, error)) {
    err << who << paths.state_file << ": " << error << "\n";
    return 1;
  }
  if (state.netns != current_netns()) {
    err << who << "the values were saved in network namespace " << state.netns << ", this is " << current_netns()
        << ": run rollback there; nothing was changed\n";
    return 1;
  }
  std::vector<std::vector<std::string>> rows = {{"setting", "now", "restored"}};
  bool ok = true;
  for (const auto& [key, value] : state.previous) {
    std::string now;
    int e = 0;
    const bool present = sysctl::read(paths.proc_root, key, now, e);
    if (present && now == value) {
      rows.push_back({key, spaced(now), "unchanged"});
      continue;
    }
    if (!write_checked(paths, key, value, error)) {
      err << who << error << "\n";
      rows.push_back({key, present ? spaced(now) : "-", "FAILED"});
      ok = false;
      continue;
    }
    rows.push_back({key, spaced(now), spaced(value)});
  }
  const std::string conf = state.conf_path.empty() ? paths.conf_path() : state.conf_path;
  if (state.conf_existed) {
    if (!write_file_atomic(conf, state.conf_before, error)) {
      err << who << error << "\n";
      ok = false;
    }
  } else if (::unlink(conf.c_str()) != 0 && errno != ENOENT) {
    err << who << "cannot remove " << conf << ": " << std::strerror(errno) << "\n";
    ok = false;
  }
  out << "ringgate tune rollback\n" << table(rows);
  if (!ok) {
    err << who << "kept " << paths.state_file << " so rollback can be run again\n";
    return 1;
  }
  if (::unlink(paths.state_file.c_str()) != 0) {
    err << who << "restored everything but cannot remove " << paths.state_file << ": " << std::strerror(errno)
        << "\n";
    return 1;
  }
  out << (state.conf_existed ? "restored " : "removed ") << conf << "; every saved value is back\n";
  return 0;
}

int check(const Paths& paths, const std::vector<Entry>& wanted, std::ostream& out, std::ostream& err) {
  std::vector<std::vector<std::string>> rows = {{"setting", "now", "wanted", "ok"}};
  int shortfalls = 0;
  for (const auto& w : wanted) {
    const cap::Compare c = cap::compare_for(w.key);
    const std::string want = std::string(cap::compare_name(c)) + " " + w.value;
    std::string now;
    int code = 0;
    if (!sysctl::read(paths.proc_root, w.key, now, code)) {
      if (w.optional && code == ENOENT) {
        rows.push_back({w.key, "-", want, "n/a (not on this kernel)"});
        continue;
      }
      err << "ringgate tune check: " << sysctl::describe(w.key, code, false) << "\n";
      rows.push_back({w.key, "-", want, "MISSING"});
      ++shortfalls;
      continue;
    }
    const bool ok = cap::satisfies(c, now, w.value);
    if (!ok) ++shortfalls;
    rows.push_back({w.key, spaced(now), want, ok ? "yes" : "NO"});
  }
  out << table(rows);
  out << (shortfalls ? absl::StrFormat("%d of %u settings fall short\n", shortfalls, wanted.size())
                     : absl::StrFormat("all %u settings meet the wanted values\n", wanted.size()));
  return shortfalls ? 1 : 0;
}

cap::HostFacts read_host(const std::string& proc_root) {
  cap::HostFacts h;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemTotal:") {
      h.ram_bytes = kib * 1024;
      break;
    }
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  h.cpus = static_cast<std::uint32_t>(std::max(1L, cpus));
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  h.nofile_hard = nofile.rlim_max == RLIM_INFINITY ? cap::table_slots_max : nofile.rlim_max;
  const long page = sysconf(_SC_PAGESIZE);
  h.page_bytes = page > 0 ? static_cast<std::uint64_t>(page) : 4096;
  std::string v;
  int e = 0;
  h.conntrack = sysctl::read(proc_root, "net.netfilter.nf_conntrack_max", v, e);
  return h;
}

int run(int argc, char** argv, std::ostream& out, std::ostream& err) {
  Args a;
  std::string error;
  if (!parse_args(argc, argv, a, error)) {
    err << "ringgate tune: " << error << "\n" << usage;
    return 2;
  }
  if (a.has("help") || a.command.empty()) {
    (a.has("help") ? out : err) << usage;
    return a.has("help") ? 0 : 2;
  }
  if (!a.positional.empty()) {
    err << "ringgate tune " << a.command << ": unexpected argument '" << a.positional[0] << "'\n";
    return 2;
  }
  // Each command takes its own options; one that does nothing there is a mistake worth saying.
  const std::vector<std::string> planning = {"connections", "msg-rate", "buffer", "clients-on-host", "tls", "ram",
                                             "cpus", "nofile", "config", "proc-sys"};
  std::vector<std::string> allowed;
  if (a.command == "plan") {
    allowed = planning;
    allowed.insert(allowed.end(), {"format", "name"});
  } else if (a.command == "check") {
    allowed = planning;
    allowed.insert(allowed.end(), {"profile", "profile-dir"});
  } else if (a.command == "apply") {
    allowed = {"profile", "profile-dir", "dry-run", "proc-sys", "sysctl-dir", "state-file"};
  } else if (a.command == "rollback") {
    allowed = {"proc-sys", "sysctl-dir", "state-file"};
  }
  for (const auto& [k, v] : a.values)
    if (k != "help" && !allowed.empty() && std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      err << "ringgate tune " << a.command << ": --" << k << " does not apply here\n";
      return 2;
    }
  const bool plans = a.command == "plan" || (a.command == "check" && a.has("connections"));
  if (!plans && !a.server.empty()) {
    err << "ringgate tune " << a.command << ": unknown option --" << a.server[0].first << "\n";
    return 2;
  }
  if (a.command == "plan") return cmd_plan(a, out, err);
  if (a.command == "check") return cmd_check(a, out, err);
  if (a.command == "apply") return cmd_apply(a, out, err);
  if (a.command == "rollback") return rollback(paths_of(a), out, err);
  err << "ringgate tune: unknown command '" << a.command << "' (plan, check, apply, rollback)\n" << usage;
  return 2;
}

}  // namespace rg::server::tune
