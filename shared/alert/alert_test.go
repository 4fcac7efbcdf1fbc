package alert

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestTagsAndRateLimit(t *testing.T) {
	var buf bytes.Buffer
	l := NewWriter("ps-test", &buf)
	clock := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return clock }
	l.perSecond = 3
	l.Admin("PortSentry is now active and listening.")
	l.Security("config %s", "x")
	for i := 0; i < 10; i++ {
		l.AttackLimited("Connect from host: %d", i)
	}
	l.Close() // writes the summary of the 7 held back
	clock = clock.Add(2 * time.Second)
	l.AttackLimited("later")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"adminalert: PortSentry is now active and listening.",
		"securityalert: config x",
		"attackalert: Connect from host: 0",
		"attackalert: Connect from host: 1",
		"attackalert: Connect from host: 2",
		"attackalert: 7 more alerts in the last second not shown (rate limit)",
		"attackalert: later",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "2026-11-2") || !strings.Contains(lines[i], " ps-test[") || !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d = %q, want suffix %q", i, lines[i], w)
		}
	}
}

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{Count(0, "port"), "0 ports"},
		{Count(1, "port"), "1 port"},
		{Count(uint64(1), "hit"), "1 hit"},
		{Count(uint64(2), "hit"), "2 hits"},
		{Count(1, "ignore entry"), "1 ignore entry"},
		{Count(3, "ignore entry"), "3 ignore entries"},
		{Count(2, "key"), "2 keys"},
		{Count(2, "address"), "2 addresses"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
