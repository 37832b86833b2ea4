// The pub/sub endpoint: the handshake's channels and token, subscribers and
// their JSON commands, the consumer side of the delivery-source seam (a
// worker drains its mailbox, whoever filled it: the publish API or a
// backplane), fan-out in batches, and each subscriber's delivery queue of
// frames shared by reference.  docs/protocol.md is the client's view;
// docs/architecture.md the fan-out's.
#include <absl/strings/str_format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "base/clock.h"
#include "base/free_list.h"
#include "base/invariant.h"
#include "server/worker_impl.h"

namespace rg::server {

namespace {
// What a queue entry is planned at when the budget sizes the queue: a small
// notification's frame plus the entry.  Smaller frames are possible (raw
// channels), and then the entries run out before the budget does: a counted
// refusal (ws_deliveries_exhausted_total), never growth.
constexpr std::uint64_t delivery_planned_bytes = 64;
// Address space is reserved for at most this many entries per worker
// (8 B each, plus 32 B per message), whatever the budget.
constexpr std::uint64_t deliveries_per_worker_max = 1u << 22;
constexpr std::uint64_t deliveries_per_worker_min = 4096;
}  // namespace

bool Worker::start_pubsub(std::string& error) {
  index_.init(slots_, config_.max_subscriptions);
  // With the backplane on, Redis is asked for the names this worker's
  // clients hold (server/interest.h).
  if (shared_.interest) index_.set_watch(this);
  fanouts_.assign(config_.mailbox_size, Fanout{});
  const auto deliveries = static_cast<std::uint32_t>(std::clamp(
      outbound_.budget_bytes() / delivery_planned_bytes, deliveries_per_worker_min, deliveries_per_worker_max));
  // Pages fault in as entries are first used, and are kept.  Messages: every
  // live one is held by a queue entry or a fan-out under way.
  if (!subs_.init(slots_, false) || !deliveries_.init(deliveries, false) ||
      !msgs_.init(deliveries + config_.mailbox_size, false)) {
    error = absl::StrFormat("mapping pub/sub state for %u subscribers and %u deliveries: %s", slots_, deliveries,
                            std::strerror(errno));
    return false;
  }
  mailbox_ = shared_.mailboxes[id_].get();
  mailbox_->ring_fd.store(ring_.fd());
  commands_ = std::make_unique<pubsub::CommandParser>();
  query_channels_ = std::make_unique<pubsub::ChannelList>();
  if (!commands_->ready()) {
    error = "allocating the JSON command parser";
    return false;
  }
  if (verifier_) {  // auth = jwt: tokens' channel patterns are interned per worker
    pattern_sets_.reserve(slots_);
    free_pattern_sets_.reserve(slots_);
  }
  arm_mailbox_read();
  return true;
}

// Publications this worker still holds at exit: in its mailbox, waiting for
// fan-out, or queued to connections that never drained.
void Worker::release_publications() noexcept {
  if (!mailbox_) return;
  while (Publication* p = mailbox_->pop()) {
    p->counted(0);
    p->unref();
  }
  for (std::size_t i = 0; i < fanout_count_; ++i) {
    const Fanout& f = fanouts_[(fanout_head_ + i) % fanouts_.size()];
    if (!f.started) f.pub->unref();
  }
  for (std::uint32_t i = 0; i < msgs_.high_water(); ++i) {
    LocalMsg& m = msgs_[i];
    if (m.refs > 0 && m.pub) m.pub->unref();
    if (m.refs > 0) delete[] m.owned;
  }
}

// The pub/sub part of a handshake, before anything is counted: the
// `channels=` query and, with auth = jwt, the token.  Answers and returns
// false when the request is refused.
bool Worker::check_pubsub_request(std::uint32_t slot, const http::UpgradeParser& parser) {
  if (parser.query_truncated()) {
    answer_error(slot, 414, "query string longer than 6144 bytes", 0);
    return false;
  }
  const std::string_view query = parser.query();
  const pubsub::QueryResult q = pubsub::parse_channels_query(query, *query_channels_);
  if (!q.ok()) {
    answer_error(slot, 400, q.message, 0);
    return false;
  }
  return !verifier_ || check_token(slot, parser);
}

// Makes an upgraded pub/sub connection a subscriber: its record in the
// index, its user (the token's sub; with auth off, ?user=), its patterns.
bool Worker::open_pubsub(std::uint32_t slot, const http::UpgradeParser& parser) {
  Conn& k = conns_[slot];
  const std::uint32_t sub = index_.attach(slot);
  if (sub == nil) return false;
  subs_[sub] = SubState{};  // subs_ has a record for every table slot
  k.sub = sub;
  if (verifier_) {
    index_.set_user(sub, claims_.claims.sub());
    subs_[sub].patterns = intern_patterns(claims_.claims);
  } else {
    bool found = false;
    const std::string_view user = pubsub::query_param(parser.query(), "user", found);
    if (found && pubsub::check_name(user).ok()) index_.set_user(sub, user);
  }
  counters_.subscribers.set(index_.subscribers());
  return true;
}

void Worker::subscribe_at_connect(std::uint32_t slot) {
  const pubsub::ChannelList& list = *query_channels_;
  for (std::size_t i = 0; i < list.size() && conns_[slot].state == State::open; ++i) subscribe(slot, list[i]);
  publish_index_gauges();
}

bool Worker::allowed(std::uint32_t sub, std::string_view channel) const {
  const std::uint32_t p = subs_[sub].patterns;
  if (p == nil) return true;
  for (const std::string& pattern : pattern_sets_[p].patterns)
    if (pubsub::pattern_matches(pattern, channel)) return true;
  return false;
}

void Worker::subscribe(std::uint32_t slot, std::string_view channel) {
  const std::uint32_t sub = conns_[slot].sub;
  if (!allowed(sub, channel)) {
    answer_command_error(slot, pubsub::ErrorCode::forbidden_channel, "your token's channels claim does not allow this channel");
    return;
  }
  if (index_.subscribe(sub, channel) == SubscriptionIndex::Added::too_many) {
    answer_command_error(slot, pubsub::ErrorCode::too_many_channels, "subscription limit reached (max_subscriptions)");
    return;
  }
  counters_.subscribes_total.add();
  std::array<char, pubsub::answer_bytes_max> out;
  answer(slot, {out.data(), pubsub::build_subscribed(out, channel)});
}

// A complete client message on the pub/sub endpoint: a JSON command.
// Whatever is wrong with it is answered with an error frame; the
// connection stays open.
void Worker::on_command(std::uint32_t slot, ws::Opcode opcode, std::span<const std::uint8_t> payload) {
  if (opcode != ws::Opcode::text) {
    answer_command_error(slot, pubsub::ErrorCode::malformed_json, "commands are JSON text frames, not binary");
    return;
  }
  const pubsub::Command c =
      commands_->parse({reinterpret_cast<const char*>(payload.data()), payload.size()});
  if (!c.ok()) {
    answer_command_error(slot, c.error, c.message);
    return;
  }
  switch (c.type) {
    case pubsub::CommandType::subscribe: subscribe(slot, c.channel()); break;
    case pubsub::CommandType::unsubscribe: {
      // Unsubscribing from a channel one is not subscribed to is not an
      // error: the client's intent (not subscribed) holds either way.
      if (index_.unsubscribe(conns_[slot].sub, c.channel()))
        counters_.unsubscribes_total.add();
      std::array<char, pubsub::answer_bytes_max> out;
      answer(slot, {out.data(), pubsub::build_unsubscribed(out, c.channel())});
      break;
    }
    case pubsub::CommandType::ack:
      // Delivery is at most once per connection (nothing is stored to
      // redeliver), so an ack is counted and needs no answer.
      counters_.acks_total.add();
      break;
  }
  publish_index_gauges();
}

void Worker::answer_command_error(std::uint32_t slot, pubsub::ErrorCode code, std::string_view message) {
  counters_.command_errors_total.add();
  std::array<char, pubsub::answer_bytes_max> out;
  answer(slot, {out.data(), pubsub::build_error(out, code, message)});
}

// Queues one answer frame of our own (a copy: answers are rare and small).
void Worker::answer(std::uint32_t slot, std::span<const char> payload) {
  const std::uint32_t msg = new_msg();
  if (msg == nil) return;  // counted by new_msg
  LocalMsg& m = msgs_[msg];
  std::array<std::uint8_t, ws::header_size_max> header{};
  const std::size_t hl = ws::encode_header(header, ws::Opcode::text, true, payload.size(), nullptr);
  m.owned = new (std::nothrow) std::uint8_t[hl + payload.size()];
  if (m.owned) {
    std::memcpy(m.owned, header.data(), hl);
    std::memcpy(m.owned + hl, payload.data(), payload.size());
    m.data = m.owned;
    m.len = static_cast<std::uint32_t>(hl + payload.size());
    enqueue(slot, msg, true);
  }
  unref_msg(msg);  // the queue holds it now, or nobody does
}

// Appends `msg` to a connection's delivery queue: O(1), no copy.  A
// backpressured subscriber, or one that would overrun the worker's buffer
// budget, gets slow_consumer_policy instead.  False when not queued.
bool Worker::enqueue(std::uint32_t slot, std::uint32_t msg, bool is_answer) {
  Conn& k = conns_[slot];
  if (k.state != State::open || k.sub == nil) return false;
  if (k.session != nil && sessions_[k.session].read_closed()) return false;  // closing: nothing may follow
  SubState& q = subs_[k.sub];
  LocalMsg& m = msgs_[msg];
  const std::uint64_t cost = m.len + delivery_overhead_bytes;
  switch (outbound_.admit(q.book, cost, held_bytes())) {
    case Outbound::Verdict::queue: break;
    case Outbound::Verdict::close:
      // The close frame queues behind output the peer is not reading, so
      // close_timeout (the linger) bounds how long we wait for it to get out.
      close_with(slot, outbound_.slow_close_code(), "slow consumer");
      [[fallthrough]];
    case Outbound::Verdict::drop:
      if (!is_answer) counters_.delivery_drops_total.add();
      return false;
  }
  const std::uint32_t d = deliveries_.take();
  if (d == nil) {
    // Every queue entry sized at start-up is in use: a refusal like the
    // budget's, for this message only.
    counters_.deliveries_exhausted_total.add();
    if (!is_answer) counters_.delivery_drops_total.add();
    return false;
  }
  deliveries_[d] = Delivery{msg, nil};
  if (q.tail != nil) deliveries_[q.tail].next = d;
  else q.head = d;
  q.tail = d;
  ++q.count;
  q.bytes += cost;
  ++m.refs;
  if (!is_answer) counters_.deliveries_total.add();
  // A subscriber with output waiting is not idle: stall_timeout watches it
  // until the queue drains (a backpressured one is on backpressure_timeout).
  if (q.count == 1 && k.session == nil) note_progress(slot);
  account(slot);
  if (!(k.flags & f_send_in_flight)) pump_send(slot);
  return true;
}

std::span<const std::uint8_t> Worker::delivery_bytes(const SubState& q) const noexcept {
  const LocalMsg& m = msgs_[deliveries_[q.head].msg];
  return {m.data + q.offset, m.len - q.offset};
}

void Worker::delivery_sent(std::uint32_t slot, std::size_t bytes) {
  Conn& k = conns_[slot];
  if (k.sub == nil) return;
  SubState& q = subs_[k.sub];
  if (q.head == nil) return;
  q.offset += static_cast<std::uint32_t>(bytes);
  if (q.offset >= msgs_[deliveries_[q.head].msg].len) pop_delivery(q);
}

void Worker::pop_delivery(SubState& q) {
  const std::uint32_t d = q.head;
  const std::uint32_t msg = deliveries_[d].msg;
  q.head = deliveries_[d].next;
  if (q.head == nil) q.tail = nil;
  q.offset = 0;
  --q.count;
  q.bytes -= msgs_[msg].len + delivery_overhead_bytes;
  deliveries_.give(d);
  unref_msg(msg);
}

// Drops every queued delivery but the head when it is half sent (its rest
// must still go out, or the stream would be corrupt) or `keep_head` (a send
// of it is in flight).  The caller accounts.
void Worker::drop_deliveries(SubState& q, bool keep_head) {
  if (q.head == nil) return;
  const std::uint32_t keep = q.offset > 0 || keep_head ? q.head : nil;
  std::uint32_t d = keep != nil ? deliveries_[keep].next : q.head;
  while (d != nil) {
    const std::uint32_t next = deliveries_[d].next;
    const std::uint32_t msg = deliveries_[d].msg;
    --q.count;
    q.bytes -= msgs_[msg].len + delivery_overhead_bytes;
    deliveries_.give(d);
    unref_msg(msg);
    d = next;
  }
  q.head = q.tail = keep;
  if (keep != nil) deliveries_[keep].next = nil;
}

void Worker::release_subscriber(std::uint32_t slot) {
  Conn& k = conns_[slot];
  SubState& q = subs_[k.sub];
  // Released: no operation is in flight any more, so the head goes too.
  drop_deliveries(q, false);
  if (q.head != nil) pop_delivery(q);
  outbound_.forget(q.book, rel_now());  // the subscriber's account closes with it
  release_patterns(q.patterns);
  q = SubState{};
  index_.detach(k.sub);
  k.sub = nil;
  publish_index_gauges();
}

// A message with the creator's reference (dropped with unref_msg when it
// is done queuing), or nil, counted, when every one sized at start-up is in
// use.
std::uint32_t Worker::new_msg() {
  const std::uint32_t i = msgs_.take();
  if (i == nil) {
    counters_.deliveries_exhausted_total.add();
    return nil;
  }
  msgs_[i].refs = 1;
  return i;
}

void Worker::unref_msg(std::uint32_t msg) {
  LocalMsg& m = msgs_[msg];
  RG_ASSERT(m.refs > 0);
  if (--m.refs != 0) return;
  if (m.pub) m.pub->unref();
  delete[] m.owned;
  m = LocalMsg{};
  msgs_.give(msg);
}

// Takes what publishers posted, counts each one's recipients here at once
// (the publisher is waiting for that count), and queues it for fan-out.
void Worker::drain_mailbox() {
  // Cleared before popping: a publication pushed after this point either is
  // popped below or finds the flag clear and wakes us again.
  mailbox_->wake_pending.store(false);
  while (fanout_count_ < fanouts_.size()) {
    Publication* p = mailbox_->pop();
    if (!p) break;
    std::uint64_t recipients = 0;
    if (p->target == Publication::Target::channel) {
      const std::uint32_t c = index_.find_channel(p->name);
      if (c != nil) recipients = index_.channel_subscribers(c);
    } else {
      const std::uint32_t u = index_.find_user(p->name);
      if (u != nil) recipients = index_.user_connections(u);
    }
    p->counted(recipients);
    if (recipients == 0) {
      p->unref();
      continue;
    }
    fanouts_[(fanout_head_ + fanout_count_) % fanouts_.size()] = Fanout{p, nil, false};
    ++fanout_count_;
  }
  counters_.mailbox_depth.set(mailbox_->depth() + fanout_count_);
}

// Queues deliveries, oldest publication first, at most fanout_batch per loop
// turn: a publish to a million subscribers takes many turns, and the
// connections' I/O runs between them.
void Worker::run_fanout() {
  std::uint32_t budget = config_.fanout_batch;
  while (fanout_count_ > 0 && budget > 0) {
    Fanout& f = fanouts_[fanout_head_];
    if (!f.started) {
      f.msg = new_msg();
      if (f.msg == nil) break;  // messages all in use: this fan-out waits for the next turn
      f.started = true;
      LocalMsg& m = msgs_[f.msg];
      m.pub = f.pub;  // the worker's reference moves to the message
      m.data = f.pub->frame.data();
      m.len = static_cast<std::uint32_t>(f.pub->frame.size());
      if (f.pub->target == Publication::Target::user) {
        // A user's devices on this worker: a handful, done in one go.
        const std::uint32_t u = index_.find_user(f.pub->name);
        if (u != nil) {
          index_.for_each_of_user(u, [&](std::uint32_t sub) {
            enqueue(index_.slot_of(sub), f.msg, false);
            if (budget > 0) --budget;
          });
        }
        finish_fanout();
        continue;
      }
      const std::uint32_t c = index_.find_channel(f.pub->name);
      if (c == nil) {
        finish_fanout();
        continue;
      }
      index_.begin_walk(c);
    }
    for (; budget > 0; --budget) {
      const std::uint32_t sub = index_.next();
      if (sub == nil) break;
      enqueue(index_.slot_of(sub), f.msg, false);
    }
    if (budget == 0) break;  // more next turn
    index_.end_walk();
    finish_fanout();
  }
}

void Worker::finish_fanout() {
  Fanout& f = fanouts_[fanout_head_];
  const std::uint64_t now_ns = base::monotonic_ns();
  counters_.fanout_ms.record((now_ns - std::min(now_ns, f.pub->published_ns)) / 1'000'000);
  counters_.fanouts_total.add();
  unref_msg(f.msg);  // the walk's reference; queued deliveries hold theirs
  f = Fanout{};
  fanout_head_ = (fanout_head_ + 1) % fanouts_.size();
  --fanout_count_;
  counters_.mailbox_depth.set(mailbox_->depth() + fanout_count_);
}

// With eventfd wake-ups, a read stays armed on this worker's eventfd.
void Worker::arm_mailbox_read() {
  if (mailbox_read_armed_ || mailbox_->event_fd < 0 || draining_) return;
  // No SQE: the loop tries again next turn, and the tick wakes us meanwhile.
  if (ring_.read_fd(mailbox_->event_fd, eventfd_value_, {op_mailbox, 0, 1})) mailbox_read_armed_ = true;
}

std::uint32_t Worker::intern_patterns(const jwt::Claims& claims) {
  std::string key;
  for (std::size_t i = 0; i < claims.pattern_count(); ++i) {
    key += claims.pattern(i);
    key += ',';
  }
  const auto [it, inserted] = pattern_ids_.try_emplace(key, 0);
  if (inserted) {
    const std::uint32_t id = base::take_slot(pattern_sets_, free_pattern_sets_);
    PatternSet& set = pattern_sets_[id];
    set.key = key;
    for (std::size_t i = 0; i < claims.pattern_count(); ++i) set.patterns.emplace_back(claims.pattern(i));
    it->second = id;
  }
  ++pattern_sets_[it->second].refs;
  return it->second;
}

void Worker::release_patterns(std::uint32_t id) {
  if (id == nil) return;
  PatternSet& set = pattern_sets_[id];
  if (--set.refs != 0) return;
  pattern_ids_.erase(set.key);
  set = PatternSet{};
  free_pattern_sets_.push_back(id);
}

void Worker::publish_index_gauges() {
  counters_.subscribers.set(index_.subscribers());
  counters_.subscriptions.set(index_.subscriptions());
  counters_.channels.set(index_.channels());
  counters_.index_bytes.set(index_.memory_bytes() + std::uint64_t{index_.subscribers()} * sizeof(SubState) +
                            deliveries_.touched_bytes() + msgs_.touched_bytes());
}


}  // namespace rg::server
