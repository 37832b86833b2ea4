// The admin listener's slot rules (control/admin_clients.h).
#include "control/admin_clients.h"

namespace rg::server {

Admission admit(const std::vector<AdminClient>& clients, const PeerAddress& peer, const AdminLimits& limits) noexcept {
  // At most clients_max (256) records: a scan is cheaper than keeping a
  // per-address map in step with every close.
  if (limits.per_ip_max != 0) {
    std::uint32_t same = 0;
    for (const AdminClient& c : clients) same += c.peer == peer;
    if (same >= limits.per_ip_max) return {Admission::Kind::per_ip};
  }
  if (clients.size() < limits.clients_max) return {Admission::Kind::admit};
  std::size_t victim = clients.size();
  for (std::size_t i = 0; i < clients.size(); ++i) {
    if (committed(clients[i].phase)) continue;
    if (victim == clients.size() || clients[i].since_ms < clients[victim].since_ms) victim = i;
  }
  if (victim == clients.size()) return {Admission::Kind::full};
  return {Admission::Kind::evict, victim};
}

bool general_slot_free(const std::vector<AdminClient>& clients, const AdminLimits& limits) noexcept {
  std::uint32_t general = 0;
  for (const AdminClient& c : clients) general += committed(c.phase) && !c.health;
  return general + limits.health_reserve < limits.clients_max;
}

}  // namespace rg::server
