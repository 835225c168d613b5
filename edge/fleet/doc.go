// Package fleet is this instance's view of a fleet of media-service
// instances: a registry of the live instances and a directory that places
// each room on exactly one of them. edge asks one question of it, "where is
// room R" ([Fleet.Place]), and tells it which rooms it serves ([Fleet.Hold],
// [Fleet.Release]) and when it drains ([Fleet.SetDraining],
// [Fleet.PickSibling], [Fleet.Move]).
//
// # Store
//
// The fleet's state lives in a [Store]: a small set of primitives with two
// implementations run by one set of contract tests. [NewMemoryStore] keeps
// it in the process: the default without MEDIA_REDIS_URL, where the
// instance runs alone exactly as it did before fleets. [NewRedisStore]
// keeps it in Redis (any Redis 6.2+ or Valkey server; Redis Cluster is not
// supported), where every instance of the fleet reads and writes it.
//
// The Redis model, every key under the prefix "media:fleet:":
//
//   - instance:<id> is one registered instance: its [Instance] as JSON,
//     written with a TTL (the lease, MEDIA_FLEET_LEASE_TTL, 10 s by
//     default) and rewritten every third of it with the instance's current
//     load and state. A key that expired is an instance gone (crashed,
//     partitioned, or stopped without deregistering).
//   - instances is the set of the registered ids, so listing the
//     instances reads their keys and not the whole keyspace; an id whose
//     key expired is dropped from it by the next listing.
//   - room:<room> is the room's directory entry: a [Claim] as JSON (the
//     owner's id and URL, and a fencing token unique to that claim),
//     written with the same TTL and renewed by the owner while it holds the
//     room.
//   - revoked:<key> is a token the server API removed a participant with
//     ([Fleet.Revoke]; the key is a hash edge chooses), expiring when the
//     token does, so every instance refuses it ([Fleet.Revoked]).
//
// The server API's fleet-wide room list ([Fleet.Rooms]) walks the room
// keys with SCAN (500 a step, at most [MaxListed] rooms) and reads them
// with MGET: an operator's request, not a join's path.
//
// Every write of a room entry is a Lua script that compares the entry in
// force with the one the writer expects, byte for byte, and writes only if
// they match: a claim (only if there is no entry, or to replace a stale
// entry the writer read), a release and a move (a claim that replaces the
// mover's own). The renewal script takes every room the instance holds
// (256 a call), so a renewal pass costs a round trip or a few, however
// many rooms. The token makes every claim's value unique, so an owner that
// lost its claim (its lease lapsed and the room was placed again) can never
// renew, release or move the newer owner's entry, even if the newer owner
// is the same instance after a restart. Entries no instance wrote (not a
// claim's exact encoding, or an instance entry that does not parse or sits
// under another id) are never followed: a room's is replaced by a
// placement, an instance's counts as no instance.
//
// # Placement
//
// A room's entry is followed only if its owner is registered now (a live
// lease), under the same URL as the entry names, and serving (not
// draining); an owner at its bounds keeps its rooms. Any other entry (an
// owner gone, a forged or stale entry, a draining owner that did not move
// the room) is replaced atomically by a new placement: the least-loaded
// serving instance that is not at its bounds, in the client's region
// first, then in any region, this instance winning ties. An instance's
// load is what it last registered, plus the rooms this instance placed on
// it since (within a renewal interval), so a burst of new rooms spreads
// instead of all going to the instance least loaded when it began. When
// several instances place one room at once, one claim wins and every
// caller gets its owner.
//
// # Outages
//
// When the store cannot be reached, rooms this instance holds go on being
// served here (Place answers this instance for them) and every other room
// gets [ErrUnavailable]: serving a room without the directory could split
// it. Run keeps trying; when the store answers again the instance
// registers again and claims again each room it holds. A room that another
// instance claimed meanwhile is reported on [Fleet.Lost], so edge can move
// its participants there.
//
// # Metrics
//
// Created from the injected meter; in Prometheus:
//
//   - media_fleet_rooms_owned: rooms this instance holds now.
//   - media_fleet_joins_placed_total{where}: Place answers, where="here" or
//     "elsewhere".
//   - media_fleet_claim_conflicts_total: placements whose claim lost to
//     another caller's.
//   - media_fleet_rooms_lost_total: held rooms found claimed by another
//     instance (after an outage or a lapse).
//   - media_fleet_store_errors_total{op}: store operations that failed, by
//     operation.
//   - media_fleet_store_duration_seconds{op}: store round trips, by
//     operation.
//   - media_fleet_store_up: 1 when the last lease renewal reached the
//     store, else 0.
//   - media_fleet_lease_renew_failures_total: lease renewals that failed.
//   - media_fleet_lease_lapses_total: renewals that found this instance's
//     lease already expired (it renewed too late, or the store lost it).
package fleet
