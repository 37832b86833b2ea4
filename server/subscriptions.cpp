// The pub/sub index (server/subscriptions.h): channels, users and subscription nodes with free lists.
#include "server/subscriptions.h"

#include <cassert>

#include "base/free_list.h"

namespace rg::server {

namespace {

// Debian's abseil is built with its own string_view type, which its string
// hash takes for heterogeneous lookups.
absl::string_view key(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

void SubscriptionIndex::init(std::uint32_t subscribers_max, std::uint32_t subscriptions_per_subscriber_max) {
  subscribers_max_ = subscribers_max;
  per_subscriber_max_ = subscriptions_per_subscriber_max;
  // Address space only: pages are touched as subscribers arrive.
  subs_.reserve(subscribers_max);
  free_subs_.reserve(subscribers_max);
}

std::uint32_t SubscriptionIndex::attach(std::uint32_t slot) {
  if (subscribers_ >= subscribers_max_) return nil;
  const std::uint32_t sub = base::take_slot(subs_, free_subs_);
  subs_[sub].slot = slot;
  ++subscribers_;
  return sub;
}

void SubscriptionIndex::detach(std::uint32_t sub) {
  Subscriber& s = subs_[sub];
  assert(s.slot != nil);
  for (std::uint32_t n = s.head; n != nil;) {
    const std::uint32_t next = nodes_[n].sub_next;
    const std::uint32_t channel = nodes_[n].channel;
    unlink(n);
    maybe_free_channel(channel);
    n = next;
  }
  subscriptions_ -= s.count;
  unlink_user(sub);
  subs_[sub] = Subscriber{};
  free_subs_.push_back(sub);
  --subscribers_;
}

std::uint32_t SubscriptionIndex::find_channel(std::string_view name) const {
  const auto it = channel_ids_.find(key(name));
  return it == channel_ids_.end() ? nil : it->second;
}

std::uint32_t SubscriptionIndex::channel_id(std::string_view name) {
  const auto [it, inserted] = channel_ids_.try_emplace(key(name), 0);
  if (inserted) {
    it->second = base::take_slot(channels_, free_channels_);
    channels_[it->second].name = std::string(name);
    name_bytes_ += name.size();
  }
  return it->second;
}

SubscriptionIndex::Added SubscriptionIndex::subscribe(std::uint32_t sub, std::string_view channel) {
  Subscriber& s = subs_[sub];
  const std::uint32_t existing = find_channel(channel);
  if (existing != nil) {
    for (std::uint32_t n = s.head; n != nil; n = nodes_[n].sub_next)
      if (nodes_[n].channel == existing) return Added::already;
  }
  if (s.count >= per_subscriber_max_) return Added::too_many;
  const std::uint32_t c = existing != nil ? existing : channel_id(channel);
  const std::uint32_t n = base::take_slot(nodes_, free_nodes_);
  Channel& ch = channels_[c];
  nodes_[n] = Node{c, sub, ch.tail, nil, s.head};
  if (ch.tail != nil) nodes_[ch.tail].next = n;
  else ch.head = n;
  ch.tail = n;
  ++ch.count;
  if (watch_) watch_->counted(Watch::Kind::channel, ch.name, +1);
  s.head = n;
  ++s.count;
  ++subscriptions_;
  return Added::added;
}

bool SubscriptionIndex::unsubscribe(std::uint32_t sub, std::string_view channel) {
  const std::uint32_t c = find_channel(channel);
  if (c == nil) return false;
  Subscriber& s = subs_[sub];
  for (std::uint32_t* link = &s.head; *link != nil; link = &nodes_[*link].sub_next) {
    const std::uint32_t n = *link;
    if (nodes_[n].channel != c) continue;
    *link = nodes_[n].sub_next;
    unlink(n);
    --s.count;
    --subscriptions_;
    maybe_free_channel(c);
    return true;
  }
  return false;
}

void SubscriptionIndex::unlink(std::uint32_t n) {
  const Node node = nodes_[n];
  Channel& ch = channels_[node.channel];
  if (node.prev != nil) nodes_[node.prev].next = node.next;
  else ch.head = node.next;
  if (node.next != nil) nodes_[node.next].prev = node.prev;
  else ch.tail = node.prev;
  --ch.count;
  if (watch_) watch_->counted(Watch::Kind::channel, ch.name, -1);
  // A walk about to visit this node moves on to the one after it.
  if (walk_next_ == n) walk_next_ = node.next;
  free_nodes_.push_back(n);
}

void SubscriptionIndex::maybe_free_channel(std::uint32_t c) {
  Channel& ch = channels_[c];
  if (ch.count != 0 || c == walk_channel_) return;
  name_bytes_ -= ch.name.size();
  channel_ids_.erase(ch.name);
  ch = Channel{};
  free_channels_.push_back(c);
}

void SubscriptionIndex::set_user(std::uint32_t sub, std::string_view user) {
  Subscriber& s = subs_[sub];
  assert(s.user == nil);
  const auto [it, inserted] = user_ids_.try_emplace(key(user), 0);
  if (inserted) {
    it->second = base::take_slot(users_, free_users_);
    users_[it->second].name = std::string(user);
    name_bytes_ += user.size();
  }
  User& u = users_[it->second];
  s.user = it->second;
  s.user_prev = nil;
  s.user_next = u.head;
  if (u.head != nil) subs_[u.head].user_prev = sub;
  u.head = sub;
  ++u.count;
  if (watch_) watch_->counted(Watch::Kind::user, u.name, +1);
}

void SubscriptionIndex::unlink_user(std::uint32_t sub) {
  Subscriber& s = subs_[sub];
  if (s.user == nil) return;
  User& u = users_[s.user];
  if (s.user_prev != nil) subs_[s.user_prev].user_next = s.user_next;
  else u.head = s.user_next;
  if (s.user_next != nil) subs_[s.user_next].user_prev = s.user_prev;
  if (watch_) watch_->counted(Watch::Kind::user, u.name, -1);
  if (--u.count == 0) {
    name_bytes_ -= u.name.size();
    user_ids_.erase(u.name);
    u = User{};
    free_users_.push_back(s.user);
  }
  s.user = s.user_prev = s.user_next = nil;
}

std::uint32_t SubscriptionIndex::find_user(std::string_view name) const {
  const auto it = user_ids_.find(key(name));
  return it == user_ids_.end() ? nil : it->second;
}

void SubscriptionIndex::begin_walk(std::uint32_t channel) {
  assert(walk_channel_ == nil);
  walk_channel_ = channel;
  walk_next_ = channels_[channel].head;
}

std::uint32_t SubscriptionIndex::next() {
  if (walk_next_ == nil) return nil;
  const std::uint32_t n = walk_next_;
  walk_next_ = nodes_[n].next;
  return nodes_[n].sub;
}

void SubscriptionIndex::end_walk() {
  const std::uint32_t c = walk_channel_;
  walk_channel_ = walk_next_ = nil;
  if (c != nil) maybe_free_channel(c);
}

std::uint64_t SubscriptionIndex::memory_bytes() const noexcept {
  return subs_.capacity() * sizeof(Subscriber) + nodes_.capacity() * sizeof(Node) +
         channels_.capacity() * sizeof(Channel) + users_.capacity() * sizeof(User) + name_bytes_ +
         (channel_ids_.capacity() + user_ids_.capacity()) * (sizeof(std::string) + sizeof(std::uint32_t));
}

}  // namespace rg::server
