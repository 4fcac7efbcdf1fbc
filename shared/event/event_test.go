package event

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDecodeValid(t *testing.T) {
	tm := time.Date(2026, 11, 24, 14, 29, 45, 57153000, time.UTC)
	tests := []struct {
		name string
		line string
		want Event
	}{
		{"spec hit", `{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.057153Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}`,
			Event{Kind: KindHit, Time: tm, Sensor: "ps-sniff", Mode: ModeATCP, Proto: ProtoTCP, Src: netip.MustParseAddr("198.18.0.1"), Sport: 41234, Dst: netip.MustParseAddr("198.18.0.2"), Dport: 21, Scan: ScanSYN, Flags: "S"}},
		{"spaces, unknown fields, nested unknown", ` { "extra" : {"a":[1,2]}, "v" : 1 , "kind":"hit","time":"2026-11-24T14:29:45.057153Z","mode":"udp","src":"2001:db8::1","sport":0,"dst":"2001:db8::2","dport":65535,"scan":"udp"} `,
			Event{Kind: KindHit, Time: tm, Mode: ModeUDP, Proto: ProtoUDP, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Dport: 65535, Scan: ScanUDP}},
		{"escaped sensor", `{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.057153Z","sensor":"a\"b","mode":"tcp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":2,"scan":"connect"}`,
			Event{Kind: KindHit, Time: tm, Sensor: `a"b`, Mode: ModeTCP, Proto: ProtoTCP, Src: netip.MustParseAddr("198.18.0.1"), Sport: 1, Dst: netip.MustParseAddr("198.18.0.2"), Dport: 2, Scan: ScanConnect}},
		{"mapped address taken as IPv4", `{"v":1,"kind":"unblock","time":"2026-11-24T14:29:45.057153Z","target":"::ffff:198.18.0.1","mode":"atcp"}`,
			Event{Kind: KindUnblock, Time: tm, Target: netip.MustParseAddr("198.18.0.1"), Mode: ModeATCP, Proto: ProtoTCP}},
		{"block with until", `{"v":1,"kind":"block","time":"2026-11-24T14:29:45.057153Z","target":"198.18.0.1","mode":"atcp","proto":"tcp","port":21,"scan":"syn","hits":1,"until":"2026-11-25T14:29:45Z"}`,
			Event{Kind: KindBlock, Time: tm, Target: netip.MustParseAddr("198.18.0.1"), Mode: ModeATCP, Proto: ProtoTCP, Port: 21, Scan: ScanSYN, Hits: 1, Until: time.Date(2026, 11, 25, 14, 29, 45, 0, time.UTC)}},
		{"decision naming its host", `{"v":1,"kind":"run","time":"2026-11-24T14:29:45.057153Z","target":"198.18.0.1","mode":"audp","host":"web_01-a","port":7,"hits":2}`,
			Event{Kind: KindRun, Time: tm, Target: netip.MustParseAddr("198.18.0.1"), Mode: ModeAUDP, Proto: ProtoUDP, Port: 7, Hits: 2, Host: "web_01-a"}},
		{"time with offset becomes UTC", `{"v":1,"kind":"alert","time":"2026-11-24T15:29:45.057153+01:00","target":"198.18.0.1","mode":"sudp"}`,
			Event{Kind: KindAlert, Time: tm, Target: netip.MustParseAddr("198.18.0.1"), Mode: ModeSUDP, Proto: ProtoUDP}},
		{"result", `{"v":1,"kind":"result","time":"2026-11-24T14:29:45.057153Z","target":"198.18.0.1","mode":"atcp","action":"nft","ok":true,"detail":"added to set portsentry4"}`,
			Event{Kind: KindResult, Time: tm, Target: netip.MustParseAddr("198.18.0.1"), Mode: ModeATCP, Proto: ProtoTCP, Action: "nft", OK: true, Detail: "added to set portsentry4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.line + "\n"))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Decode:\n got %+v\nwant %+v", got, tt.want)
			}
			// What we write, we read back the same.
			again, err := Decode(Encode(&got))
			if err != nil {
				t.Fatalf("Decode(Encode): %v", err)
			}
			if again != got {
				t.Fatalf("round trip:\n got %+v\nwant %+v", again, got)
			}
		})
	}
}

