package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key prefixes of the Redis model (see the package doc).
const (
	keyPrefix   = "media:fleet:"
	instanceKey = keyPrefix + "instance:"
	instanceSet = keyPrefix + "instances"
	roomKey     = keyPrefix + "room:"
	revokedKey  = keyPrefix + "revoked:"
)

// Redis client timeouts, unless the URL sets its own. A directory round
// trip takes a millisecond or two; a Redis that does not answer within
// these is down as far as a join is concerned, and a join waiting on
// retries would only turn a clear 503 into a slow one.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = time.Second
	redisMaxRetries  = 1
)

// RedisLog carries go-redis's own log lines (a dial that failed, a
// connection pool event) to a *slog.Logger at debug level: the Fleet logs
// what an operator needs (fleet_store_unreachable and its return) once
// per outage. go-redis's logger is process-wide, so only cmd sets it:
// redis.SetLogger(fleet.RedisLog{Log: log}).
type RedisLog struct{ Log *slog.Logger }

// Printf implements go-redis's logging interface.
func (l RedisLog) Printf(ctx context.Context, format string, v ...any) {
	l.Log.DebugContext(ctx, "redis_client", "msg_text", fmt.Sprintf(format, v...))
}

// The registry scripts keep instanceSet, the ids of the instances that
// registered, beside their keys, so listing the instances reads those keys
// and not the whole keyspace (a SCAN walks every room key too).
var (
	// registerScript: KEYS[1] instance key, KEYS[2] instanceSet; ARGV
	// entry, TTL in ms, id. Returns 1 if a live lease was there.
	registerScript = redis.NewScript(`
local old = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'GET')
redis.call('SADD', KEYS[2], ARGV[3])
if old then return 1 end
return 0`)
	// deregisterScript: KEYS[1] instance key, KEYS[2] instanceSet; ARGV id.
	deregisterScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
return redis.call('SREM', KEYS[2], ARGV[1])`)
	// instancesScript: KEYS[1] instanceSet; ARGV the instance key prefix.
	// Returns the id and entry of each live instance, one after the other,
	// and drops from the set the ids whose lease expired.
	instancesScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then
    out[#out + 1] = id
    out[#out + 1] = v
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out`)
)

