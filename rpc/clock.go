package rpc

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/raftkms/raftkms/fsm"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"github.com/raftkms/raftkms/raftnode"
)

// Clock agreement (DESIGN §6). Deletions and material expiry end when the
// leader's clock says so, and every event the leader stamps moves the
// state's clock. So a leader proposes time-stamped events only while its
// clock agrees, within MaxClockSkew, with a quorum of the voters' clocks
// (itself included), measured in its current term. Every node measures its
// peers once a second (and at once when it gains leadership) with the
// ClusterService Time call; the answer bounds the peer's offset by the round
// trip: peer − t_recv ≤ offset ≤ peer − t_send.
//
// A leader whose clock does not agree refuses every write it would stamp
// (Unavailable, naming the skew), its scheduler proposes nothing, and it
// hands leadership to a voter whose clock agrees with a quorum. Only
// RegisterNode events (a node recording its own address, or a join) are
// proposed regardless, stamped so that they never move the state's clock:
// without them a new cluster could never learn the addresses it measures
// its clocks through.

// DefaultMaxClockSkew is the default for Config.MaxClockSkew.
const DefaultMaxClockSkew = 10 * time.Second

const (
	clockInterval   = time.Second     // between measurement rounds
	clockAttempt    = time.Second     // bound on one Time call
	clockSampleTTL  = 5 * time.Second // how long a peer's answer counts
	stepDownTimeout = 5 * time.Second // bound on one leadership hand-over
	catchUpInFlight = 16              // catch-up events proposed at once
	catchUpTimeout  = 30 * time.Second
	clockPrincipal  = "raftkms:clock"
)

// maxClockStep is how far one event may move the state's clock (the state
// machine caps it); a leader keeps the state's clock within half of it.
const maxClockStep = time.Duration(fsm.MaxClockStep)

// clockSample is one answer of a peer.
type clockSample struct {
	lo, hi int64     // bounds on (peer's clock − this node's clock), ns
	wall   int64     // this node's clock when the answer came, ns
	mono   time.Time // the process's monotonic clock then
	term   uint64    // the Raft term the round ran in
}

// clockState is what this node knows of its peers' clocks.
type clockState struct {
	mu         sync.Mutex
	samples    map[string]clockSample // other voters, by node ID
	others     []string               // the other voters, as of the last round
	selfVoter  bool
	members    bool       // a round has listed the members
	untrusted  bool       // an episode of disagreement has been logged
	unmeasured int        // consecutive rounds a leader had no answers
	catchUp    sync.Mutex // one catch-up at a time
	round      sync.Mutex // held by the measurement round running
}

// ClockView is this node's clock as measured against the voters'.
type ClockView struct {
	Trusted  bool          // agrees with a quorum within MaxClockSkew, in this term
	Measured bool          // a round in this term has answers to judge by
	Agree    int           // voters (itself included) that agree
	Voters   int           // voters in the configuration
	Offset   time.Duration // this clock minus the median of the voters' clocks (answers of any term)
}

// adjusted is a sample's offset bounds now, corrected for how far this
// node's clock has moved against the monotonic clock since (a jump of the
// wall clock shows at once, not at the next round).
func (c clockSample) adjusted(wall int64, mono time.Time) (lo, hi int64) {
	drift := (wall - c.wall) - int64(mono.Sub(c.mono))
	return c.lo - drift, c.hi - drift
}

// clockView judges this node's clock now.
func (s *Server) clockView() ClockView {
	term := s.node.Term()
	wall, mono := s.now().UnixNano(), time.Now()
	skew := int64(s.maxSkew())
	c := &s.clockSt
	c.mu.Lock()
	defer c.mu.Unlock()
	v := ClockView{}
	if !c.members {
		return v
	}
	if c.selfVoter {
		v.Voters, v.Agree = 1, 1
	}
	mids := []int64{0}
	for _, id := range c.others {
		v.Voters++
		smp, ok := c.samples[id]
		if !ok || mono.Sub(smp.mono) > clockSampleTTL {
			continue
		}
		lo, hi := smp.adjusted(wall, mono)
		mids = append(mids, lo+(hi-lo)/2) // the offset shown needs no term
		if smp.term != term {
			continue
		}
		v.Measured = true
		if lo >= -skew && hi <= skew {
			v.Agree++
		}
	}
	if len(c.others) == 0 {
		v.Measured = true
	}
	sort.Slice(mids, func(i, j int) bool { return mids[i] < mids[j] })
	v.Offset = -time.Duration(mids[len(mids)/2])
	v.Trusted = v.Voters > 0 && v.Agree >= v.Voters/2+1
	return v
}

