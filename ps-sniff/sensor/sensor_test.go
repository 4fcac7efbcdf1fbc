package sensor

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/portsentry/pipeline/ps-sniff/decode"
	"github.com/portsentry/pipeline/ps-sniff/frag"
	"github.com/portsentry/pipeline/ps-sniff/listening"
	"github.com/portsentry/pipeline/shared/event"
)

// recorder is a Writer that records what it was asked, in order.
type recorder struct{ calls []string }

func (r *recorder) Write(line []byte) error {
	r.calls = append(r.calls, "write "+string(line))
	return nil
}

func (r *recorder) Flush() error {
	r.calls = append(r.calls, "flush")
	return nil
}

func syn(t *testing.T, src, dst string, dport uint16) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	tcp := &layers.TCP{SrcPort: 41234, DstPort: layers.TCPPort(dport), SYN: true, Window: 1024}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPacket(t *testing.T) {
	const local = "198.18.0.2"
	var listen listening.Static
	listen.TCP.Add(22)
	atcp := &Watch{Mode: event.ModeATCP, Advanced: true, Below: 1024}
	atcp.Ports.Add(113) // ADVANCED_EXCLUDE_TCP
	for _, tc := range []struct {
		name      string
		packet    []byte
		flushEach bool
		want      string // the writer's calls, then the OnHit call, joined by "|"
	}{
		{"hit, sent before the log line", syn(t, "198.18.0.1", local, 21), true,
			`write {"v":1,"kind":"hit",` + "|flush|onhit 198.18.0.1 21"},
		{"hit in replay: no flush per hit", syn(t, "198.18.0.1", local, 21), false,
			`write {"v":1,"kind":"hit",` + "|onhit 198.18.0.1 21"},
		{"listening port", syn(t, "198.18.0.1", local, 22), true, ""},
		{"excluded port", syn(t, "198.18.0.1", local, 113), true, ""},
		{"above ADVANCED_PORTS_TCP", syn(t, "198.18.0.1", local, 1024), true, ""},
		{"to another host", syn(t, "198.18.0.1", "198.18.0.3", 21), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			s := &Sensor{
				TCP:       atcp,
				IsLocal:   func(a netip.Addr) bool { return a == netip.MustParseAddr(local) },
				Listening: &listen,
				Decoder:   decode.New(frag.DefaultLimits),
				Out:       rec,
				FlushEach: tc.flushEach,
			}
			s.OnHit = func(e *event.Event) {
				rec.calls = append(rec.calls, "onhit "+e.Src.String()+" "+strconv.Itoa(int(e.Dport)))
			}
			if err := s.Packet(decode.LinkRaw, tc.packet, time.Unix(1e9, 0)); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(rec.calls, "|")
			if tc.want == "" {
				if got != "" {
					t.Fatalf("calls %q, want none", got)
				}
				return
			}
			prefix, rest, _ := strings.Cut(tc.want, "|")
			if !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, "|"+rest) {
				t.Fatalf("calls %q, want %q...|%s", got, prefix, rest)
			}
			if s.Hits != 1 {
				t.Fatalf("Hits = %d, want 1", s.Hits)
			}
		})
	}
}
