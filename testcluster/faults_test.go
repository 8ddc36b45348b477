package testcluster_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/raftkms/raftkms/testcluster"
)

// pair connects node "a" to node "b" over nw and returns both ends.
func pair(t *testing.T, nw *testcluster.Network) (a, b net.Conn) {
	t.Helper()
	epA, err := nw.Listen("a", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	epB, err := nw.Listen("b", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { epA.Close(); epB.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := epB.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	a, err = epA.Dial(epB.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case b = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// readWithin reads len(want) bytes from c within d.
func readWithin(c net.Conn, n int, d time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return buf, err
}

func TestNetworkDelay(t *testing.T) {
	nw := testcluster.NewNetwork()
	a, b := pair(t, nw)
	nw.Delay("a", "b", 150*time.Millisecond, 0)
	start := time.Now()
	if _, err := a.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := readWithin(b, 2, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("delayed write arrived after %v", d)
	}
	// The other direction is not delayed.
	start = time.Now()
	b.Write([]byte("yo"))
	if _, err := readWithin(a, 2, 2*time.Second); err != nil || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("reverse direction: %v after %v", err, time.Since(start))
	}
}

func TestNetworkDrop(t *testing.T) {
	nw := testcluster.NewNetwork()
	a, b := pair(t, nw)
	nw.Drop("a", "b", 1)
	if _, err := a.Write([]byte("lost")); !errors.Is(err, testcluster.ErrLinkDown) {
		t.Fatalf("write on a dropping link: %v", err)
	}
	if _, err := readWithin(b, 1, 2*time.Second); err == nil {
		t.Fatal("the peer read data from a broken connection")
	}
}

func TestNetworkBlackhole(t *testing.T) {
	nw := testcluster.NewNetwork()
	a, b := pair(t, nw)
	nw.Blackhole("a", "b")
	if _, err := a.Write([]byte("void")); err != nil {
		t.Fatalf("a write into a blackhole fails: %v", err)
	}
	if _, err := readWithin(b, 4, 200*time.Millisecond); err == nil {
		t.Fatal("data crossed the blackhole")
	}
	// One way only: b is still heard.
	b.Write([]byte("ok"))
	if _, err := readWithin(a, 2, 2*time.Second); err != nil {
		t.Fatalf("reverse direction: %v", err)
	}
	// Lifting it closes the connection that lost data.
	nw.ClearFaults()
	if _, err := a.Write([]byte("x")); err == nil {
		if _, err := readWithin(a, 1, 2*time.Second); err == nil {
			t.Fatal("the connection that lost data is still open")
		}
	}
}

func TestNetworkHold(t *testing.T) {
	nw := testcluster.NewNetwork()
	a, b := pair(t, nw)
	nw.Hold("b")
	if _, err := a.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		buf, _ := readWithin(b, 4, 10*time.Second)
		got <- buf
	}()
	select {
	case <-got:
		t.Fatal("a held node read data")
	case <-time.After(200 * time.Millisecond): // the hold lasts at least this long
	}
	nw.Release("b")
	select {
	case buf := <-got:
		if string(buf) != "late" {
			t.Fatalf("read %q after release", buf)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the released node did not read what was sent meanwhile")
	}
}

// TestPauseElectsNewLeader: a paused leader is replaced; once resumed it
// follows, and the cluster converges.
func TestPauseElectsNewLeader(t *testing.T) {
	c := testcluster.New(t, 3)
	l := c.WaitForLeader(t)
	term := c.Node(l).Term()
	c.Pause(l)
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for {
		if n := c.Leader(); n >= 0 && n != l && c.Node(n).Term() > term {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new leader while the old one is paused")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	mustPropose(t, c, createKeyEnv("while-paused", "create-while-paused"))
	c.Resume(l)
	c.WaitConverged(t)
	if _, ok := c.FSM(l).Key("while-paused"); !ok {
		t.Fatal("the resumed node did not catch up")
	}
}

// TestMembershipHelpers: a node is added, the leader removes itself, and
// the rest converge.
func TestMembershipHelpers(t *testing.T) {
	c := testcluster.New(t, 3)
	c.WaitForLeader(t)
	mustPropose(t, c, createKeyEnv("before", "create-before"))
	i := c.AddNode()
	c.WaitConverged(t)
	if _, ok := c.FSM(i).Key("before"); !ok {
		t.Fatal("the new node did not catch up")
	}
	l := c.WaitForLeader(t)
	c.RemoveNode(l)
	if !c.Removed(l) || c.Alive(l) {
		t.Fatal("removed leader still running")
	}
	mustPropose(t, c, createKeyEnv("after", "create-after"))
	c.WaitConverged(t)
	members, err := c.Members()
	if err != nil || len(members) != 3 {
		t.Fatalf("members %v (%v), want 3", members, err)
	}
	for _, m := range members {
		if m.ID == c.ID(l) {
			t.Fatalf("removed node %s is still a member", m.ID)
		}
	}
}
