package event

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDecodeHitTakesAppended: every hit Append writes is read by the
// template, to the event written; otherwise a flood would silently take the
// slower path.
func TestDecodeHitTakesAppended(t *testing.T) {
	at := time.Date(2026, 11, 24, 14, 29, 45, 57153000, time.UTC)
	hits := []Event{
		{Kind: KindHit, Time: at, Sensor: "ps-sniff", Mode: ModeATCP, Proto: ProtoTCP, Src: netip.MustParseAddr("198.18.0.1"), Sport: 41234, Dst: netip.MustParseAddr("198.18.0.2"), Dport: 21, Scan: ScanSYN, Flags: "S"},
		{Kind: KindHit, Time: at.Truncate(time.Second), Sensor: "ps-listen", Mode: ModeUDP, Proto: ProtoUDP, Src: netip.MustParseAddr("2001:db8::1"), Sport: 0, Dst: netip.MustParseAddr("2001:db8::2"), Dport: 65535, Scan: ScanUDP},
		{Kind: KindHit, Time: MinTime, Sensor: "ps-sniff", Mode: ModeSTCP, Proto: ProtoTCP, Src: netip.MustParseAddr("2001:db8:853b:797e:2e9b:79db:553:9b95"), Sport: 9, Dst: netip.MustParseAddr("2001:db8::2"), Dport: 10, Scan: ScanXmas, Flags: "FPU"},
		{Kind: KindHit, Time: MaxTime.Add(-time.Nanosecond), Sensor: "ps-sniff", Mode: ModeATCP, Proto: ProtoTCP, Src: netip.MustParseAddr("100.64.0.1"), Sport: 1, Dst: netip.MustParseAddr("198.18.0.2"), Dport: 1, Scan: ScanOther, Flags: "SAEC"},
		{Kind: KindHit, Time: at, Sensor: "ps-sniff", Mode: ModeAUDP, Proto: ProtoUDP, Src: netip.MustParseAddr("198.18.0.1"), Sport: 100, Dst: netip.MustParseAddr("198.18.0.2"), Dport: 1000, Scan: ScanUDP},
	}
	for _, want := range hits {
		line := Append(nil, &want)
		var got Event
		var d Decoder
		if !d.decodeHit(&got, line[:len(line)-1]) {
			t.Errorf("template refused %s", line)
			continue
		}
		if got != want {
			t.Errorf("template read %s as %+v, want %+v", line, got, want)
		}
	}
}

// TestDecodeHitLeavesOthers: lines off the template, valid or not, are left
// to the general path, which reads them as before.
func TestDecodeHitLeavesOthers(t *testing.T) {
	const ok = `{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`
	tests := []struct {
		line  string
		valid bool // for the general path
	}{
		{`{"v":1, "kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, true},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","mode":"atcp","sensor":"ps-sniff","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, true},
		{ok + "\r", true},
		{ok + " ", true},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45+00:00","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, true},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"my-sensor","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, true},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S","extra":1}`, true},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sn\u0069ff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, true},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":1e3,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":041,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":65536,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"udp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"audp","proto":"udp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"udp","flags":"S"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"2001:db8::2","dport":21,"scan":"syn","flags":"S"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"fe80::1%eth0","sport":41234,"dst":"2001:db8::2","dport":21,"scan":"syn","flags":"S"}`, false},
		{`{"v":1,"kind":"hit","time":"2200-01-01T00:00:00Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"SX"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"none"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn"}`, false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp\u0000","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn"}`, false},
		{"{\"v\":1,\"kind\":\"hit\",\"time\":\"2026-11-24T14:29:45Z\",\"sensor\":\"ps-sniff\",\"mode\":\"udp\x00\x00\x00\x00\",\"proto\":\"udp\",\"src\":\"198.18.0.1\",\"sport\":41234,\"dst\":\"198.18.0.2\",\"dport\":21,\"scan\":\"udp\"}", false},
		{`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"`, false},
	}
	for _, tt := range tests {
		var e Event
		var d Decoder
		if d.decodeHit(&e, []byte(tt.line)) {
			t.Errorf("template took %s", tt.line)
		}
		if e != (Event{}) {
			t.Errorf("template left %+v from %s", e, tt.line)
		}
		if _, err := Decode([]byte(tt.line)); (err == nil) != tt.valid {
			t.Errorf("Decode(%s) = %v, want valid %v", tt.line, err, tt.valid)
		}
	}
}