// ClockTrusted reports whether this node's clock agrees with a quorum of
// the voters' clocks in the current term.
func (s *Server) ClockTrusted() bool { return s.clockView().Trusted }

// ClockReady is the rotation scheduler's gate: this node leads, its clock
// is trusted, the state's clock has caught up with it, and it holds the
// cluster's root key. It never blocks; the clock loop does the catching up.
func (s *Server) ClockReady() bool {
	if !s.node.IsLeader() || s.rootKeyErr() != nil || !s.ClockTrusted() {
		return false
	}
	return time.Duration(s.now().UnixNano()-s.fsm.Clock()) <= maxClockStep/2
}

func (s *Server) maxSkew() time.Duration {
	if s.cfg.MaxClockSkew > 0 {
		return s.cfg.MaxClockSkew
	}
	return DefaultMaxClockSkew
}

// stamp sets the time of an event this node proposes, or refuses it (see
// the package comment on clock agreement and rootKeyErr).
func (s *Server) stamp(ctx context.Context, env *eventsv1.Envelope) error {
	// A new leader's state may not show yet what root key the cluster
	// records; it must before this node seals anything for the log.
	if s.node.IsLeader() {
		if err := s.node.CatchUp(ctx); err != nil {
			return err
		}
	}
	if err := s.rootKeyErr(); err != nil {
		return err
	}
	now := s.now().UnixNano()
	if env.GetRegisterNode() != nil && !s.ClockTrusted() {
		// Never moves the state's clock: the state machine takes the
		// larger of this and its clock.
		env.TimeUnixNano = min(now, s.fsm.Clock())
		return nil
	}
	if err := s.clockErr(); err != nil {
		if s.clockView().Measured || !s.node.IsLeader() {
			return err
		}
		// A new leader has no answers of its term yet: measure now rather
		// than refuse the first writes of every term.
		s.measureNow(ctx)
		if err := s.clockErr(); err != nil {
			return err
		}
	}
	if err := s.catchUpClock(ctx); err != nil {
		return err
	}
	env.TimeUnixNano = s.now().UnixNano()
	return nil
}

// clockErr is nil when this node may stamp events; otherwise the error a
// client gets (Unavailable: another node will serve it).
func (s *Server) clockErr() error {
	v := s.clockView()
	switch {
	case v.Trusted:
		return nil
	case !s.node.IsLeader():
		// Leadership moved: the interceptor forwards the call.
		return raftnode.ErrNotLeader
	case !v.Measured:
		return unavailableErr("this leader has not compared its clock with the cluster's yet in this term; retry")
	}
	return unavailableErr("this leader's clock is %v off the cluster's (agrees within --max-clock-skew %v with %d of %d voters, "+
		"needs %d): it proposes nothing time-stamped and hands leadership over; retry", v.Offset.Round(time.Millisecond),
		s.maxSkew(), v.Agree, v.Voters, v.Voters/2+1)
}

// catchUpClock, on a leader whose clock is trusted, brings the state's
// clock to within maxClockStep/2 of it before anything time-stamped is
// proposed, by proposing RegisterNode events for this node that change
// nothing but the clock. The state machine moves its clock at most
// maxClockStep per event, so after an idle spell or a long outage a write's
// time — and a deletion window measured from it — would otherwise lag real
// time, and the window would end early in real time.
func (s *Server) catchUpClock(ctx context.Context) error {
	if s.clockLag() <= maxClockStep/2 {
		return nil
	}
	if err := s.node.CatchUp(ctx); err != nil {
		return err
	}
	s.clockSt.catchUp.Lock()
	defer s.clockSt.catchUp.Unlock()
	proposed := 0
	for {
		lag := s.clockLag()
		if lag <= maxClockStep/2 {
			if proposed > 0 {
				s.log.Info("state clock caught up with the leader's", "events", proposed)
			}
			return nil
		}
		if err := s.clockErr(); err != nil {
			return err
		}
		n := min(catchUpInFlight, int(lag/maxClockStep)+1)
		errs := make(chan error, n)
		for range n {
			go func() { errs <- s.proposeClockEvent(ctx) }()
		}
		var first error
		for range n {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return fmt.Errorf("catching the state's clock up with the leader's: %w", first)
		}
		proposed += n
	}
}

// clockLag is how far the state's clock is behind this node's.
func (s *Server) clockLag() time.Duration {
	return time.Duration(s.now().UnixNano() - s.fsm.Clock())
}

