package main

import (
	"context"
	be "encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/redistest"
)

// The fleet tests run three instances of the built binary on one real
// Redis and Go participants that publish audio. Each packet's payload
// names its sender, so a receiver tells whose media it gets whatever
// session, instance or participant id it came through.

// fleetRooms and fleetPerRoom size the fleet tests: 6 rooms of 5 is the
// issue's 30 participants. Each participant publishes 50 packets a
// second and receives its room's others: on a shared, loaded 2-core
// machine running three race-built instances this is the most that stays
// reliable.
const (
	fleetRooms   = 6
	fleetPerRoom = 5
)

// fleetNode is one instance of the fleet under test.
type fleetNode struct {
	*service
	name string
	rtc  string // ws://127.0.0.1:port/v1/rtc, as its MEDIA_PUBLIC_URL gives it
}

// startNode runs an instance in the fleet on redisURL. Its port is chosen
// first, since its MEDIA_PUBLIC_URL must name it.
func startNode(t *testing.T, name, redisURL string, env ...string) *fleetNode {
	t.Helper()
	port := freePort(t)
	base := []string{"PORT=" + strconv.Itoa(port), "MEDIA_REDIS_URL=" + redisURL,
		"MEDIA_PUBLIC_URL=http://127.0.0.1:" + strconv.Itoa(port),
		"MEDIA_ICE_BIND_ADDR=127.0.0.1", "MEDIA_TURN_ENABLED=false", "MEDIA_DRAIN_TIMEOUT=20s"}
	s := startService(t, append(base, env...)...)
	return &fleetNode{service: s, name: name, rtc: fmt.Sprintf("ws://127.0.0.1:%d/v1/rtc", port)}
}

func startFleet(t *testing.T, redisURL string, n int, env ...string) []*fleetNode {
	t.Helper()
	nodes := make([]*fleetNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, fmt.Sprintf("node%d", i), redisURL, env...)
	}
	return nodes
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// member is one participant of a fleet test: its current client, the
// audio it publishes through every client it has, and the arrival times
// of every other member's packets, by sender.
type member struct {
	t        *testing.T
	index    uint16
	room     string
	identity string
	token    string
	api      *webrtc.API
	follows  sync.WaitGroup // moves under way

	mu      sync.Mutex // guards the fields below
	done    bool       // the test is over: follow no more
	moves   int        // moves completed
	moveErr error      // the last move's failure
	c       *client.Client
	tracks  []*webrtc.TrackLocalStaticRTP // written to every tick: the old and the new client's while moving
	arrived map[uint16][]time.Time        // sender index -> arrival of each packet
	clients []*client.Client              // every client it had, closed at the end
}

func newMember(t *testing.T, api *webrtc.API, index int, room string) *member {
	t.Helper()
	m := &member{t: t, index: uint16(index), room: room, identity: fmt.Sprintf("p%d", index), api: api,
		arrived: make(map[uint16][]time.Time)}
	tok, err := auth.DevKeyPair().Mint(auth.Token{Room: room, Identity: m.identity,
		Grants: auth.Grants{Publish: true, Subscribe: true}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m.token = tok
	t.Cleanup(m.close)
	return m
}

// options are the options of one of the member's clients: the first
// `draining` that names where the room went is followed at once, as the
// browser client does.
func (m *member) options() client.Options {
	followed := false // by this client; guarded by m.mu
	return client.Options{API: m.api, OnTrack: m.read, OnEvent: func(msg *signal.Message) {
		if msg.Type != signal.TypeDraining || msg.URL == "" {
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.done && !followed {
			followed = true
			m.follows.Go(func() { m.follow(msg.URL) })
		}
	}}
}

// join dials rtc (any instance: redirects are followed) and publishes.
func (m *member) join(ctx context.Context, rtc string) error {
	c, err := client.Dial(ctx, rtc, m.token, m.options())
	if err != nil {
		return err
	}
	if err := m.publish(ctx, c); err != nil {
		c.Close()
		return err
	}
	m.mu.Lock()
	m.c = c
	m.mu.Unlock()
	return nil
}

// publish adds an audio track to c that the member's sender writes to.
func (m *member) publish(ctx context.Context, c *client.Client) error {
	track, err := client.NewAudioTrack("audio")
	if err != nil {
		return err
	}
	if _, err := c.Publish(ctx, track); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tracks = append(m.tracks, track)
	m.clients = append(m.clients, c)
	return nil
}

// send writes one packet naming the member to every track it has, every
// 20 ms, until ctx ends.
func (m *member) send(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111}, Payload: make([]byte, 80)}
	be.BigEndian.PutUint16(pkt.Payload, m.index)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pkt.SequenceNumber++
		pkt.Timestamp += 960
		m.mu.Lock()
		tracks := slices.Clone(m.tracks)
		m.mu.Unlock()
		for _, tr := range tracks {
			_ = tr.WriteRTP(pkt)
		}
	}
}

