// Server names for TLS: which certificate answers a ClientHello's SNI.
// Pure: strings in, a verdict out (server/tls_context.cpp applies it).
#pragma once

#include <string_view>

namespace rg::proto::tls {

// Whether `host` (a ClientHello's server_name) is covered by `pattern` (one
// DNS name of a certificate's subjectAltName), the way RFC 6125 6.4 has
// clients check it: ASCII case-insensitive, an optional trailing dot
// ignored, and a wildcard only as the whole leftmost label ("*.example.com"
// covers "a.example.com", never "example.com" or "a.b.example.com").  A
// wildcard over fewer than two labels ("*.com", "*") covers nothing.
[[nodiscard]] bool name_matches(std::string_view pattern, std::string_view host) noexcept;

}  // namespace rg::proto::tls
