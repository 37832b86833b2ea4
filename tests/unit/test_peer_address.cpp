// Address ranges (server/peer_address.h): what proxy_protocol_from accepts,
// and which peers each range holds.  IPv4 and its IPv4-mapped IPv6 form are
// the same peer.

#include <gtest/gtest.h>

#include <string>

#include "server/peer_address.h"

namespace {

using rg::server::AddressRange;
using rg::server::PeerAddress;

PeerAddress peer(const char* text) {
  sockaddr_storage ss{};
  if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in&>(ss).sin_addr) == 1) {
    ss.ss_family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6&>(ss).sin6_addr), 1) << text;
    ss.ss_family = AF_INET6;
  }
  return PeerAddress::from(ss);
}

struct Match {
  const char* range;
  const char* address;
  bool inside;
};

const Match matches[] = {
    {"127.0.0.1", "127.0.0.1", true},
    {"127.0.0.1", "127.0.0.2", false},
    {"127.0.0.1/32", "127.0.0.1", true},
    {"10.0.0.0/8", "10.255.3.4", true},
    {"10.0.0.0/8", "11.0.0.0", false},
    {"10.0.0.0/8", "9.255.255.255", false},
    {"192.168.4.0/22", "192.168.7.255", true},   // a prefix that ends inside a byte
    {"192.168.4.0/22", "192.168.8.0", false},
    {"192.168.4.0/22", "192.168.3.255", false},
    {"0.0.0.0/0", "203.0.113.9", true},          // every IPv4 client
    {"0.0.0.0/0", "2001:db8::1", false},         // but no IPv6 one
    {"10.0.0.0/8", "::ffff:10.1.2.3", true},     // an IPv4 balancer on a dual-stack listener
    {"::ffff:10.0.0.0/104", "10.9.9.9", true},
    {"2001:db8::/32", "2001:db8:ffff::1", true},
    {"2001:db8::/32", "2001:db9::1", false},
    {"fc00::/7", "fdff::1", true},
    {"fc00::/7", "fe00::1", false},
    {"::1", "::1", true},
    {"::1", "127.0.0.1", false},
    {"::/0", "127.0.0.1", true},                 // ::/0 holds the mapped IPv4 addresses too
};

TEST(AddressRange, HoldsWhatItsPrefixCovers) {
  for (const Match& m : matches) {
    AddressRange r;
    std::string error;
    ASSERT_TRUE(AddressRange::parse(m.range, r, error)) << m.range << ": " << error;
    EXPECT_EQ(r.contains(peer(m.address)), m.inside) << m.range << " vs " << m.address;
  }
}

struct Bad {
  const char* text;
  const char* says;
};

const Bad bad[] = {
    {"", "is not an IPv4 or IPv6 address"},
    {"balancer.local", "is not an IPv4 or IPv6 address"},
    {"10.0.0.0/", "must be a number"},
    {"10.0.0.0/x", "must be a number"},
    {"10.0.0.0/-1", "must be a number"},
    {"10.0.0.0/1234", "must be a number"},
    {"10.0.0.0/33", "at most 32 bits"},
    {"::/129", "at most 128 bits"},
    {"10.0.0.1/8", "bits set beyond its prefix length"},
    {"2001:db8::1/32", "bits set beyond its prefix length"},
    {"fd00::/7", "bits set beyond its prefix length"},  // the range is fc00::/7
    {"10.0.0.0/8/8", "must be a number"},
    {"256.0.0.0/8", "is not an IPv4 or IPv6 address"},
};

TEST(AddressRange, RefusesWhatIsNotARangeNamingWhy) {
  for (const Bad& b : bad) {
    AddressRange r;
    std::string error;
    EXPECT_FALSE(AddressRange::parse(b.text, r, error)) << b.text;
    EXPECT_NE(error.find(b.says), std::string::npos) << b.text << ": " << error;
  }
}

TEST(PeerAddress, StorageRoundTripsBothFamilies) {
  for (const char* text : {"203.0.113.7", "2001:db8::42"}) {
    const PeerAddress p = peer(text);
    EXPECT_EQ(PeerAddress::from(p.storage()), p) << text;
    EXPECT_EQ(p.text(), text);
  }
}

}  // namespace
