// `ringgate tune`: kernel tuning for a target number of connections.
//
//   plan     --connections N [--msg-rate R] [--buffer SIZE] [--clients-on-host] [--format table|sysctl]
//   check    --connections N | --profile P
//   apply    --profile P [--dry-run]
//   rollback
//
// The numbers come from the capacity model (capacity_model.h), the same one
// the server sizes itself with.  apply writes the profile to
// <sysctl-dir>/60-ringgate.conf and to /proc/sys, after saving every value
// it is about to change (and the file it replaces) in a state file;
// rollback restores them exactly.  A key this kernel does not have, or a
// write it refuses, is reported by name and nothing is left half done.
//
// Paths are flags or environment variables, so tests never touch /etc:
//   --proc-sys DIR     RINGGATE_PROC_SYS     default /proc/sys
//   --sysctl-dir DIR   RINGGATE_SYSCTL_DIR   default /etc/sysctl.d
//   --state-file FILE  RINGGATE_TUNE_STATE   default /var/lib/ringgate/sysctl-state
//   --profile-dir DIR  RINGGATE_PROFILE_DIR  default: sysctl/ beside the build, then /usr/share/ringgate/sysctl
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "tooling/capacity_model.h"

namespace rg::server::tune {

inline constexpr const char* conf_name = "60-ringgate.conf";

// Runs `ringgate tune ...`; argv[0] is "tune".  Returns the exit status:
// 0 done (check: everything meets the wanted values), 1 a setting falls
// short or an operation failed, 2 bad usage.
int run(int argc, char** argv, std::ostream& out, std::ostream& err);

// ------------------------------------------------------------ profiles

struct Entry {
  std::string key;
  std::string value;  // fields separated by single spaces
  bool optional = false;  // "-key = value": skipped (and said so) where the kernel lacks it
  std::vector<std::string> comments;  // the comment lines above it, without '#'
};

// sysctl.d syntax: "key = value", '#' or ';' comments, a leading '-' for
// keys that may be absent.  False with "origin:line: ..." on bad input.
[[nodiscard]] bool parse_profile(const std::string& text, const std::string& origin, std::vector<Entry>& entries,
                                 std::string& error);

// The plan as a sysctl.d file, every line commented with why it matters and
// how it follows from the target.  `name` titles it; `command` is the plan
// command that reproduces it.
[[nodiscard]] std::string render_profile(const capacity::Plan& plan, const capacity::Target& target,
                                         const std::string& name, const std::string& command);

// ------------------------------------------------------------ state

struct State {
  std::string netns;  // /proc/self/ns/net at apply time
  std::string conf_path;
  bool conf_existed = false;
  std::string conf_before;  // its content, when it existed
  std::vector<std::pair<std::string, std::string>> previous;  // key, value exactly as the kernel printed it
};

// Line-oriented text; values escaped (\\, \t, \n), so a round trip is exact.
[[nodiscard]] std::string encode_state(const State& state);
[[nodiscard]] bool decode_state(const std::string& text, State& state, std::string& error);

// ------------------------------------------------------------ operations

struct Paths {
  std::string proc_root = "/proc/sys";
  std::string sysctl_dir = "/etc/sysctl.d";
  std::string state_file = "/var/lib/ringgate/sysctl-state";
  [[nodiscard]] std::string conf_path() const { return sysctl_dir + "/" + conf_name; }
};

// Each returns an exit status and writes its table to `out`, its errors to `err`.
int apply(const Paths& paths, const std::vector<Entry>& profile, const std::string& profile_name, bool dry_run,
          std::ostream& out, std::ostream& err);
int rollback(const Paths& paths, std::ostream& out, std::ostream& err);
// `optional` entries missing here count as met ("n/a").
int check(const Paths& paths, const std::vector<Entry>& wanted, std::ostream& out, std::ostream& err);

// The entries of a plan, as a profile would hold them.
[[nodiscard]] std::vector<Entry> entries_of(const capacity::Plan& plan);

// This host, read from /proc and getrlimit (`proc_root` for conntrack).
[[nodiscard]] capacity::HostFacts read_host(const std::string& proc_root);

}  // namespace rg::server::tune
