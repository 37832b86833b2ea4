// Server names for TLS (proto/tls_names.h).
#include "proto/tls_names.h"

#include <cstddef>

namespace rg::proto::tls {

namespace {

char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool equal_ascii(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view without_root_dot(std::string_view name) noexcept {
  return !name.empty() && name.back() == '.' ? name.substr(0, name.size() - 1) : name;
}

}  // namespace

bool name_matches(std::string_view pattern, std::string_view host) noexcept {
  pattern = without_root_dot(pattern);
  host = without_root_dot(host);
  if (pattern.empty() || host.empty()) return false;
  if (pattern.size() < 2 || pattern[0] != '*' || pattern[1] != '.') return equal_ascii(pattern, host);
  // "*.rest": rest must itself hold a dot (two labels at least), and host
  // must be one non-empty label followed by ".rest".
  const std::string_view rest = pattern.substr(2);
  if (rest.find('.') == std::string_view::npos || rest.find('*') != std::string_view::npos) return false;
  const std::size_t dot = host.find('.');
  if (dot == 0 || dot == std::string_view::npos) return false;
  return equal_ascii(host.substr(dot + 1), rest);
}

}  // namespace rg::proto::tls