// FuzzDecodeHit: a line the template takes, the general path reads to the
// same event, whatever line the same Decoder read before it (its caches).
func FuzzDecodeHit(f *testing.F) {
	file, err := os.Open("testdata/valid.txt")
	if err != nil {
		f.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	file.Close()
	lines = append(lines, []byte(`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.1Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"2001:DB8::0:1","sport":0,"dst":"2001:db8::2","dport":9,"scan":"fin","flags":"F"}`))
	for _, a := range lines {
		for _, b := range lines[:2] {
			f.Add(a, b)
			f.Add(b, a)
		}
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		var d Decoder
		var read []Event // the hits read so far
		for _, line := range [][]byte{first, second} {
			var fast Event
			if !d.decodeHit(&fast, line) {
				continue
			}
			read = append(read, fast)
			var slow Event
			if err := decodeFields(&slow, line); err != nil {
				t.Fatalf("template took what the general path refuses (%v): %q", err, line)
			}
			if fast != slow {
				t.Fatalf("template read %+v, the general path %+v, from %q", fast, slow, line)
			}
			// A decision about the source of this hit or of the one
			// before, written by an Encoder that echoes the texts read,
			// is the line Append writes.
			var enc Encoder
			enc.Echo(&d)
			for _, h := range read {
				block := Event{Kind: KindBlock, Time: h.Time, Target: h.Src, Mode: h.Mode, Port: h.Dport, Scan: h.Scan, Hits: 1}
				if got, want := enc.Append(nil, &block), Append(nil, &block); string(got) != string(want) {
					t.Fatalf("echoed %s, want %s, after %q", got, want, line)
				}
			}
		}
	})
}

// TestEncoderEcho: the text of the source and the time read is copied
// only for that address and time, and only when it is their own form.
func TestEncoderEcho(t *testing.T) {
	times := []string{"2026-11-24T14:29:45Z", "2026-11-24T14:29:45.5Z", "2026-11-24T14:29:45.500Z", "2026-11-24T14:29:45.000Z", "2026-11-24T14:29:45.123456789Z"}
	for i, src := range []string{"198.18.0.1", "2001:db8::1", "2001:DB8::1", "2001:db8:0::1", "2001:0db8::1", "::ffff:198.18.0.1", "2001:db8:0:0:1:0:0:1"} {
		line := `{"v":1,"kind":"hit","time":"` + times[i%len(times)] + `","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"` + src + `","sport":1,"dst":"` + map[bool]string{true: "198.18.0.2", false: "2001:db8::2"}[strings.Contains(src, ".")] + `","dport":21,"scan":"syn","flags":"S"}`
		var d Decoder
		var hit Event
		if err := d.Decode(&hit, []byte(line)); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var enc Encoder
		enc.Echo(&d)
		for _, target := range []netip.Addr{hit.Src, netip.MustParseAddr("2001:db8::99"), netip.MustParseAddr("198.18.0.99")} {
			block := Event{Kind: KindBlock, Time: hit.Time, Target: target, Mode: ModeATCP, Port: 21, Hits: 1}
			got, want := enc.Append(nil, &block), Append(nil, &block)
			if string(got) != string(want) {
				t.Errorf("src %s: echoed %s, want %s", src, got, want)
			}
		}
	}
}

