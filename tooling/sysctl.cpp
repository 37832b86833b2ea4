// Reading and writing sysctls and profile files (tooling/sysctl.h).
#include "tooling/sysctl.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace rg::server::sysctl {

bool path_of(const std::string& root, const std::string& key, std::string& path) {
  if (key.empty() || key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos) return false;
  std::string rel;
  for (char ch : key) {
    const bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                       ch == '-';
    if (ch == '.') rel += '/';
    else if (plain) rel += ch;
    else return false;
  }
  path = root + "/" + rel;
  return true;
}

bool read_file(const std::string& path, std::string& content, int& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = errno;
    return false;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = errno;
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  content = std::move(text);
  return true;
}

bool read(const std::string& root, const std::string& key, std::string& value, int& error) {
  std::string path;
  if (!path_of(root, key, path)) {
    error = EINVAL;
    return false;
  }
  std::string text;
  if (!read_file(path, text, error)) return false;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  value = text;
  return true;
}

bool write(const std::string& root, const std::string& key, const std::string& value, int& error) {
  std::string path;
  if (!path_of(root, key, path)) {
    error = EINVAL;
    return false;
  }
  // No O_CREAT: a key that does not exist must fail, never appear.
  const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    error = errno;
    return false;
  }
  const std::string line = value + "\n";
  ssize_t n;
  do {
    n = ::write(fd, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  const int write_errno = errno;
  // procfs reports some refusals only at close.
  const int closed = ::close(fd);
  if (n < 0 || static_cast<std::size_t>(n) != line.size()) {
    error = n < 0 ? write_errno : EIO;
    return false;
  }
  if (closed != 0) {
    error = errno;
    return false;
  }
  return true;
}

bool writable(const std::string& root, const std::string& key, int& error) {
  std::string path;
  if (!path_of(root, key, path)) {
    error = EINVAL;
    return false;
  }
  if (::access(path.c_str(), W_OK) != 0) {
    error = errno;
    return false;
  }
  return true;
}

std::string describe(const std::string& key, int error, bool writing) {
  std::string path;
  if (!path_of("", key, path)) return key + ": not a sysctl name (letters, digits, '_', '-' between dots)";
  switch (error) {
    case ENOENT:
      return key + ": does not exist on this kernel (a module not loaded, or a key kept by the initial network "
                   "namespace only)";
    case EACCES:
    case EPERM:
    case EROFS:
      return key + (writing ? ": write refused (" : ": read refused (") + std::strerror(error) +
             "): read-only here, e.g. a global key seen from a network namespace or a container";
    case EINVAL:
      return key + (writing ? ": the kernel refused the value (Invalid argument)" : ": Invalid argument");
    default:
      return key + (writing ? ": write failed: " : ": read failed: ") + std::strerror(error);
  }
}

}  // namespace rg::server::sysctl