// TestDecodeInvalid reads testdata/invalid.txt: each case is a "# reason
// substring" line followed by the line to decode.
func TestDecodeInvalid(t *testing.T) {
	f, err := os.Open("testdata/invalid.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var want string
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# ") {
			want = strings.TrimPrefix(line, "# ")
			continue
		}
		n++
		_, err := Decode([]byte(line))
		if err == nil {
			t.Errorf("Decode(%s) accepted, want error containing %q", line, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%s) = %v, want error containing %q", line, err, want)
		}
	}
	if n < 20 {
		t.Fatalf("only %d cases read", n)
	}
}

func TestDecodeHostileBytes(t *testing.T) {
	valid := `{"v":1,"kind":"hit","time":"2026-11-24T14:29:45Z","mode":"tcp","src":"198.18.0.1","sport":1,"dst":"198.18.0.2","dport":2,"scan":"connect"}`
	tests := map[string]struct {
		line []byte
		want string
	}{
		"NUL":          {[]byte(strings.Replace(valid, "connect", "con\x00nect", 1)), "NUL"},
		"invalid UTF8": {[]byte(strings.Replace(valid, "connect", "con\xffnect", 1)), "UTF-8"},
		"1 MiB":        {bytes.Repeat([]byte("a"), 1<<20), "too long"},
		"truncated":    {[]byte(valid[:len(valid)-10]), "not a JSON object"},
	}
	for name, tt := range tests {
		if _, err := Decode(tt.line); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Decode = %v, want error containing %q", name, err, tt.want)
		}
	}
}

func TestEncodeEscapesAndBounds(t *testing.T) {
	e := Event{Kind: KindResult, Time: time.Unix(0, 0), Target: netip.MustParseAddr("2001:db8::1"), Mode: ModeTCP,
		Action: "run", Detail: "quote\" newline\n bad\xff " + strings.Repeat("x", 5000)}
	line := Encode(&e)
	if len(line) > MaxLine {
		t.Fatalf("line of %d bytes", len(line))
	}
	if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("line %q must hold exactly its final newline", line)
	}
	if !json.Valid(line) {
		t.Fatalf("not JSON: %q", line)
	}
	got, err := Decode(line)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Detail, "quote\" newline\n bad\ufffd ") {
		t.Fatalf("detail = %q", got.Detail[:30])
	}
}

func TestHitDecodeAllocs(t *testing.T) {
	line := []byte(`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.057153Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}` + "\n")
	var e Event
	allocs := testing.AllocsPerRun(100, func() {
		if err := DecodeInto(&e, line); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per hit, want 0", allocs)
	}
}

func BenchmarkDecodeHit(b *testing.B) {
	line := []byte(`{"v":1,"kind":"hit","time":"2026-11-24T14:29:45.057153Z","sensor":"ps-sniff","mode":"atcp","proto":"tcp","src":"198.18.0.1","sport":41234,"dst":"198.18.0.2","dport":21,"scan":"syn","flags":"S"}` + "\n")
	var e Event
	var d Decoder
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if err := d.Decode(&e, line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBlock(b *testing.B) {
	e := Event{Kind: KindBlock, Time: time.Now(), Target: netip.MustParseAddr("198.18.0.1"), Mode: ModeATCP, Port: 21, Scan: ScanSYN, Hits: 1}
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = Append(buf[:0], &e)
	}
}

// TestAppendInt: numbers are written as strconv writes them, around every
// change of width.
func TestAppendInt(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535, 99999, 100000, 1<<31 - 1, -1} {
		if got, want := string(appendInt(nil, "k", n)), `,"k":`+strconv.Itoa(n); got != want {
			t.Errorf("appendInt(%d) = %s, want %s", n, got, want)
		}
	}
}

// spoofedLines are n hit lines as a flood of spoofed sources makes them:
// a new source each line (half of them IPv6, at random, as hitgen's), a new
// millisecond each,
// one after the other in memory as a reader's buffer holds them.
func spoofedLines(n int) [][]byte {
	var all []byte
	r := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for i := range n {
		e := Event{Kind: KindHit, Time: start.Add(time.Duration(i) * time.Millisecond), Sensor: "ps-sniff",
			Mode: ModeATCP, Proto: ProtoTCP, Sport: uint16(r.IntN(65536)), Dport: uint16(r.IntN(1024)), Scan: ScanSYN, Flags: "S"}
		if r.IntN(2) == 0 {
			var a [16]byte
			binary.BigEndian.PutUint64(a[:], 0x20010db8<<32|r.Uint64()>>32)
			binary.BigEndian.PutUint64(a[8:], r.Uint64())
			e.Src, e.Dst = netip.AddrFrom16(a), netip.MustParseAddr("2001:db8::2")
		} else {
			e.Src, e.Dst = netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(256)), byte(r.IntN(256))}), netip.MustParseAddr("198.18.0.2")
		}
		all = Append(all, &e)
	}
	return bytes.SplitAfter(all, []byte("\n"))[:n]
}