// read records the arrival of each packet of a forwarded track by its
// sender; it runs on Pion's goroutine for the track until it ends.
func (m *member) read(rt *client.RemoteTrack) {
	for {
		p, _, err := rt.Track.ReadRTP()
		if err != nil {
			return
		}
		if len(p.Payload) < 2 {
			continue
		}
		from := be.BigEndian.Uint16(p.Payload)
		now := time.Now()
		m.mu.Lock()
		m.arrived[from] = append(m.arrived[from], now)
		m.mu.Unlock()
	}
}

// current is the member's client now.
func (m *member) current() *client.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c
}

// follow moves the member to url, make before break, as a draining
// instance asks: the new client joins and publishes, then the old leaves.
func (m *member) follow(url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next, err := m.current().Move(ctx, url, m.token, m.options(), m.publish)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.moveErr = fmt.Errorf("%s: %w", m.identity, err)
		return
	}
	m.c = next
	m.moves++
	m.tracks = m.tracks[len(m.tracks)-1:] // the old client's track is gone with it
}

// moved reports how many moves the member completed, and the last
// failure.
func (m *member) moved() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.moves, m.moveErr
}

// receivedSince reports how many packets from sender arrived after since.
func (m *member) receivedSince(sender uint16, since time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	times := m.arrived[sender]
	i, _ := slices.BinarySearchFunc(times, since, func(a, b time.Time) int { return a.Compare(b) })
	return len(times) - i
}

// maxGap is the longest time without a packet from sender between since
// and until, both ends included as bounds.
func (m *member) maxGap(sender uint16, since, until time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, gap := since, time.Duration(0)
	for _, at := range m.arrived[sender] {
		if at.Before(since) || at.After(until) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, until.Sub(prev))
}

func (m *member) close() {
	m.mu.Lock()
	m.done = true
	m.mu.Unlock()
	m.follows.Wait()
	m.mu.Lock()
	clients := slices.Clone(m.clients)
	m.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
}

// fleetRun is the participants of a fleet test, in rooms of fleetPerRoom.
type fleetRun struct {
	t       *testing.T
	members []*member
	stop    context.CancelFunc
	senders sync.WaitGroup
}

// joinRooms joins rooms*perRoom members, each through a random instance of
// nodes, and starts their senders. A room's members join at once, so
// instances race to place each room: the directory must give it one
// owner every time.
func joinRooms(t *testing.T, nodes []*fleetNode, rooms, perRoom int) *fleetRun {
	t.Helper()
	api, err := client.NewAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := &fleetRun{t: t}
	sendCtx, stop := context.WithCancel(context.Background())
	run.stop = stop
	t.Cleanup(run.close)
	for i := range rooms * perRoom {
		run.members = append(run.members, newMember(t, api, i, fmt.Sprintf("room%d", i/perRoom)))
	}
	errs := make([]error, len(run.members))
	sem := make(chan struct{}, perRoom)
	var wg sync.WaitGroup
	for i, m := range run.members {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = m.join(ctx, nodes[rand.IntN(len(nodes))].rtc)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("joins: %v", err)
	}
	for _, m := range run.members {
		run.senders.Go(func() { m.send(sendCtx) })
	}
	return run
}

func (r *fleetRun) close() {
	r.stop()
	r.senders.Wait()
}

// roomOf returns the members of m's room, m included.
func (r *fleetRun) roomOf(room string) []*member {
	var out []*member
	for _, m := range r.members {
		if m.room == room {
			out = append(out, m)
		}
	}
	return out
}

// checkOneInstancePerRoom checks that every room's members are joined at
// one instance, and returns the instance of each room.
func (r *fleetRun) checkOneInstancePerRoom() map[string]string {
	r.t.Helper()
	at := map[string]string{}
	for _, m := range r.members {
		u := m.current().URL()
		if prev, ok := at[m.room]; ok && prev != u {
			r.t.Errorf("room %s is split: %s at %s, another member at %s", m.room, m.identity, u, prev)
		}
		at[m.room] = u
	}
	return at
}

// waitMedia waits until every member has received at least 25 packets
// (half a second of audio) from every other member of its room since
// since.
func (r *fleetRun) waitMedia(since time.Time, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		missing := r.missingMedia(since)
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("after %s, %d receivers lack media, e.g. %v", within, len(missing), missing[:min(5, len(missing))])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *fleetRun) missingMedia(since time.Time) []string {
	var missing []string
	for _, m := range r.members {
		for _, o := range r.roomOf(m.room) {
			if o != m && m.receivedSince(o.index, since) < 25 {
				missing = append(missing, m.identity+"<-"+o.identity)
			}
		}
	}
	return missing
}

