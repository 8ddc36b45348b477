package compose

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// services are the compose services, which are also the node IDs.
var services = []string{"kms1", "kms2", "kms3"}

// containerPort is each service's gRPC port inside its container, as in
// docker-compose.yml.
var containerPort = map[string]int{"kms1": 7001, "kms2": 7002, "kms3": 7003}

const (
	// cmdTimeout bounds one docker or kmsctl command, so that nothing hangs
	// the test; building and `up` get longer.
	cmdTimeout   = 60 * time.Second
	buildTimeout = 5 * time.Minute
	// kmsctlTimeout is kmsctl's own bound on a command (its --timeout),
	// retries included.
	kmsctlTimeout = 20 * time.Second
)

// harness is one compose project: the image, the host ports and the
// commands to drive and inspect it.
type harness struct {
	t       *testing.T
	repo    string            // repository root, where the compose files are
	compose []string          // "docker compose" or "docker-compose"
	project string            // unique compose project name
	image   string            // image tag built for this run
	bin     string            // directory with the host's static kmsd and kmsctl
	certs   string            // directory with the CA, node and admin certificates
	env     []string          // environment of compose commands
	port    map[string]int    // published gRPC port of each service
	ids     map[string]string // container of each service, once up
	network string            // the cluster network's full name, once up
}

// requireDocker skips the test unless a Docker Engine answers and a compose
// command works; it returns that command.
func requireDocker(t *testing.T) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("compose: skipped with -short: this test builds an image and runs a Docker cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("compose: skipped: no docker command in PATH (this test needs a Docker Engine)")
	}
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("compose: skipped: `docker info` does not answer (%v: %s); this test needs a Docker Engine",
			err, strings.TrimSpace(string(out)))
	}
	for _, c := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		args := append(slices.Clone(c[1:]), "version")
		if exec.CommandContext(ctx, c[0], args...).Run() == nil {
			return c
		}
	}
	t.Skip("compose: skipped: neither `docker compose` nor `docker-compose` works")
	return nil
}

