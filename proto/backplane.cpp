#include "proto/backplane.h"

#include <algorithm>

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

bool parse_url(std::string_view url, Address& out, std::string& error) {
  constexpr std::string_view scheme = "redis://";
  if (!url.starts_with(scheme)) {
    error = "backplane must be off or redis://HOST:PORT";
    return false;
  }
  std::string_view rest = url.substr(scheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
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
  if (host.empty() || host.find_first_of("/@?# ") != std::string_view::npos) {
    error = "backplane: a host is needed, without user, password, path or query: redis://HOST:PORT";
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

}  // namespace rg::proto::backplane