// TestFleetRoomsOnOneInstance: participants of several rooms join through
// random instances; each room ends on one instance and every participant
// receives every other's media in its room.
func TestFleetRoomsOnOneInstance(t *testing.T) {
	rd := redistest.Start(t)
	nodes := startFleet(t, rd.URL(), 3)
	run := joinRooms(t, nodes, fleetRooms, fleetPerRoom)
	run.waitMedia(time.Now(), 45*time.Second)
	at := run.checkOneInstancePerRoom()
	redirects := 0
	for _, m := range run.members {
		redirects += m.current().Redirects()
	}
	var routed, rooms float64
	for _, n := range nodes {
		routed += metricSum(t, n.service, "media_joins_routed_total")
		rooms += metricSum(t, n.service, "media_rooms_active")
	}
	if rooms != fleetRooms { // a split room counts once on each instance
		t.Errorf("media_rooms_active summed over the instances = %v; want %d", rooms, fleetRooms)
	}
	if int(routed) != redirects {
		t.Errorf("media_joins_routed_total summed = %v; want the %d redirects the clients followed", routed, redirects)
	}
	t.Logf("rooms at %v; %d of %d joins redirected", at, redirects, len(run.members))
}

// TestFleetDrainMovesRoomsWhole: SIGTERM to the instance holding the most
// rooms. Every one of its rooms moves whole to one survivor, its
// participants following the `draining` message's url make before break,
// and media resumes at every participant. The largest gap a moved
// participant sees is logged.
func TestFleetDrainMovesRoomsWhole(t *testing.T) {
	rd := redistest.Start(t)
	nodes := startFleet(t, rd.URL(), 3)
	run := joinRooms(t, nodes, fleetRooms, fleetPerRoom)
	run.waitMedia(time.Now(), 45*time.Second)
	at := run.checkOneInstancePerRoom()
	victim := busiest(nodes, at)
	var movers []*member
	for _, m := range run.members {
		if at[m.room] == victim.rtc {
			movers = append(movers, m)
		}
	}
	t.Logf("draining %s, which holds %d participants", victim.name, len(movers))

	sent := time.Now()
	victim.Signal(t, syscall.SIGTERM)
	waitMoved(t, movers, 45*time.Second)
	moved := time.Now()
	run.waitMedia(moved, 30*time.Second)
	after := run.checkOneInstancePerRoom()
	for room, u := range after {
		if at[room] == victim.rtc && u == victim.rtc {
			t.Errorf("room %s is still at the drained instance", room)
		}
		if at[room] != victim.rtc && u != at[room] {
			t.Errorf("room %s moved from %s to %s; only the drained instance's rooms should", room, at[room], u)
		}
	}
	if code := victim.WaitExit(t, 30*time.Second); code != 0 {
		t.Errorf("drained instance exit code = %d; want 0", code)
	}
	if ev, ok := victim.Find("rooms_moved"); !ok || ev["moved"] == 0.0 || ev["failed"] != 0.0 || ev["no_sibling"] != 0.0 {
		t.Errorf("rooms_moved = %v; want every room moved", ev)
	}
	var worst time.Duration
	for _, m := range movers {
		for _, o := range run.roomOf(m.room) {
			if o != m {
				worst = max(worst, m.maxGap(o.index, sent, moved.Add(2*time.Second)))
			}
		}
	}
	t.Logf("largest media gap a moved participant saw: %s (the moves took %s)", worst, moved.Sub(sent).Round(time.Millisecond))
	// Only a bound that catches a room that never resumed: the gap is
	// about a second on this loaded machine, several when it is starved.
	if worst > 15*time.Second {
		t.Errorf("largest media gap = %s; want well under 15s", worst)
	}
}