// The room entry scripts: each compares the entry in force with the one the
// caller expects, byte for byte, and writes only on a match.
var (
	// claimScript: KEYS[1] room key; ARGV old entry ("" for none), new
	// entry, TTL in ms. Returns the entry in force afterwards ("" for none).
	claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false then cur = '' end
if cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ARGV[2]`)
	// renewScript: KEYS room keys; ARGV TTL in ms, then each key's
	// entry. Returns, for each key, 1 if renewed, else 0.
	renewScript = redis.NewScript(`
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = 0
  if redis.call('GET', key) == ARGV[i + 1] then
    out[i] = redis.call('PEXPIRE', key, ARGV[1])
  end
end
return out`)
	// releaseScript: KEYS[1] room key; ARGV entry. Returns 1 if deleted.
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

// RedisStore is a [Store] in Redis, shared by every instance of the fleet.
// Its model is in the package doc.
type RedisStore struct {
	c *redis.Client
}

// NewRedisStore returns a store on the Redis at rawURL (redis:// or
// rediss://). It does not connect: the first operation does, and an
// unreachable Redis is an error of that operation.
func NewRedisStore(_ context.Context, rawURL string) (*RedisStore, error) {
	if err := checkRedisURL(rawURL); err != nil {
		return nil, fmt.Errorf("fleet: redis url: %w", err)
	}
	opt, _ := redis.ParseURL(rawURL) // checked above
	if opt.DialTimeout == 0 {
		opt.DialTimeout = redisDialTimeout
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = redisIOTimeout
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = redisIOTimeout
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = redisMaxRetries
	}
	if opt.DialerRetries == 0 {
		opt.DialerRetries = redisMaxRetries
	}
	opt.DisableIdentity = true // no CLIENT SETINFO: servers before 7.2 refuse it
	return &RedisStore{c: redis.NewClient(opt)}, nil
}

// checkRedisURL accepts what redis.ParseURL accepts with a redis or rediss
// scheme. Its errors never echo the URL, which may hold a password.
func checkRedisURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("scheme %q: want redis or rediss", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	if _, err := redis.ParseURL(s); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "redis: "))
	}
	return nil
}

// Register implements [Store]: the write and "was a lease there" are one
// step (SET with GET).
func (s *RedisStore) Register(ctx context.Context, inst Instance, ttl time.Duration) (bool, error) {
	b, err := json.Marshal(inst)
	if err != nil {
		return false, err
	}
	n, err := registerScript.Run(ctx, s.c, []string{instanceKey + inst.ID, instanceSet}, b, ttl.Milliseconds(), inst.ID).Int()
	return n == 1, err
}

// Deregister implements [Store].
func (s *RedisStore) Deregister(ctx context.Context, id string) error {
	return deregisterScript.Run(ctx, s.c, []string{instanceKey + id, instanceSet}, id).Err()
}

// Instance implements [Store].
func (s *RedisStore) Instance(ctx context.Context, id string) (Instance, bool, error) {
	v, err := s.c.Get(ctx, instanceKey+id).Result()
	if errors.Is(err, redis.Nil) {
		return Instance{}, false, nil
	}
	if err != nil {
		return Instance{}, false, err
	}
	in, ok := decodeInstance(v)
	return in, ok && in.ID == id, nil
}

// Instances implements [Store]: one script reads the entries of the ids
// in instanceSet. An entry an instance did not write (see decodeInstance),
// or one under another id's key, is left out.
func (s *RedisStore) Instances(ctx context.Context) ([]Instance, error) {
	vals, err := instancesScript.Run(ctx, s.c, []string{instanceSet}, instanceKey).StringSlice()
	if err != nil {
		return nil, err
	}
	out := make([]Instance, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		if in, ok := decodeInstance(vals[i+1]); ok && in.ID == vals[i] {
			out = append(out, in)
		}
	}
	return out, nil
}

// decodeInstance parses an instance key's value. One that does not parse,
// or names no id or URL, was not written by an instance: it counts as no
// instance, so no room is placed on it or followed to it.
func decodeInstance(v string) (Instance, bool) {
	var in Instance
	if err := json.Unmarshal([]byte(v), &in); err != nil || in.ID == "" || in.URL == "" {
		return Instance{}, false
	}
	return in, true
}

// Lookup implements [Store].
func (s *RedisStore) Lookup(ctx context.Context, room string) (Claim, bool, error) {
	v, err := s.c.Get(ctx, roomKey+room).Result()
	if errors.Is(err, redis.Nil) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, err
	}
	return decodeClaim(v), true, nil
}

// Claim implements [Store].
func (s *RedisStore) Claim(ctx context.Context, room string, old, c Claim, ttl time.Duration) (Claim, error) {
	v, err := claimScript.Run(ctx, s.c, []string{roomKey + room}, old.encode(), c.encode(), ttl.Milliseconds()).Text()
	if err != nil || v == "" {
		return Claim{}, err
	}
	return decodeClaim(v), nil
}

// renewBatch bounds the rooms one renewal script call takes: a script
// blocks the Redis server while it runs, so a large instance's renewal is
// a few short scripts rather than one long one.
const renewBatch = 256

// Renew implements [Store]: a script renews up to renewBatch rooms per
// round trip.
func (s *RedisStore) Renew(ctx context.Context, claims map[string]Claim, ttl time.Duration) ([]string, error) {
	rooms := slices.Sorted(maps.Keys(claims))
	var stale []string
	for batch := range slices.Chunk(rooms, renewBatch) {
		keys := make([]string, len(batch))
		args := []any{ttl.Milliseconds()}
		for i, room := range batch {
			keys[i] = roomKey + room
			args = append(args, claims[room].encode())
		}
		renewed, err := renewScript.Run(ctx, s.c, keys, args...).Int64Slice()
		if err != nil {
			return nil, err
		}
		for i, room := range batch {
			if i >= len(renewed) || renewed[i] != 1 {
				stale = append(stale, room)
			}
		}
	}
	return stale, nil
}

// Release implements [Store].
func (s *RedisStore) Release(ctx context.Context, room string, c Claim) (bool, error) {
	n, err := releaseScript.Run(ctx, s.c, []string{roomKey + room}, c.encode()).Int()
	return n == 1, err
}

// Close implements [Store].
func (s *RedisStore) Close() error { return s.c.Close() }

// scanCount is the COUNT hint of each SCAN step of Rooms, and the keys of
// one MGET: a step is a short command however large the keyspace.
const scanCount = 500

// Rooms implements [Store]: SCAN walks the room keys (the keyspace holds
// little else: the instances' keys and their set), then MGET reads them
// a batch at a time. An entry that expired between the two is left out.
func (s *RedisStore) Rooms(ctx context.Context, limit int) (map[string]Claim, error) {
	var keys []string
	seen := make(map[string]bool)
	iter := s.c.Scan(ctx, 0, roomKey+"*", scanCount).Iterator()
	for len(keys) < limit && iter.Next(ctx) {
		if k := iter.Val(); !seen[k] { // SCAN may return a key twice
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]Claim, len(keys))
	for batch := range slices.Chunk(keys, scanCount) {
		vals, err := s.c.MGet(ctx, batch...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			if str, ok := v.(string); ok {
				out[strings.TrimPrefix(batch[i], roomKey)] = decodeClaim(str)
			}
		}
	}
	return out, nil
}

// Revoke implements [Store]: one key per revoked token, expiring with it
// (PXAT), so Redis forgets each on its own.
func (s *RedisStore) Revoke(ctx context.Context, key string, until time.Time) error {
	if !time.Now().Before(until) {
		return nil
	}
	return s.c.SetArgs(ctx, revokedKey+key, "1", redis.SetArgs{ExpireAt: until}).Err()
}

// Revoked implements [Store].
func (s *RedisStore) Revoked(ctx context.Context, key string) (bool, error) {
	n, err := s.c.Exists(ctx, revokedKey+key).Result()
	return n == 1, err
}
