// fuzz_tls_names: which certificate name covers a ClientHello's SNI,
// proto/tls_names.h name_matches.  The input is PATTERN \0 HOST (no NUL:
// the whole input is both).  Properties, against a plainer reading of RFC
// 6125 6.4 written here:
//   - ASCII case never matters, on either side;
//   - one trailing root dot on the host never matters;
//   - a pattern without "*." matches exactly the names equal to it (case
//     and root dots aside);
//   - "*.REST" matches exactly the hosts made of one non-empty label, a
//     dot and REST, where REST has two labels or more and no '*'.
#include <string>

#include "fuzz_support.h"
#include "proto/tls_names.h"

namespace {

using rg::proto::tls::name_matches;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}
std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}
std::string_view undot(std::string_view s) { return !s.empty() && s.back() == '.' ? s.substr(0, s.size() - 1) : s; }

bool expected(std::string_view pattern, std::string_view host) {
  const std::string p = lower(undot(pattern));
  const std::string h = lower(undot(host));
  if (p.empty() || h.empty()) return false;
  if (p.rfind("*.", 0) != 0) return p == h;
  const std::string rest = p.substr(2);
  if (rest.find('.') == std::string::npos || rest.find('*') != std::string::npos) return false;
  const std::size_t dot = h.find('.');
  return dot != std::string::npos && dot > 0 && h.substr(dot + 1) == rest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = input.find('\0');
  const std::string_view pattern = input.substr(0, nul);
  const std::string_view host = nul == std::string_view::npos ? input : input.substr(nul + 1);

  const bool m = name_matches(pattern, host);
  FUZZ_CHECK(m == expected(pattern, host));
  FUZZ_CHECK(m == name_matches(upper(pattern), lower(host)));
  FUZZ_CHECK(m == name_matches(lower(pattern), upper(host)));
  if (!host.empty() && host.back() != '.') FUZZ_CHECK(m == name_matches(pattern, std::string(host) + "."));
  return 0;
}