// BenchmarkDecodeSpoofed decodes a flood of spoofed sources' hits, whose
// sources and times no cache of the Decoder holds.
func BenchmarkDecodeSpoofed(b *testing.B) {
	lines := spoofedLines(1 << 16)
	var e Event
	var d Decoder
	i := 0
	for b.Loop() {
		if err := d.Decode(&e, lines[i&(len(lines)-1)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestEncodeExact: every line of testdata/encoded.txt, decoded, is written
// again byte for byte, by Append and by an Encoder that wrote the line
// before it (so its caches are warm and, with Echo, read the line itself).
func TestEncodeExact(t *testing.T) {
	data, err := os.ReadFile("testdata/encoded.txt")
	if err != nil {
		t.Fatal(err)
	}
	var enc Encoder
	var dec Decoder
	enc.Echo(&dec)
	for _, line := range strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n") {
		if !strings.HasSuffix(line, "\n") {
			line += "\n"
		}
		var e Event
		if err := dec.Decode(&e, []byte(line)); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if got := string(Append(nil, &e)); got != line {
			t.Errorf("Append:\n got %s want %s", got, line)
		}
		if e.Kind == KindHit {
			// A judge's decision about the hit just read, as with Echo.
			d := Event{Kind: KindBlock, Time: e.Time, Target: e.Src, Mode: e.Mode, Proto: e.Proto, Port: e.Dport, Scan: e.Scan, Hits: 1, Host: "fw-1"}
			if got, want := string(enc.Append(nil, &d)), string(Append(nil, &d)); got != want {
				t.Errorf("Encoder with Echo after %s got %s want %s", line, got, want)
			}
			continue
		}
		if got := string(enc.Append(nil, &e)); got != line {
			t.Errorf("Encoder:\n got %s want %s", got, line)
		}
	}
}

// BenchmarkEchoSpoofed is a judge's reading of a flood of spoofed sources'
// hits and writing of a block for each, with Echo: DecodeSpoofed's work
// and the decisions' encoding.
func BenchmarkEchoSpoofed(b *testing.B) {
	lines := spoofedLines(1 << 16)
	var e Event
	var d Decoder
	var enc Encoder
	enc.Echo(&d)
	buf := make([]byte, 0, 512)
	i := 0
	for b.Loop() {
		if err := d.Decode(&e, lines[i&(len(lines)-1)]); err != nil {
			b.Fatal(err)
		}
		decision := Event{Kind: KindBlock, Time: e.Time, Target: e.Src, Mode: e.Mode, Proto: e.Proto, Port: e.Dport, Scan: e.Scan, Hits: 1, Host: "vm"}
		buf = enc.Append(buf[:0], &decision)
		i++
	}
}
