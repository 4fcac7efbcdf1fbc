package tests

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/fleet"
	"github.com/portsentry/pipeline/shared/fleet/natstest"
)

// TestFleetCentralJudge runs topology 2 with the real programs and an
// embedded server on loopback: hit lines published as a sensor does
// (--connect nats://) reach one ps-judge --listen nats:// --connect
// nats://, whose decision a member's ps-block --fleet carries out (here
// into a hosts.deny file of the test's own); a hit from an address a
// member registered is not decided on at all, since the judge reads the
// member bucket too.
func TestFleetCentralJudge(t *testing.T) {
	url := natstest.Run(t, t.TempDir(), -1, nil).ClientURL()
	dir := t.TempDir()
	deny := writeFile(t, dir, "hosts.deny", "")
	writeFile(t, dir, "ignore", "")
	conf := func(host string) string {
		return advConf(t, dir, host+".conf", map[string]string{
			"FLEET_HOST": host, "SCAN_TRIGGER": "0", "BLOCK_DURATION": "1h", "NFT_BLOCK": "0",
			"KILL_HOSTS_DENY": "ALL: $TARGET$", "HOSTS_DENY_FILE": deny,
			"IGNORE_FILE": filepath.Join(dir, "ignore"), "BLOCKED_FILE": filepath.Join(dir, host+"-blocked"),
			"HISTORY_FILE": filepath.Join(dir, host+"-history"),
		})
	}
	results, err := os.Create(filepath.Join(dir, "results"))
	if err != nil {
		t.Fatal(err)
	}
	defer results.Close()
	block := exec.Command(bin("ps-block"), "-c", conf("host-b"), "--listen", filepath.Join(dir, "block.sock"), "--fleet", url)
	block.Stdout = results
	b := advStart(t, dir, "ps-block", block)
	b.waitLog(t, "NATS: following the fleet's decisions", 10*time.Second)

	// A member whose address a forged probe will carry.
	nc, err := fleet.Dial(url, &config.Fleet{}, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request("$KV."+fleet.Members+".host-z", []byte("198.18.77.7"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	j := advStart(t, dir, "ps-judge", exec.Command(bin("ps-judge"), "-c", conf("judge"), "--listen", url, "--connect", url))
	j.waitLog(t, "reading the hit lines of the fleet's sensors", 10*time.Second)
	j.waitLog(t, "guard (fleet members)", 10*time.Second)

	sensor := fleet.NewCore(nc, fleet.HitSubject("host-s"), t.Logf)
	for _, src := range []string{"198.18.77.7", "198.18.66.6"} {
		sensor.Write([]byte(hitLine(src, 21, time.Now())))
	}
	sensor.Write([]byte("not a hit\n"))
	nc.Flush()

	// The result line follows the action: wait for it.
	resultFile := filepath.Join(dir, "results")
	const want = `"target":"198.18.66.6","mode":"atcp","action":"hosts.deny","ok":true`
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if res, _ := os.ReadFile(resultFile); strings.Contains(string(res), want) {
			break
		}
	}
	got := advLines(t, deny)
	if len(got) != 1 || got[0] != "ALL: 198.18.66.6" {
		t.Errorf("hosts.deny = %q, want the scanner alone", got)
	}
	j.waitLog(t, "ignored: a member of the fleet (host-z)", 5*time.Second)
	j.waitLog(t, "NATS portsentry.hit.host-s line 3: not a JSON object", 5*time.Second)
	res, _ := os.ReadFile(resultFile)
	if !strings.Contains(string(res), want) {
		t.Errorf("no hosts.deny result for the scanner:\n%s", res)
	}
	if strings.Contains(string(res), "198.18.77.7") {
		t.Errorf("the member's forged address reached ps-block:\n%s", res)
	}
}

// TestFleetDryRun: ps-block --dry-run --fleet changes nothing anywhere: it
// says what it would do with its own decision, but publishes no decision
// and registers no address.
func TestFleetDryRun(t *testing.T) {
	url := natstest.Run(t, t.TempDir(), -1, nil).ClientURL()
	dir := t.TempDir()
	writeFile(t, dir, "ignore", "")
	writeFile(t, dir, "hosts.deny", "")
	conf := advConf(t, dir, "p.conf", map[string]string{"FLEET_HOST": "host-d", "NFT_BLOCK": "0",
		"KILL_HOSTS_DENY": "ALL: $TARGET$", "HOSTS_DENY_FILE": filepath.Join(dir, "hosts.deny"), "IGNORE_FILE": filepath.Join(dir, "ignore"),
		"BLOCKED_FILE": filepath.Join(dir, "blocked"), "HISTORY_FILE": filepath.Join(dir, "history")})
	results, err := os.Create(filepath.Join(dir, "results"))
	if err != nil {
		t.Fatal(err)
	}
	defer results.Close()
	sock := filepath.Join(dir, "block.sock")
	cmd := exec.Command(bin("ps-block"), "-c", conf, "--dry-run", "--listen", sock, "--fleet", url)
	cmd.Stdout = results
	b := advStart(t, dir, "ps-block", cmd)
	b.waitLog(t, "NATS: following the fleet's decisions", 10*time.Second)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(advDecision("block", "198.18.88.8", 21))); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if res, _ := os.ReadFile(filepath.Join(dir, "results")); strings.Contains(string(res), "dry run: would add") {
			break
		}
	}
	time.Sleep(500 * time.Millisecond) // a publication would be stored by now
	nc, err := fleet.Dial(url, &config.Fleet{}, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := js.Stream(ctx, fleet.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("a dry run published %d decision(s)", n)
	}
	kv, err := js.KeyValue(ctx, fleet.Members)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "host-d"); err == nil {
		t.Errorf("a dry run registered its addresses: %q", e.Value())
	}
	if res, _ := os.ReadFile(filepath.Join(dir, "results")); !strings.Contains(string(res), "dry run: would add") {
		t.Errorf("no dry-run result:\n%s", res)
	}
}
