// proto/pubsub.h: parse_channels_query (the `?channels=` of a pub/sub
// connect), ChannelList and query_param.
//
// Input: the query string (the part after '?').
// The result is checked against a second reading written from the
// documented rules: every `channels=` value percent-decoded, split on ',',
// each item a valid name, duplicates merged, at most 64 channels.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "proto/pubsub.h"

namespace {

using namespace rg::proto::pubsub;

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The documented rules, plainly.  too_many covers both over 64 channels and
// over query_value_bytes_max decoded bytes, in one value or all together.
struct Expected {
  ErrorCode error = ErrorCode::none;
  std::vector<std::string> channels;
};

Expected expected(std::string_view query) {
  Expected e;
  std::size_t stored = 0;  // bytes of distinct names kept
  while (true) {
    const std::size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    if (param.starts_with("channels=")) {
      const std::string_view value = param.substr(9);
      std::string decoded;
      for (std::size_t i = 0; i < value.size(); ++i) {
        char c = value[i];
        if (c == '%') {
          if (i + 2 >= value.size() || hex(value[i + 1]) < 0 || hex(value[i + 2]) < 0) {
            e.error = ErrorCode::invalid_channel;
            return e;
          }
          c = static_cast<char>(hex(value[i + 1]) * 16 + hex(value[i + 2]));
          i += 2;
        }
        if (decoded.size() == query_value_bytes_max) {
          e.error = ErrorCode::too_many_channels;
          return e;
        }
        decoded += c;
      }
      std::string_view rest = decoded;
      while (true) {
        const std::size_t comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        if (!check_name(item).ok()) {
          e.error = ErrorCode::invalid_channel;
          return e;
        }
        bool dup = false;
        for (const auto& c : e.channels) dup = dup || c == item;
        if (!dup) {
          if (e.channels.size() == channels_max || stored + item.size() > query_value_bytes_max) {
            e.error = ErrorCode::too_many_channels;
            return e;
          }
          e.channels.emplace_back(item);
          stored += item.size();
        }
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view query = rg::fuzz::chars({data, size});
  ChannelList list;
  list.add("stale");  // parse clears it
  const QueryResult r = parse_channels_query(query, list);
  const Expected e = expected(query);
  FUZZ_CHECK(r.error == e.error);
  if (r.ok()) {
    FUZZ_CHECK(r.message.empty());
    FUZZ_CHECK(list.size() == e.channels.size() && list.size() <= channels_max);
    for (std::size_t i = 0; i < list.size(); ++i) {
      FUZZ_CHECK(list[i] == e.channels[i]);
      FUZZ_CHECK(check_name(list[i]).ok() && list.contains(list[i]));
    }
    FUZZ_CHECK(list.empty() == (list.size() == 0));
  } else {
    FUZZ_CHECK(!r.message.empty());
  }

  // query_param: the raw value of the first `name=` (or bare `name`).
  for (const std::string_view name : {std::string_view("token"), std::string_view("channels")}) {
    bool found = false;
    const std::string_view v = query_param(query, name, found);
    bool want_found = false;
    std::string_view want;
    std::string_view q = query;
    while (!q.empty()) {
      const std::size_t amp = q.find('&');
      const std::string_view p = q.substr(0, amp);
      if (p == name || (p.starts_with(name) && p.size() > name.size() && p[name.size()] == '=')) {
        want_found = true;
        want = p == name ? std::string_view{} : p.substr(name.size() + 1);
        break;
      }
      if (amp == std::string_view::npos) break;
      q.remove_prefix(amp + 1);
    }
    FUZZ_CHECK(found == want_found && v == want);
    if (found && !v.empty()) FUZZ_CHECK(v.data() >= query.data() && v.data() + v.size() <= query.data() + query.size());
  }
  return 0;
}