// newHarness builds the binaries and the image, writes a root key and the
// cluster's certificates, and picks host ports. It registers the clean-up
// (diagnostics on failure, then `down -v`, then removing the image) before
// anything is started.
func newHarness(t *testing.T, compose []string) *harness {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	suffix := randomHex(4)
	h := &harness{
		t:       t,
		repo:    repo,
		compose: compose,
		project: "raftkms-test-" + suffix,
		image:   "raftkms-test:" + suffix,
		port:    map[string]int{},
		ids:     map[string]string{},
	}
	h.buildImage()

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "root.key")
	key, err := h.cmd(cmdTimeout, filepath.Join(h.bin, "kmsd"), "gen-root-key")
	if err != nil {
		t.Fatal(err)
	}
	// 0644 (here and for the node keys): the bind-mounted secrets must be
	// readable by the containers' unprivileged user; the temporary
	// directory is private.
	if err := os.WriteFile(keyFile, []byte(key), 0o644); err != nil {
		t.Fatal(err)
	}

	// The cluster's CA and certificates; the test's kmsctl is "admin".
	h.certs = filepath.Join(dir, "certs")
	if _, err := h.cmd(cmdTimeout, filepath.Join(h.bin, "kmsd"), "gen-certs", "--out", h.certs,
		"--nodes", strings.Join(services, ","), "--clients", "admin"); err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		if err := os.Chmod(filepath.Join(h.certs, svc+"-key.pem"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ports := freePorts(t, len(services))
	h.env = []string{"KMS_IMAGE=" + h.image, "KMS_ROOT_KEY=" + keyFile, "KMS_CERTS=" + h.certs,
		"KMS_ADMIN_IDENTITIES=admin", "KMS_LOG_LEVEL=info"}
	for i, svc := range services {
		h.port[svc] = ports[i]
		h.env = append(h.env, fmt.Sprintf("%s_PORT=%d", strings.ToUpper(svc), ports[i]))
	}
	t.Cleanup(h.down)
	t.Logf("compose project %s, image %s, host ports %v", h.project, h.image, h.port)
	return h
}

// buildImage compiles static kmsd and kmsctl into a build context laid out
// as the Dockerfile expects, and builds the image from the repository's
// Dockerfile and .dockerignore. The kmsctl binary doubles as the host's.
func (h *harness) buildImage() {
	t := h.t
	t.Helper()
	ctxDir := t.TempDir()
	h.bin = filepath.Join(ctxDir, ".bin", "image")
	if err := os.MkdirAll(filepath.Join(h.bin, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(h.repo, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctxDir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", h.bin+"/", "./cmd/kmsd", "./cmd/kmsctl")
	build.Dir = h.repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := runCmd(build, buildTimeout); err != nil {
		t.Fatalf("building static kmsd and kmsctl: %v\n%s", err, out)
	}
	t.Logf("static binaries built in %s", time.Since(start).Round(time.Second))

	start = time.Now()
	if _, err := h.cmd(buildTimeout, "docker", "build", "-q", "-t", h.image, ctxDir); err != nil {
		t.Fatalf("docker build: %v", err)
	}
	t.Cleanup(func() {
		if _, err := h.cmd(cmdTimeout, "docker", "rmi", "-f", h.image); err != nil {
			t.Errorf("removing image %s: %v", h.image, err)
		}
	})
	t.Logf("image %s built in %s", h.image, time.Since(start).Round(time.Second))
}

// up starts the cluster and waits until every node is healthy.
func (h *harness) up() {
	t := h.t
	t.Helper()
	args := []string{"up", "-d"}
	if h.compose[0] == "docker" {
		args = append(args, "--wait") // compose v2; v1 has no --wait
	}
	if _, err := h.composeCmd(buildTimeout, args...); err != nil {
		t.Fatalf("compose up: %v", err)
	}
	for _, svc := range services {
		h.containerID(svc)
	}
	h.waitHealthy(90*time.Second, services...)
	nets, err := h.cmd(cmdTimeout, "docker", "inspect", "-f",
		"{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", h.containerID("kms1"))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(nets); len(f) != 1 {
		t.Fatalf("kms1 is on networks %q, want exactly one", f)
	} else {
		h.network = f[0]
	}
}

// down prints the logs if the test failed, removes everything the project
// made, and checks that nothing of it is left.
func (h *harness) down() {
	t := h.t
	if t.Failed() {
		if out, err := h.composeCmd(cmdTimeout, "ps"); err == nil {
			t.Logf("compose ps:\n%s", out)
		}
		for _, svc := range services {
			if id, ok := h.ids[svc]; ok {
				st, err := h.cmd(cmdTimeout, "docker", "exec", id, "/kmsctl", "--endpoints",
					"127.0.0.1:"+strconv.Itoa(containerPort[svc]), "--timeout", "5s", "cluster", "status")
				t.Logf("%s's own status (err=%v):\n%s", svc, err, st)
			}
		}
		out, err := h.composeCmd(cmdTimeout, "logs", "--no-color", "--timestamps", "--tail=300")
		t.Logf("compose logs (err=%v):\n%s", err, out)
	}
	if _, err := h.composeCmd(2*cmdTimeout, "down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
		t.Errorf("compose down: %v", err)
	}
	for _, kind := range [][]string{{"ps", "-a"}, {"network", "ls"}, {"volume", "ls"}} {
		args := append(slices.Clone(kind), "-q", "--filter", "name="+h.project)
		out, err := h.cmd(cmdTimeout, "docker", args...)
		if err != nil {
			t.Errorf("docker %s: %v", strings.Join(args, " "), err)
		} else if strings.TrimSpace(out) != "" {
			t.Errorf("left behind by compose down (docker %s): %s", strings.Join(kind, " "), out)
		}
	}
}

// containerID is the container of a service. Compose v2's `ps` leaves out
// stopped containers, so the IDs are looked up once, while all run.
func (h *harness) containerID(svc string) string {
	h.t.Helper()
	if id, ok := h.ids[svc]; ok {
		return id
	}
	out, err := h.composeCmd(cmdTimeout, "ps", "-q", svc)
	if err != nil {
		h.t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	if id == "" || strings.ContainsAny(id, " \n") {
		h.t.Fatalf("compose ps -q %s gave %q, want one container", svc, id)
	}
	h.ids[svc] = id
	return id
}

// waitHealthy waits until Docker reports the services' health checks pass.
func (h *harness) waitHealthy(limit time.Duration, svcs ...string) {
	t := h.t
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, svc := range svcs {
		id := h.containerID(svc)
		for {
			st, err := h.cmd(cmdTimeout, "docker", "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", id)
			if err == nil && strings.TrimSpace(st) == "running healthy" {
				break
			}
			if strings.HasPrefix(st, "restarting") || strings.HasPrefix(st, "exited") {
				// kmsd exited: no point in waiting for it.
				ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
				out, lerr := exec.CommandContext(ctx, "docker", "logs", "--tail", "5", id).CombinedOutput()
				cancel()
				t.Fatalf("%s is %s; kmsd exited (docker logs: %v):\n%s", svc, strings.TrimSpace(st), lerr, out)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not healthy after %s: %q %v", svc, limit, strings.TrimSpace(st), err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// ipOf is a container's address on the cluster network ("" when it is not
// on it).
func (h *harness) ipOf(id string) string {
	h.t.Helper()
	out, err := h.cmd(cmdTimeout, "docker", "inspect", "-f",
		fmt.Sprintf("{{with index .NetworkSettings.Networks %q}}{{.IPAddress}}{{end}}", h.network), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// endpoint is a service's gRPC address as the host reaches it.
func (h *harness) endpoint(svc string) string {
	return "127.0.0.1:" + strconv.Itoa(h.port[svc])
}

// kmsctl runs the host's kmsctl against the given services and decodes its
// JSON answer into out (when out is not nil).
func (h *harness) kmsctl(out any, svcs []string, args ...string) error {
	eps := make([]string, len(svcs))
	for i, s := range svcs {
		eps[i] = h.endpoint(s)
	}
	full := append([]string{"--endpoints", strings.Join(eps, ","), "--timeout", kmsctlTimeout.String(),
		"--ca", filepath.Join(h.certs, "ca.pem"),
		"--cert", filepath.Join(h.certs, "admin.pem"), "--key", filepath.Join(h.certs, "admin-key.pem")}, args...)
	stdout, err := h.cmd(kmsctlTimeout+10*time.Second, filepath.Join(h.bin, "kmsctl"), full...)
	if ce := (*cmdError)(nil); errors.As(err, &ce) {
		// Name the call without the TLS file arguments, which say nothing.
		ce.cmd = fmt.Sprintf("kmsctl %s (via %s)", strings.Join(args, " "), strings.Join(svcs, ","))
		return ce
	}
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			return fmt.Errorf("kmsctl %s: decoding %q: %w", strings.Join(args, " "), stdout, err)
		}
	}
	return nil
}

// transientRetry is how long one operation may keep failing with an error a
// client retries (the cluster is electing a leader, or a node cannot reach
// the one it still takes for the leader). Every such error is logged.
const transientRetry = 15 * time.Second

// transientErrors are the kmsctl errors the test retries: AWS clients
// retry them (HTTP 5xx answers, and connections refused while a node
// restarts; kmsctl itself gives up at once when no endpoint connects).
var transientErrors = []string{"(DependencyTimeoutException)", "(KMSInternalException)", "Could not connect to the endpoint URL"}

// kmsctlRetry is kmsctl, retried for up to transientRetry while it fails
// with a transient error. Wrong answers are never retried: they are not
// errors here, and the callers check them.
func (h *harness) kmsctlRetry(out any, svcs []string, args ...string) error {
	start := time.Now()
	deadline := start.Add(transientRetry)
	for retries := 0; ; retries++ {
		err := h.kmsctl(out, svcs, args...)
		if err == nil || !slices.ContainsFunc(transientErrors, func(n string) bool { return strings.Contains(err.Error(), n) }) {
			if retries > 0 {
				h.t.Logf("... %s answered %s after the first try (%d retries); err=%v",
					args[0], time.Since(start).Round(10*time.Millisecond), retries, err)
			}
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", transientRetry, err)
		}
		h.t.Logf("transient error, retrying: %v", err)
		time.Sleep(200 * time.Millisecond)
	}
}

// clusterStatus is the part of `kmsctl cluster status` the test reads.
type clusterStatus struct {
	NodeID       string `json:"NodeId"`
	State        string `json:"State"`
	LeaderID     string `json:"LeaderId"`
	AppliedIndex uint64 `json:"AppliedIndex"`
	StateDigest  string `json:"StateDigest"`
	Term         uint64 `json:"Term"`
}

// status asks one node for its own view of the cluster.
func (h *harness) status(svc string) (clusterStatus, error) {
	var st clusterStatus
	err := h.kmsctl(&st, []string{svc}, "cluster", "status")
	if err == nil && st.NodeID != svc {
		err = fmt.Errorf("asked %s for its status, %s answered", svc, st.NodeID)
	}
	return st, err
}

// execStatus asks a node for its status from inside its container, over
// loopback: this works while the container is cut off from the network.
func (h *harness) execStatus(svc string) (clusterStatus, error) {
	var st clusterStatus
	out, err := h.cmd(cmdTimeout, "docker", "exec", h.containerID(svc), "/kmsctl",
		"--endpoints", "127.0.0.1:"+strconv.Itoa(containerPort[svc]), "--timeout", "5s", "cluster", "status")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// waitLeader waits until one of the given nodes leads and every one of them
// names it, and returns its ID.
func (h *harness) waitLeader(limit time.Duration, svcs ...string) string {
	t := h.t
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		leader, why := h.agreedLeader(svcs)
		if why == "" {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader among %v after %s: %s", svcs, limit, why)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// agreedLeader is the leader every one of the nodes names, if it is one of
// them; otherwise why says what is wrong.
func (h *harness) agreedLeader(svcs []string) (leader, why string) {
	for _, svc := range svcs {
		st, err := h.status(svc)
		if err != nil {
			return "", err.Error()
		}
		if st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
			return "", fmt.Sprintf("%s names leader %q, another node %q", svc, st.LeaderID, leader)
		}
		leader = st.LeaderID
	}
	if !slices.Contains(svcs, leader) {
		return "", fmt.Sprintf("the leader %s is not among %v", leader, svcs)
	}
	return leader, ""
}

// waitConverged waits until all nodes report the same applied index and
// state digest, and returns them.
func (h *harness) waitConverged(limit time.Duration) clusterStatus {
	t := h.t
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var sts []clusterStatus
		var err error
		for _, svc := range services {
			var st clusterStatus
			if st, err = h.status(svc); err != nil {
				break
			}
			sts = append(sts, st)
		}
		if err == nil && sts[0].StateDigest != "" && sameState(sts) {
			return sts[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not converge within %s: %+v (last error %v)", limit, sts, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func sameState(sts []clusterStatus) bool {
	for _, st := range sts[1:] {
		if st.AppliedIndex != sts[0].AppliedIndex || st.StateDigest != sts[0].StateDigest {
			return false
		}
	}
	return true
}

// composeCmd runs a compose command on this project.
func (h *harness) composeCmd(limit time.Duration, args ...string) (string, error) {
	full := append(slices.Clone(h.compose[1:]),
		"-p", h.project,
		"-f", filepath.Join(h.repo, "docker-compose.yml"),
		"-f", filepath.Join(h.repo, "docker-compose.test.yml"))
	return h.cmd(limit, h.compose[0], append(full, args...)...)
}

// cmd runs a command with a time limit in the repository, with the
// project's environment, and returns its stdout; an error carries stderr.
func (h *harness) cmd(limit time.Duration, name string, args ...string) (string, error) {
	c := exec.Command(name, args...)
	c.Dir = h.repo
	c.Env = append(cleanEnv(), h.env...)
	return runCmd(c, limit)
}

func runCmd(c *exec.Cmd, limit time.Duration) (string, error) {
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit):
		c.Process.Kill()
		<-done
		err = fmt.Errorf("timed out after %s", limit)
	}
	if err != nil {
		return stdout.String(), &cmdError{
			cmd:    filepath.Base(c.Path) + " " + strings.Join(c.Args[1:], " "),
			err:    err,
			stderr: strings.TrimSpace(stderr.String()),
		}
	}
	return stdout.String(), nil
}

// cmdError is a command that failed, with what it wrote to stderr.
type cmdError struct {
	cmd    string
	err    error
	stderr string
}

func (e *cmdError) Error() string { return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr) }
func (e *cmdError) Unwrap() error { return e.err }

// cleanEnv is the test's environment without settings that would change
// what kmsctl or compose do behind the test's back.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RAFTKMS_") || strings.HasPrefix(name, "KMS") ||
			strings.HasPrefix(name, "COMPOSE_") || name == "TZ" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TZ=UTC")
}

// freePorts finds n free TCP ports on 127.0.0.1 for the published gRPC ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// errorsJoin keeps up to a few errors for one message.
func errorsJoin(errs []error) error {
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("... and %d more", len(errs)-5))
	}
	return errors.Join(errs...)
}
