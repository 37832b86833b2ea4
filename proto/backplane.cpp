#include "proto/backplane.h"

#include <algorithm>
#include <array>

#include "proto/pubsub.h"

namespace rg::proto::backplane {

namespace {
constexpr std::string_view channel_prefix = "rg:{c:";
constexpr std::string_view user_prefix = "rg:{u:";
}  // namespace

std::string key(Target target, std::string_view name) {
  std::string out;
  out.reserve(channel_prefix.size() + name.size() + 1);
  out.append(target == Target::channel ? channel_prefix : user_prefix);
  out.append(name);
  out.push_back('}');
  return out;
}

Key parse_key(std::string_view key) noexcept {
  Key k;
  if (key.size() < channel_prefix.size() + 2 || key.back() != '}') return k;
  if (key.starts_with(channel_prefix)) k.target = Target::channel;
  else if (key.starts_with(user_prefix)) k.target = Target::user;
  else return k;
  k.name = key.substr(channel_prefix.size(), key.size() - channel_prefix.size() - 1);
  k.ok = pubsub::check_name(k.name).ok();
  if (!k.ok) k.name = {};
  return k;
}

std::string registry_key(Target target, std::string_view name) {
  std::string out = key(target, name);
  out.append(":nodes");
  return out;
}

std::string node_key(std::string_view instance) {
  std::string out = "rg:{n:";
  out.append(instance);
  out.push_back('}');
  return out;
}

std::string instance(std::string_view node_id, std::uint64_t start_ms) {
  std::string out(node_id);
  out.push_back('/');
  out.append(std::to_string(start_ms));
  return out;
}

std::string_view instance_node(std::string_view instance) noexcept {
  const std::size_t slash = instance.rfind('/');
  if (slash == std::string_view::npos || slash + 1 == instance.size()) return {};
  const std::string_view node = instance.substr(0, slash);
  const std::string_view start = instance.substr(slash + 1);
  if (!pubsub::check_name(node).ok()) return {};
  for (const char c : start)
    if (c < '0' || c > '9') return {};
  return node;
}

std::string encode(std::string_view id, std::span<const std::uint8_t> body) {
  std::string out;
  out.reserve(message_prefix.size() + id.size() + 1 + body.size());
  out.append(message_prefix);
  out.append(id);
  out.push_back('\n');
  out.append(reinterpret_cast<const char*>(body.data()), body.size());
  return out;
}

Message decode(std::span<const std::uint8_t> wire) noexcept {
  Message m;
  const std::string_view text(reinterpret_cast<const char*>(wire.data()), wire.size());
  if (!text.starts_with(message_prefix)) {
    m.error = "not a ringgate backplane message (no \"rg1 \" prefix)";
    return m;
  }
  // The id is a valid name: at most 128 bytes before the newline.
  const std::string_view rest = text.substr(message_prefix.size());
  const std::size_t newline = rest.substr(0, pubsub::name_bytes_max + 1).find('\n');
  if (newline == std::string_view::npos) {
    m.error = "message id not ended by a newline within 128 bytes";
    return m;
  }
  m.id = rest.substr(0, newline);
  if (!pubsub::check_name(m.id).ok()) {
    m.id = {};
    m.error = "message id is not a valid name";
    return m;
  }
  const std::size_t body_at = message_prefix.size() + newline + 1;
  m.body = wire.subspan(body_at);
  m.ok = true;
  return m;
}

namespace {

constexpr std::string_view usage = "backplane must be off, redis://HOST:PORT or redis-cluster://HOST:PORT[,HOST:PORT...]";

// One "HOST[:PORT]" of a backplane URL.
bool parse_endpoint(std::string_view rest, Endpoint& out, std::string& error) {
  if (rest.empty() || rest.find_first_of("/@?# ") != std::string_view::npos) {
    error = "backplane: a host is needed, without user, password, path or query: redis://HOST:PORT";
    return false;
  }
  std::string_view host = rest;
  std::string_view port;
  if (rest.starts_with('[')) {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      error = "backplane: an IPv6 host needs its closing ']'";
      return false;
    }
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        error = "backplane: expected ':PORT' after the IPv6 host";
        return false;
      }
      port = after.substr(1);
    }
  } else if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      error = "backplane: write an IPv6 host in brackets: redis://[::1]:6379";
      return false;
    }
  }
  if (host.empty() || host.find_first_of("/@?#, []") != std::string_view::npos) {
    error = "backplane: a host is needed, without user, password, path or query: redis://HOST:PORT";
    return false;
  }
  // A name or an address: visible ASCII only.
  if (!std::all_of(host.begin(), host.end(), [](char c) { return c > ' ' && c < 0x7f; })) {
    error = "backplane: the host must be a name or an address in visible ASCII";
    return false;
  }
  std::uint32_t p = 6379;
  if (!port.empty() || rest.ends_with(':')) {
    p = 0;
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      error = "backplane: the port must be a number from 1 to 65535";
      return false;
    }
    for (const char c : port) p = p * 10 + static_cast<std::uint32_t>(c - '0');
    if (p == 0 || p > 65535) {
      error = "backplane: the port must be a number from 1 to 65535";
      return false;
    }
  }
  out.host = std::string(host);
  out.port = static_cast<std::uint16_t>(p);
  return true;
}

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the one Redis
// Cluster hashes keys with, table built at compile time.
constexpr std::array<std::uint16_t, 256> crc16_table = [] {
  std::array<std::uint16_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i << 8;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1;
    t[i] = static_cast<std::uint16_t>(crc);
  }
  return t;
}();

}  // namespace