// proposeClockEvent proposes this node's RegisterNode again, as recorded:
// it only moves the state's clock.
func (s *Server) proposeClockEvent(ctx context.Context) error {
	reg := &eventsv1.RegisterNode{NodeId: s.cfg.NodeID, GrpcAddr: s.cfg.GRPCAddr, RaftAddr: s.node.Addr()}
	if n, ok := s.fsm.Node(s.cfg.NodeID); ok {
		reg.GrpcAddr, reg.RaftAddr = n.GRPCAddr, n.RaftAddr
	}
	reg.RootKeyCheck, reg.RootKeyId = s.rootKeyFields()
	reg.MaxSchemaVersion = s.fsm.MaxSchema()
	env := &eventsv1.Envelope{
		TimeUnixNano: s.now().UnixNano(),
		RequestId:    "clock/" + s.cfg.NodeID + "/" + newRequestID(),
		Principal:    clockPrincipal,
		Event:        &eventsv1.Envelope_RegisterNode{RegisterNode: reg},
	}
	res, err := s.node.Propose(ctx, env)
	if err != nil {
		return err
	}
	return res.Err
}

// Time answers a peer's clock measurement (node to node).
func (s clusterService) Time(context.Context, *clusterv1.TimeRequest) (*clusterv1.TimeResponse, error) {
	return &clusterv1.TimeResponse{NodeId: s.cfg.NodeID, UnixNano: s.now().UnixNano()}, nil
}

// RunClock measures the other voters' clocks every second, and at once
// when this node gains leadership, until ctx ends. On the leader it then
// logs a disagreement (once per episode), hands leadership over while its
// clock disagrees, and catches the state's clock up while it agrees.
func (s *Server) RunClock(ctx context.Context) {
	lead, cancel := s.node.SubscribeLeadership()
	defer cancel()
	tick := time.NewTicker(clockInterval)
	defer tick.Stop()
	for {
		s.clockRound(ctx)
		if ctx.Err() != nil {
			return
		}
		s.afterClockRound(ctx)
		select {
		case <-ctx.Done():
			return
		case _, ok := <-lead:
			if !ok {
				return
			}
		case <-tick.C:
		}
	}
}

// measureNow runs a measurement round, or waits for the one running and
// takes its answers: writes that arrive together share one round.
func (s *Server) measureNow(ctx context.Context) {
	c := &s.clockSt
	if c.round.TryLock() {
		defer c.round.Unlock()
		s.clockRoundLocked(ctx)
		return
	}
	c.round.Lock() // a round is running: its answers will do
	c.round.Unlock()
}

// clockRound runs one measurement round (RunClock's).
func (s *Server) clockRound(ctx context.Context) {
	s.clockSt.round.Lock()
	defer s.clockSt.round.Unlock()
	s.clockRoundLocked(ctx)
}

