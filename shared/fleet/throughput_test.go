package fleet

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

// TestFleetThroughput measures the NATS path alone (PS_FLEET_BENCH=1 only;
// a measurement, not a timed test): 20,000 decisions from one Outbox
// through an embedded server to a Follow that only records them.
func TestFleetThroughput(t *testing.T) {
	if os.Getenv("PS_FLEET_BENCH") == "" {
		t.Skip("a measurement: run with PS_FLEET_BENCH=1")
	}
	s := runServer(t, t.TempDir(), -1)
	out, err := NewOutbox(dial(t, s), "host-a", "ps-block", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	r := follow(t, dial(t, s), "host-b/ps-block")
	time.Sleep(500 * time.Millisecond)
	const n = 20000
	until := time.Now().Add(time.Hour)
	lines := make([][]byte, n)
	for i := range lines {
		lines[i] = decision(event.KindBlock, netip.AddrFrom4([4]byte{198, 19, byte(i / 256), byte(i % 256)}).String(), until, "host-a")
	}
	start := time.Now()
	for _, l := range lines {
		out.Add(l)
	}
	added := time.Since(start)
	waitFor(t, "every decision", func() bool { l, _ := r.snapshot(); return len(l) == n })
	el := time.Since(start)
	t.Logf("FLEETBENCH nats-path decisions=%d added_in=%v received_in=%v per_s=%.0f idle_calls=%d", n, added, el, n/el.Seconds(), r.idle)
}
