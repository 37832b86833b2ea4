// Reading and writing sysctls through /proc/sys, one file per key, with every
// failure kept as its errno so callers can name the key and the reason.
#pragma once

#include <string>

namespace rg::server::sysctl {

inline constexpr const char* proc_root = "/proc/sys";

// The file of `key` under `root`: dots become slashes.  False for anything
// but a plain dotted name (letters, digits, '_', '-'), so no key can
// reach outside `root`.
[[nodiscard]] bool path_of(const std::string& root, const std::string& key, std::string& path);

// The whole of a file, read with read(2) until EOF.  False with `error` =
// errno.  (Also what `ringgate tune` reads its profiles and state with.)
[[nodiscard]] bool read_file(const std::string& path, std::string& content, int& error);

// The value as the kernel prints it, without the trailing newline (fields
// stay separated by the kernel's tabs).  False with `error` = errno;
// ENOENT means this kernel, or this network namespace, has no such key.
[[nodiscard]] bool read(const std::string& root, const std::string& key, std::string& value, int& error);

// One write(2) of `value`.  False with `error` = errno: EACCES/EPERM when the
// key is read-only here, EINVAL when the kernel refuses the value.
[[nodiscard]] bool write(const std::string& root, const std::string& key, const std::string& value, int& error);

// Whether this process may write the key (access(2) W_OK): procfs answers
// for read-only keys, such as net.core.rmem_max outside the initial network
// namespace, before anything is changed.
[[nodiscard]] bool writable(const std::string& root, const std::string& key, int& error);

// "<key>: <reason>", worded for an operator: what is wrong and what to do.
[[nodiscard]] std::string describe(const std::string& key, int error, bool writing);

}  // namespace rg::server::sysctl