bool parse_url(std::string_view url, Address& out, std::string& error) {
  constexpr std::string_view single = "redis://";
  constexpr std::string_view cluster = "redis-cluster://";
  out = {};
  std::string_view rest;
  if (url.starts_with(single)) {
    rest = url.substr(single.size());
  } else if (url.starts_with(cluster)) {
    rest = url.substr(cluster.size());
    out.cluster = true;
  } else {
    error = usage;
    return false;
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (!out.cluster && rest.find(',') != std::string_view::npos) {
    error = "backplane: redis:// names one Redis; several nodes are redis-cluster://HOST:PORT,HOST:PORT";
    return false;
  }
  for (;;) {
    const std::size_t comma = rest.find(',');
    Endpoint e;
    if (!parse_endpoint(rest.substr(0, comma), e, error)) return false;
    if (out.endpoints.size() == seeds_max) {
      error = "backplane: at most 16 seed nodes in redis-cluster://";
      return false;
    }
    out.endpoints.push_back(std::move(e));
    if (comma == std::string_view::npos) return true;
    rest = rest.substr(comma + 1);
  }
}

std::string describe(const Address& address) {
  std::string out = address.cluster ? "redis-cluster://" : "redis://";
  for (std::size_t i = 0; i < address.endpoints.size(); ++i) {
    const Endpoint& e = address.endpoints[i];
    if (i > 0) out.push_back(',');
    const bool v6 = e.host.find(':') != std::string::npos;
    if (v6) out.push_back('[');
    out.append(e.host);
    if (v6) out.push_back(']');
    out.push_back(':');
    out.append(std::to_string(e.port));
  }
  return out;
}

std::uint16_t slot(std::string_view key) noexcept {
  if (const std::size_t open = key.find('{'); open != std::string_view::npos) {
    const std::size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  std::uint16_t crc = 0;
  for (const char c : key)
    crc = static_cast<std::uint16_t>((crc << 8) ^ crc16_table[((crc >> 8) ^ static_cast<std::uint8_t>(c)) & 0xff]);
  return crc % slots;
}

Redirect parse_redirect(std::string_view error) {
  Redirect r;
  Redirect::Kind kind;
  if (error.starts_with("MOVED ")) {
    kind = Redirect::Kind::moved;
    error.remove_prefix(6);
  } else if (error.starts_with("ASK ")) {
    kind = Redirect::Kind::ask;
    error.remove_prefix(4);
  } else {
    return r;
  }
  const std::size_t space = error.find(' ');
  if (space == 0 || space == std::string_view::npos || space > 5) return r;
  std::uint32_t s = 0;
  for (const char c : error.substr(0, space)) {
    if (c < '0' || c > '9') return r;
    s = s * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (s >= slots) return r;
  // HOST:PORT with the port after the last ':' (Redis writes IPv6 hosts
  // without brackets here).
  const std::string_view where = error.substr(space + 1);
  const std::size_t colon = where.rfind(':');
  if (colon == std::string_view::npos) return r;
  std::string_view host = where.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  const std::string_view port = where.substr(colon + 1);
  if (port.empty() || port.size() > 5 || host.find_first_of("/@?#, ") != std::string_view::npos) return r;
  std::uint32_t p = 0;
  for (const char c : port) {
    if (c < '0' || c > '9') return r;
    p = p * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (p == 0 || p > 65535) return r;
  r.kind = kind;
  r.slot = static_cast<std::uint16_t>(s);
  r.to.host = std::string(host);
  r.to.port = static_cast<std::uint16_t>(p);
  return r;
}

}  // namespace rg::proto::backplane
