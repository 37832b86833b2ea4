// Secrets: the bearer token the publish API compares in constant time.
#pragma once

#include <string_view>

namespace rg::server {

// Constant-time comparison for bearer tokens: the time taken does not
// depend on where the first difference is.
[[nodiscard]] bool same_secret(std::string_view a, std::string_view b) noexcept;

}  // namespace rg::server
