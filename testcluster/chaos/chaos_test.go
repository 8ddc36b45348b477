package chaos

import (
	"flag"
	"os"
	"strconv"
	"testing"
	"time"
)

var (
	seedFlag     = flag.Uint64("chaos.seed", 0, "seed of the chaos scenarios (default: $RAFTKMS_SEED, else a fresh one; always printed)")
	durationFlag = flag.Duration("chaos.duration", 0, "how long each chaos scenario injects faults (default: a short run, about 7 s)")
	outFlag      = flag.String("chaos.out", "", "directory for the HTML visualization of a failing history (default: the test's temp dir)")
)

// shortDuration is each scenario's fault phase when -chaos.duration is not
// given (half of it with -short): all scenarios together take about a
// minute on two cores.
const shortDuration = 7 * time.Second

// params picks the seed (printed by Run, so a failure can be replayed) and
// the duration of a scenario.
func params(t *testing.T) Params {
	seed := *seedFlag
	if seed == 0 {
		if env := os.Getenv("RAFTKMS_SEED"); env != "" {
			v, err := strconv.ParseUint(env, 10, 64)
			if err != nil {
				t.Fatalf("RAFTKMS_SEED: %v", err)
			}
			seed = v
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	d := *durationFlag
	switch {
	case d == 0 && testing.Short():
		d = shortDuration / 2
	case d == 0:
		d = shortDuration
	}
	return Params{Seed: seed, Duration: d, OutDir: *outFlag}
}
