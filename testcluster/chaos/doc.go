// Package chaos runs raftkms clusters under faults — killed, crashed,
// partitioned and paused nodes, lagging followers that need a snapshot,
// membership changes, leader transfers, slow and lossy links and skewed
// clocks — while clients drive the key API, and then checks with an
// independent checker, porcupine, that every key's history was
// linearizable, and with the nodes' own state that nothing acknowledged
// was lost, nothing was applied twice, every version of every key exists
// exactly once, every ciphertext still decrypts, and all nodes converged.
//
// The pieces:
//
//   - model.go: the sequential specification of one key (state, current
//     version, automatic rotation) that porcupine checks each key's
//     operations against;
//   - history.go: the recorder of client operations, with invoke and
//     return times; an operation whose outcome stayed unknown returns at
//     Never;
//   - workload.go: clients that create, rotate, disable, enable, schedule
//     and cancel deletion, encrypt, decrypt and describe, retrying a write
//     only under its original request ID;
//   - check.go: porcupine (with an HTML visualization of a failing history)
//     and the checks against every node's state machine;
//   - harness.go: a scenario's life: cluster, workload, fault schedule,
//     heal, checks.
//
// Every node serves linearizable reads under a quorum read lease by
// default (raftnode/lease.go); a run logs how each node served its reads
// (lease, read index, stale, held until visible) and fails if none was
// served under a lease. The lease scenarios (lease_*_test.go) cut off a
// follower holding a lease, cut off the leader mid-write and skew lease
// clocks within the drift bound; on a cut-off node a read may still succeed
// under its lease for at most one lease duration after the cut, a write
// never (lease_window_test.go).
//
// The scenarios are this package's tests (TestChaos*). By default each
// injects faults for a few seconds; flags make longer soaks and replays:
//
//	go test ./testcluster/chaos -run TestChaosPausedLeader -chaos.duration=2m
//	go test ./testcluster/chaos -run TestChaosPausedLeader -chaos.seed=1234
//	go test ./testcluster/chaos -chaos.out=/tmp/chaos   # keep failing histories' HTML
//
// A seed fixes the fault schedule's and the clients' random choices; the
// interleaving of goroutines and the network's timing still vary between
// runs, so a replay reproduces the run's shape, not every step.
//
// Faults go through testcluster: Raft traffic and node-to-node gRPC
// (forwarding, read index) cross its fault network (cut, one-way
// blackhole, delay, drop, hold), so a node cut off from the leader is cut
// off on both planes; a paused node also has its apply path and its
// clients' gRPC connections held, and a crash drops those connections
// before killing it. The clients themselves are outside the network:
// their connections are never cut, only the nodes' answers stop.
package chaos
