package fleet

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

// FuzzCheckDecision: whatever a message holds, a decision accepted is one
// line of at most event.MaxLine bytes that decodes to a block, run or
// unblock naming the host of its subject, on the one subject of its host,
// mode and target.
func FuzzCheckDecision(f *testing.F) {
	until := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	good := decision(event.KindBlock, "198.18.0.1", until, "host-a")
	f.Add(DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("198.18.0.1")), good)
	f.Add(DecisionSubject("host-a", event.ModeATCP, netip.MustParseAddr("2001:db8::1")), decision(event.KindUnblock, "2001:db8::1", time.Time{}, "host-a"))
	f.Add("portsentry.decision.host-b.atcp.198-18-0-1", good)
	f.Add("portsentry.decision.>", append(good, good...))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		var ev event.Event
		line, err := checkDecision(subject, data, &ev)
		if err != nil {
			return
		}
		if len(line)+1 > event.MaxLine || bytes.IndexByte(line, '\n') >= 0 {
			t.Fatalf("accepted %d bytes with a newline or too long", len(line))
		}
		again, err := event.Decode(line)
		if err != nil {
			t.Fatalf("accepted a line that does not decode: %v", err)
		}
		if again.Kind != event.KindBlock && again.Kind != event.KindRun && again.Kind != event.KindUnblock {
			t.Fatalf("accepted a %s line", again.Kind)
		}
		if !event.ValidHost(again.Host) || subject != DecisionSubject(again.Host, again.Mode, again.Target) {
			t.Fatalf("accepted host %q on subject %q", again.Host, subject)
		}
	})
}

// FuzzParseMember: a member's value gives at most maxMemberAddrs valid
// addresses without zones, whatever it holds.
func FuzzParseMember(f *testing.F) {
	f.Add([]byte("198.18.0.2 2001:db8::2"))
	f.Add([]byte("198.18.0.2 nonsense fe80::1%eth0 ::ffff:198.18.0.3"))
	f.Add(bytes.Repeat([]byte("198.18.0.9 "), 300))
	f.Fuzz(func(t *testing.T, value []byte) {
		addrs, _ := parseMember(value)
		if len(addrs) > maxMemberAddrs {
			t.Fatalf("%d addresses", len(addrs))
		}
		for _, a := range addrs {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("address %v", a)
			}
		}
	})
}