// waitMoved waits until every member of movers has moved once.
func waitMoved(t *testing.T, movers []*member, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, m := range movers {
		for {
			n, err := m.moved()
			if err != nil {
				t.Fatalf("move: %v", err)
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has not moved %s after the signal", m.identity, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// busiest is the node that holds the most rooms.
func busiest(nodes []*fleetNode, at map[string]string) *fleetNode {
	count := map[string]int{}
	for _, u := range at {
		count[u]++
	}
	return slices.MaxFunc(nodes, func(a, b *fleetNode) int { return count[a.rtc] - count[b.rtc] })
}

// TestFleetKilledInstance: SIGKILL of an instance. Once its lease has
// expired, its participants' reconnects (each through a random survivor)
// land together, each room on one survivor, and media flows again.
func TestFleetKilledInstance(t *testing.T) {
	rd := redistest.Start(t)
	nodes := startFleet(t, rd.URL(), 3, "MEDIA_FLEET_LEASE_TTL=2s")
	run := joinRooms(t, nodes, fleetRooms, fleetPerRoom)
	run.waitMedia(time.Now(), 45*time.Second)
	at := run.checkOneInstancePerRoom()
	victim := busiest(nodes, at)
	var survivors []*fleetNode
	for _, n := range nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	victim.Signal(t, syscall.SIGKILL)
	victim.WaitExit(t, 10*time.Second)
	killed := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	errs := make([]error, len(run.members))
	var wg sync.WaitGroup
	for i, m := range run.members {
		if at[m.room] != victim.rtc {
			continue
		}
		wg.Go(func() { errs[i] = m.rejoin(ctx, survivors) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("reconnects: %v", err)
	}
	rejoined := time.Since(killed)
	run.waitMedia(time.Now(), 30*time.Second)
	for room, u := range run.checkOneInstancePerRoom() {
		if u == victim.rtc {
			t.Errorf("room %s is still placed at the killed instance", room)
		}
	}
	t.Logf("the killed instance's participants rejoined within %s (lease TTL 2s); media flows %s after the kill",
		rejoined.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
}

// rejoin reconnects a member whose instance died, as a client does:
// through a random instance, again while the room's claim still names
// the dead one (its redirect leads nowhere).
func (m *member) rejoin(ctx context.Context, through []*fleetNode) error {
	old := m.current()
	m.mu.Lock()
	m.tracks = nil
	m.mu.Unlock()
	old.Close()
	if err := joinRetrying(ctx, m, through); err != nil {
		return fmt.Errorf("%s: rejoin: %w", m.identity, err)
	}
	return nil
}

// TestFleetRedisOutage: with Redis stopped, the placed rooms keep their
// media; a new room's join gets 503 directory_unavailable with
// Retry-After. Once Redis is back the instances register again and a new
// room is placed.
func TestFleetRedisOutage(t *testing.T) {
	rd := redistest.Start(t)
	nodes := startFleet(t, rd.URL(), 3, "MEDIA_FLEET_LEASE_TTL=3s")
	run := joinRooms(t, nodes, 3, 2)
	run.waitMedia(time.Now(), 45*time.Second)
	before := run.checkOneInstancePerRoom()

	rd.Stop()
	stopped := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, err := client.NewAPI(client.LoopbackOnly)
	if err != nil {
		t.Fatal(err)
	}
	fresh := newMember(t, api, 100, "new-room")
	err = fresh.join(ctx, nodes[0].rtc)
	var de *client.DialError
	if !errors.As(err, &de) || de.Status != http.StatusServiceUnavailable || de.Code != "directory_unavailable" || de.RetryAfter <= 0 {
		t.Fatalf("join of a new room with Redis down = %v; want 503 directory_unavailable with Retry-After", err)
	}
	// Longer than a lease without Redis, the placed rooms still carry media.
	run.waitMedia(stopped.Add(4*time.Second), 30*time.Second)
	if after := run.checkOneInstancePerRoom(); !maps.Equal(before, after) {
		t.Errorf("rooms during the outage at %v; want them where they were, %v", after, before)
	}

	rd.Restart()
	if err := joinRetrying(ctx, fresh, nodes); err != nil {
		t.Fatalf("join of a new room after Redis came back: %v", err)
	}
	// The instances claimed their rooms again: a newcomer to a placed room
	// joining through another instance is sent to the room's instance.
	late := newMember(t, api, 101, "room0")
	var elsewhere []*fleetNode
	for _, n := range nodes {
		if n.rtc != before["room0"] {
			elsewhere = append(elsewhere, n)
		}
	}
	if err := joinRetrying(ctx, late, elsewhere); err != nil {
		t.Fatalf("join of room0 after Redis came back: %v", err)
	}
	// The newcomer may win the race against the holder's re-claim: then
	// the holder hands its participants over (the directory reports the
	// room lost there). Either way room0 ends whole.
	room0 := append(run.roomOf("room0"), late)
	deadline := time.Now().Add(30 * time.Second)
	for {
		urls := map[string]bool{}
		for _, m := range room0 {
			urls[m.current().URL()] = true
		}
		if len(urls) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("room0 split across %v 30s after Redis came back", urls)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("room0 at %s after the outage (%s before)", late.current().URL(), before["room0"])
}

// joinRetrying joins m through random instances of nodes until one
// admits it or ctx ends, as a client retries a 503.
func joinRetrying(ctx context.Context, m *member, nodes []*fleetNode) error {
	for {
		err := m.join(ctx, nodes[rand.IntN(len(nodes))].rtc)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
