package raftnode

import (
	"context"
	"sync"
)

// leadership fans raft's single LeaderCh out to any number of subscribers.
// Each subscriber has a one-slot channel that always holds the latest value,
// so a slow consumer never blocks Raft and never acts on a stale value.
type leadership struct {
	mu     sync.Mutex
	leader bool
	subs   map[int]chan bool
	nextID int
	closed bool
	wg     sync.WaitGroup
}

func (l *leadership) start(ch <-chan bool, done <-chan struct{}, onGain func()) {
	l.subs = map[int]chan bool{}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case v := <-ch:
				l.publish(v)
				if v && onGain != nil {
					onGain()
				}
			case <-done:
				l.close()
				return
			}
		}
	}()
}

func (l *leadership) wait() { l.wg.Wait() }

// replace puts v in a one-slot channel, dropping an unread older value. Only
// the holder of l.mu sends, so the send never blocks.
func replace(ch chan bool, v bool) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

func (l *leadership) publish(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leader = v
	for _, ch := range l.subs {
		replace(ch, v)
	}
}

func (l *leadership) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, ch := range l.subs {
		if l.leader {
			replace(ch, false)
		}
		close(ch)
	}
	l.leader = false
	l.subs = nil
}

// SubscribeLeadership returns a channel that holds this node's latest
// leadership state: the current state at once, then true when it becomes
// leader and false when it stops. Intermediate values may be dropped, so
// treat every true as the start of a new term: call Barrier before acting on
// it. The channel is closed (after a final false if it was leader) when the
// node shuts down or cancel is called.
func (n *Node) SubscribeLeadership() (<-chan bool, func()) {
	l := &n.leaders
	ch := make(chan bool, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		close(ch)
		return ch, func() {}
	}
	id := l.nextID
	l.nextID++
	l.subs[id] = ch
	ch <- l.leader
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if c, ok := l.subs[id]; ok {
			delete(l.subs, id)
			close(c)
		}
	}
}

// onLeadershipGained runs a Barrier in the background, so that the first
// ReadIndex of the term does not pay for it.
func (n *Node) onLeadershipGained() {
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
		defer cancel()
		if err := n.Barrier(ctx); err != nil {
			n.logger.Debug("barrier after gaining leadership failed", "error", err)
		}
	}()
}