// clockRoundLocked asks every other voter for its clock, concurrently.
func (s *Server) clockRoundLocked(ctx context.Context) {
	term := s.node.Term()
	members, err := s.node.Members()
	if err != nil {
		return
	}
	var others []string
	selfVoter := false
	for _, m := range members {
		switch {
		case !m.Voter:
		case m.ID == s.cfg.NodeID:
			selfVoter = true
		default:
			others = append(others, m.ID)
		}
	}
	var mu sync.Mutex
	got := map[string]clockSample{}
	var wg sync.WaitGroup
	for _, id := range others {
		n, ok := s.fsm.Node(id)
		if !ok || n.GRPCAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if smp, ok := s.askTime(ctx, id, n.GRPCAddr, term); ok {
				mu.Lock()
				got[id] = smp
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	c := &s.clockSt
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.samples == nil {
		c.samples = map[string]clockSample{}
	}
	keep := map[string]clockSample{}
	for _, id := range others {
		if smp, ok := got[id]; ok {
			keep[id] = smp
		} else if old, ok := c.samples[id]; ok {
			keep[id] = old // counts until it is too old
		}
	}
	c.samples, c.others, c.selfVoter, c.members = keep, others, selfVoter, true
}

// askTime measures one peer's clock.
func (s *Server) askTime(ctx context.Context, id, addr string, term uint64) (clockSample, bool) {
	conn, err := s.conn(addr)
	if err != nil {
		return clockSample{}, false
	}
	actx, cancel := context.WithTimeout(ctx, clockAttempt)
	defer cancel()
	sent := s.now().UnixNano()
	resp, err := clusterv1.NewClusterServiceClient(conn).Time(actx, &clusterv1.TimeRequest{})
	recv, mono := s.now().UnixNano(), time.Now()
	if err != nil || resp.NodeId != id {
		return clockSample{}, false
	}
	return clockSample{lo: resp.UnixNano - recv, hi: resp.UnixNano - sent, wall: recv, mono: mono, term: term}, true
}

// afterClockRound acts on a round's result: on the leader it logs, hands
// leadership over or catches the state's clock up; a follower only logs.
func (s *Server) afterClockRound(ctx context.Context) {
	v := s.clockView()
	c := &s.clockSt
	c.mu.Lock()
	was := c.untrusted
	c.untrusted = v.Measured && !v.Trusted
	if v.Measured {
		c.unmeasured = 0
	}
	c.mu.Unlock()
	if !s.node.IsLeader() {
		// A follower's clock matters once it leads: say so early.
		if c.untrusted && !was {
			s.log.Warn("this node's clock disagrees with the cluster's: it will refuse to stamp events if it leads",
				"offset", v.Offset, "max_clock_skew", s.maxSkew(), "agree", v.Agree, "voters", v.Voters)
		}
		return
	}
	switch {
	case v.Trusted:
		if was {
			s.log.Info("this leader's clock agrees with the cluster's again", "offset", v.Offset, "agree", v.Agree, "voters", v.Voters)
		}
		cctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
		err := s.catchUpClock(cctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("catching the state's clock up failed; will retry", "error", err)
		}
		return
	case !v.Measured:
		// No answers of this term: nothing to judge by, and nothing is
		// stamped. Say so once if it lasts (the node-to-node channel may be
		// cut while Raft still works).
		c.mu.Lock()
		c.unmeasured++
		n := c.unmeasured
		c.mu.Unlock()
		if n == 3 {
			s.log.Warn("no other voter answered this leader's clock check; it proposes nothing time-stamped until one does",
				"voters", v.Voters)
		}
		return
	}
	if !was {
		s.log.Error("this leader's clock disagrees with the cluster's: it proposes nothing time-stamped and hands leadership over",
			"offset", v.Offset, "max_clock_skew", s.maxSkew(), "agree", v.Agree, "voters", v.Voters)
	}
	target := s.clockSuccessor()
	if target == "" {
		s.log.Warn("no voter's clock agrees with a quorum; staying leader without proposing", "offset", v.Offset)
		return
	}
	tctx, cancel := context.WithTimeout(ctx, stepDownTimeout)
	defer cancel()
	if err := s.node.TransferLeadership(tctx, target); err != nil {
		s.log.Warn("handing leadership over failed; will retry", "to", target, "error", err)
		return
	}
	s.log.Info("handed leadership over because of this node's clock", "to", target, "offset", v.Offset)
}

// clockSuccessor picks another voter whose clock, by this node's
// measurements, agrees with a quorum of the voters' clocks (this node's
// included): the one agreeing with the most, or "" when none does.
func (s *Server) clockSuccessor() string {
	term := s.node.Term()
	wall, mono := s.now().UnixNano(), time.Now()
	skew := int64(s.maxSkew())
	c := &s.clockSt
	c.mu.Lock()
	defer c.mu.Unlock()
	type est struct {
		id     string
		mid    int64
		radius int64
	}
	var ests []est
	for _, id := range c.others {
		smp, ok := c.samples[id]
		if !ok || smp.term != term || mono.Sub(smp.mono) > clockSampleTTL {
			continue
		}
		lo, hi := smp.adjusted(wall, mono)
		ests = append(ests, est{id, lo + (hi-lo)/2, (hi - lo) / 2})
	}
	if c.selfVoter {
		ests = append(ests, est{id: s.cfg.NodeID})
	}
	voters := len(c.others)
	if c.selfVoter {
		voters++
	}
	best, bestAgree := "", 0
	for _, a := range ests {
		if a.id == s.cfg.NodeID {
			continue
		}
		agree := 0
		for _, b := range ests {
			d := a.mid - b.mid
			if d < 0 {
				d = -d
			}
			if d+a.radius+b.radius <= skew {
				agree++
			}
		}
		if agree >= voters/2+1 && agree > bestAgree {
			best, bestAgree = a.id, agree
		}
	}
	return best
}

// fillClockStatus adds this node's clock and root key to a Status answer.
func (s *Server) fillClockStatus(resp *clusterv1.StatusResponse) {
	v := s.clockView()
	resp.ClockTrusted = v.Trusted
	resp.ClockOffsetNanos = int64(v.Offset)
	_, resp.RootKeyId = s.rootKeyFields()
	_, resp.ClusterRootKeyId = s.fsm.RootKeyCheck()
}
