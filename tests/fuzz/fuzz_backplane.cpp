// fuzz_backplane: the Redis backplane's wire, proto/backplane.h: what a node
// makes of the (channel, payload) pairs Redis hands it, and of the
// backplane URL.  Input: a control byte (bit 0: the rest is a URL; bit 1:
// a cluster's error answer), else a key length byte, the key, then the
// payload.  Properties:
//   - parse_key() accepts exactly what key() makes of a valid name, and
//     key() of what it parsed gives the input back;
//   - decode() accepts exactly "rg1 " + a valid id + "\n" + anything, its
//     views lie inside the input, and encode() of what it decoded gives the
//     input back;
//   - instance_node() gives a valid node id only for "NODE/DIGITS";
//   - parse_url() either fails with a reason or gives 1..16 endpoints
//     (one unless redis-cluster://), each a non-empty host without '/',
//     '@', ',' or spaces and a port from 1 to 65535, and describe() of it
//     parses back;
//   - (control bit 1) parse_redirect() gives a slot below 16384 and a port,
//     only for "MOVED " or "ASK ", and slot() stays below 16384.
#include <string>

#include "fuzz_support.h"
#include "proto/backplane.h"
#include "proto/pubsub.h"

using namespace rg::proto::backplane;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t control = data[0];
  const std::span<const std::uint8_t> rest(data + 1, size - 1);
  if (control & 1) {
    Address a;
    std::string error;
    const std::string_view url(reinterpret_cast<const char*>(rest.data()), rest.size());
    if (parse_url(url, a, error)) {
      FUZZ_CHECK(!a.endpoints.empty() && a.endpoints.size() <= seeds_max);
      FUZZ_CHECK(a.cluster || a.endpoints.size() == 1);
      for (const Endpoint& e : a.endpoints) {
        FUZZ_CHECK(!e.host.empty() && e.port >= 1);
        FUZZ_CHECK(e.host.find_first_of("/@?#, ") == std::string::npos);
      }
      // What describe() writes parses back to the same endpoints.
      Address again;
      FUZZ_CHECK(parse_url(describe(a), again, error) && again.cluster == a.cluster &&
                 again.endpoints.size() == a.endpoints.size());
    } else {
      FUZZ_CHECK(!error.empty());
    }
    return 0;
  }
  if (control & 2) {
    // The same bytes as a cluster's error answer.
    const std::string_view text(reinterpret_cast<const char*>(rest.data()), rest.size());
    const Redirect r = parse_redirect(text);
    if (r.kind != Redirect::Kind::none) {
      FUZZ_CHECK(r.slot < slots && r.to.port >= 1);
      FUZZ_CHECK(text.starts_with(r.kind == Redirect::Kind::moved ? "MOVED " : "ASK "));
    }
    FUZZ_CHECK(slot(text) < slots);
    return 0;
  }
  if (rest.empty()) return 0;
  const std::size_t key_len = std::min<std::size_t>(rest[0], rest.size() - 1);
  const std::string_view k(reinterpret_cast<const char*>(rest.data() + 1), key_len);
  // The same bytes as a registry field: a node instance "NODE/START".
  const std::string_view node = instance_node(k);
  if (!node.empty()) {
    FUZZ_CHECK(rg::proto::pubsub::check_name(node).ok());
    FUZZ_CHECK(k.size() > node.size() + 1 && k.substr(0, node.size()) == node && k[node.size()] == '/');
    FUZZ_CHECK(k.substr(node.size() + 1).find_first_not_of("0123456789") == std::string_view::npos);
  }
  const Key parsed = parse_key(k);
  if (parsed.ok) {
    FUZZ_CHECK(rg::proto::pubsub::check_name(parsed.name).ok());
    FUZZ_CHECK(key(parsed.target, parsed.name) == k);
  }
  const std::span<const std::uint8_t> payload = rest.subspan(1 + key_len);
  const Message m = decode(payload);
  if (m.ok) {
    FUZZ_CHECK(rg::proto::pubsub::check_name(m.id).ok());
    const auto* begin = payload.data();
    const auto* end = payload.data() + payload.size();
    FUZZ_CHECK(reinterpret_cast<const std::uint8_t*>(m.id.data()) >= begin);
    FUZZ_CHECK(m.body.data() >= begin && m.body.data() + m.body.size() == end);
    const std::string again = encode(m.id, m.body);
    FUZZ_CHECK(again.size() == payload.size() && std::equal(again.begin(), again.end(), begin,
                                                            [](char c, std::uint8_t b) { return static_cast<std::uint8_t>(c) == b; }));
  } else {
    FUZZ_CHECK(!m.error.empty());
  }
  return 0;
}