// TestDecoderRemembers: a Decoder reading lines one after another (its
// caches of the second, the addresses and the segments warm) reads each as
// a fresh one does.
func TestDecoderRemembers(t *testing.T) {
	lines := []string{
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.5Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.3","sport":2,"dst":"198.18.0.2","dport":22,"scan":"syn","flags":"S"}`,
		// The same end on a UDP hit: flags are refused there.
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"audp","proto":"udp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"audp","proto":"udp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"udp"}`,
		// The same middle and end, the families of the addresses apart.
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		// The end followed by more.
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-sniff","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"} `,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:61Z","sensor":"ps-sniff","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-listen","mode":"audp","proto":"tcp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		// Each family's destination kept apart; texts that start as a
		// kept one and go on; a time cut short, or with ten digits.
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"2001:db8::12","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"198.18.0.1","sport":1,"dst":"198.18.0.22","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2x","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2:","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45","sensor":"ps-listen","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.1234567891Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"2001:db8::2","dport":21,"scan":"udp"}`,
		`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.123456789Z","sensor":"ps-listen","mode":"audp","proto":"udp","src":"2001:db8::1","sport":1,"dst":"198.18.0.2","dport":21,"scan":"udp"}`,
	}
	var d Decoder
	for _, l := range lines {
		var got, want Event
		errGot, errWant := d.Decode(&got, []byte(l)), DecodeInto(&want, []byte(l))
		if (errGot == nil) != (errWant == nil) || got != want {
			t.Errorf("%s: warm decoder %+v, %v; fresh %+v, %v", l, got, errGot, want, errWant)
		}
	}
}

// TestEncoderRemembers: one Encoder writing lines one after another (its
// caches of the seconds and of the middle warm) writes each as Append does.
func TestEncoderRemembers(t *testing.T) {
	at := time.Date(2026, 11, 24, 14, 29, 45, 0, time.UTC)
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")
	events := []Event{
		{Kind: KindBlock, Time: at, Target: a, Mode: ModeATCP, Host: "fw-1", Port: 21, Scan: ScanSYN, Hits: 1},
		{Kind: KindBlock, Time: at.Add(time.Millisecond), Target: b, Mode: ModeATCP, Host: "fw-1", Port: 22, Scan: ScanSYN, Hits: 2, Until: at.Add(time.Hour)},
		{Kind: KindUnblock, Time: at, Target: a, Mode: ModeATCP, Host: "fw-1"},
		{Kind: KindBlock, Time: at, Target: a, Mode: ModeAUDP, Host: "fw-1", Port: 53, Scan: ScanUDP, Hits: 1},
		{Kind: KindBlock, Time: at, Target: a, Mode: ModeAUDP, Host: "fw-2", Port: 53, Scan: ScanUDP, Hits: 1},
		{Kind: KindAlert, Time: at, Target: a, Mode: ModeAUDP, Port: 53, Hits: 3},
		{Kind: KindRun, Time: at, Target: b, Mode: ModeSTCP, Host: "fw-2", Port: 1, Hits: 1},
		{Kind: KindResult, Time: at, Target: b, Mode: ModeSTCP, Action: "nft", OK: true},
		{Kind: KindHit, Time: at, Sensor: "ps-sniff", Mode: ModeATCP, Proto: ProtoTCP, Src: a, Sport: 1, Dst: a, Dport: 2, Scan: ScanSYN, Flags: "S"},
		{Kind: KindUnblock, Time: at, Target: a, Mode: ModeSTCP, Host: "fw-2"},
		{Kind: KindBlock, Time: at, Target: a, Mode: ModeSTCP, Host: "fw-2", Port: 21, Scan: ScanSYN, Hits: 1},
	}
	var enc Encoder
	for _, e := range events {
		if got, want := enc.Append(nil, &e), Append(nil, &e); string(got) != string(want) {
			t.Errorf("warm encoder wrote %s, Append %s", got, want)
		}
	}
}
