package sfu

import (
	"sync"
	"time"
)

// dynacastHold is how long a fall in the layers a publication needs must
// stay still before the publisher hears of it: a viewer flicking through
// qualities, or a subscriber leaving and another arriving, costs one
// message and no needless stop and restart of an encoding. A rise is told
// at once.
const dynacastHold = 300 * time.Millisecond

// dynacast tracks the layers a simulcast publication's subscribers need
// (every layer up to the highest cap among unpaused subscriptions) and
// tells its owner through the callback set with OnNeededLayers.
//
// mu guards every field and is held while the callback runs, so the
// owner sees the changes one at a time and in order.
type dynacast struct {
	mu     sync.Mutex
	notify func(needed int) // nil until OnNeededLayers
	told   int              // layers last told; -1 before the first
	paused int              // layers the last telling left out, in media_paused_layers
	timer  *time.Timer      // pending fall, or nil
	closed bool
}

// OnNeededLayers sets f to be told how many layers of this simulcast
// publication its subscribers need (0 to 3: layers 0 to needed-1; 0 when
// nobody receives it or every subscriber paused it) whenever that
// changes: a rise at once, a fall after dynacastHold without change. f is
// told the current need at once, runs on whichever goroutine made the
// change (or a timer's; that goroutine may hold its owner's locks), one
// call at a time, and must return quickly and not call back into the
// publication's subscriptions. It is never called for a publication
// without simulcast.
func (p *Publication) OnNeededLayers(f func(needed int)) {
	if !p.simulcast {
		return
	}
	d := &p.dyn
	d.mu.Lock()
	d.notify = f
	d.told = -1
	d.mu.Unlock()
	p.needChanged()
}

// NeededLayers is how many layers the subscribers need now (see
// OnNeededLayers), without the debounce.
func (p *Publication) NeededLayers() int {
	need := 0
	for _, s := range *p.subs.Load() {
		need = max(need, s.MaxLayer()+1)
	}
	return need
}

// needChanged is called after anything that may change the need: a
// subscription's settings, a subscription added or removed.
func (p *Publication) needChanged() {
	if !p.simulcast {
		return
	}
	d := &p.dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.notify == nil || d.closed {
		return
	}
	need := p.NeededLayers()
	switch {
	case need > d.told:
		d.stopTimer()
		p.tell(need)
	case need == d.told:
		d.stopTimer()
	default:
		d.stopTimer()
		d.timer = time.AfterFunc(dynacastHold, p.fallSettled)
	}
}

// fallSettled tells a fall that stayed still for dynacastHold.
func (p *Publication) fallSettled() {
	d := &p.dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	d.timer = nil
	if d.closed || d.notify == nil {
		return
	}
	if need := p.NeededLayers(); need != d.told {
		p.tell(need)
	}
}

func (p *Publication) tell(need int) {
	d := &p.dyn
	d.told = need
	paused := max(len(p.ActiveRIDs(maxLayers))-need, 0)
	p.engine.metrics.pausedLayers.Add(bgCtx, int64(paused-d.paused), dynacastReason)
	d.paused = paused
	d.notify(need)
}

func (d *dynacast) stopTimer() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// closeDynacast stops telling: the publication has ended.
func (p *Publication) closeDynacast() {
	d := &p.dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.stopTimer()
	p.engine.metrics.pausedLayers.Add(bgCtx, int64(-d.paused), dynacastReason)
	d.paused = 0
}

// MID is the track's mid on the publisher's connection (its receiver's
// transceiver), "" when not found.
func (p *Publication) MID() string {
	for _, t := range p.pc.GetTransceivers() {
		if t.Receiver() == p.recv {
			return t.Mid()
		}
	}
	return ""
}

// ActiveRIDs are the RIDs of the publication's lowest needed layers, by
// layer index, as the publisher named them in its offer: what a `layers`
// message lists. It is empty for a track without simulcast.
func (p *Publication) ActiveRIDs(needed int) []string {
	var byIndex [maxLayers]string
	for _, t := range p.recv.Tracks() {
		if i := layerIndex(t.RID(), p.recv); t.RID() != "" && i >= 0 && i < needed {
			byIndex[i] = t.RID()
		}
	}
	rids := []string{}
	for _, r := range byIndex {
		if r != "" {
			rids = append(rids, r)
		}
	}
	return rids
}
