package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key prefixes of the Redis model (see the package doc).
const (
	keyPrefix   = "media:fleet:"
	instanceKey = keyPrefix + "instance:"
	roomKey     = keyPrefix + "room:"
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
	// renewScript: KEYS[1] room key; ARGV entry, TTL in ms. Returns 1 if
	// renewed.
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
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

// Register implements [Store]: one SET with PX and GET, so the write and
// "was a lease there" are one step.
func (s *RedisStore) Register(ctx context.Context, inst Instance, ttl time.Duration) (bool, error) {
	b, err := json.Marshal(inst)
	if err != nil {
		return false, err
	}
	err = s.c.Do(ctx, "SET", instanceKey+inst.ID, b, "PX", ttl.Milliseconds(), "GET").Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return err == nil, err
}

// Deregister implements [Store].
func (s *RedisStore) Deregister(ctx context.Context, id string) error {
	return s.c.Del(ctx, instanceKey+id).Err()
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
	in, err := decodeInstance(v)
	return in, err == nil, err
}

// Instances implements [Store]: a SCAN of the instance keys, then their
// values in one MGET (a key that expired in between is left out).
func (s *RedisStore) Instances(ctx context.Context) ([]Instance, error) {
	var keys []string
	it := s.c.Scan(ctx, 0, instanceKey+"*", 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := s.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Instance, 0, len(vals))
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		in, err := decodeInstance(str)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// decodeInstance parses an instance key's value.
func decodeInstance(v string) (Instance, error) {
	var in Instance
	if err := json.Unmarshal([]byte(v), &in); err != nil {
		return Instance{}, fmt.Errorf("instance entry: %w", err)
	}
	return in, nil
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
	c, err := decodeClaim(v)
	if err != nil {
		return Claim{}, false, fmt.Errorf("room entry: %w", err)
	}
	return c, true, nil
}

// Claim implements [Store].
func (s *RedisStore) Claim(ctx context.Context, room string, old, c Claim, ttl time.Duration) (Claim, error) {
	v, err := claimScript.Run(ctx, s.c, []string{roomKey + room}, old.encode(), c.encode(), ttl.Milliseconds()).Text()
	if err != nil || v == "" {
		return Claim{}, err
	}
	cur, err := decodeClaim(v)
	if err != nil {
		return Claim{}, fmt.Errorf("room entry: %w", err)
	}
	return cur, nil
}

// Renew implements [Store].
func (s *RedisStore) Renew(ctx context.Context, room string, c Claim, ttl time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, s.c, []string{roomKey + room}, c.encode(), ttl.Milliseconds()).Int()
	return n == 1, err
}

// Release implements [Store].
func (s *RedisStore) Release(ctx context.Context, room string, c Claim) (bool, error) {
	n, err := releaseScript.Run(ctx, s.c, []string{roomKey + room}, c.encode()).Int()
	return n == 1, err
}

// Close implements [Store].
func (s *RedisStore) Close() error { return s.c.Close() }
