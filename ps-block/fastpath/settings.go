// Package fastpath is ps-block's kernel fast path: rules and sets in
// ps-block's own nftables table that recognise a probe as the sensors do
// (same keys, same modes, SCAN_TRIGGER's meaning) and add its source to a
// block map from the packet itself, before any process runs, with the
// guard's protected addresses tested first. Build turns the configuration
// into a ruleset description; Install, Disarm and the sync functions apply
// it through a narrow Conn; Watcher lists what the kernel blocked so that
// ps-block reports it and carries out its other actions.
package fastpath

import (
	"fmt"
	"time"

	"github.com/portsentry/pipeline/shared/config"
)

// Proto is a watched transport protocol.
type Proto uint8

// The protocols the fast path watches.
const (
	TCP Proto = iota + 1
	UDP
)

func (p Proto) String() string {
	if p == TCP {
		return "tcp"
	}
	return "udp"
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// Watch is one sensor mode as the kernel applies it.
type Watch struct {
	Mode  string // stcp, atcp, sudp, audp
	Proto Proto
	Ports []PortRange // sorted, disjoint, not adjacent
}

// Settings is what Build needs, all from config.Config.
type Settings struct {
	Table    string
	Forward  bool
	Watches  []Watch
	Trigger  int           // SCAN_TRIGGER
	Idle     time.Duration // STATE_IDLE_TIMEOUT
	Duration time.Duration // BLOCK_DURATION; 0: permanent
	Rate     float64       // BLOCK_RATE; 0: unlimited
	Burst    int           // BLOCK_BURST
}

// maxTrigger bounds the chain of stage sets: SCAN_TRIGGER above it is left
// to the pipeline (each grace probe costs one set in the kernel).
const maxTrigger = 16

// FromConfig derives the fast path's settings. notes say, for the
// administrator's log, which configured mode gets no fast path and why; no
// Watches means the fast path is off.
func FromConfig(cfg *config.Config) (s Settings, notes []string) {
	s = Settings{Table: cfg.NFTTable, Forward: cfg.NFTForward, Trigger: cfg.ScanTrigger,
		Idle: cfg.StateIdleTimeout, Duration: cfg.BlockDuration, Rate: cfg.BlockRate, Burst: cfg.BlockBurst}
	if !cfg.NFTBlock || len(cfg.FastPath) == 0 {
		return s, nil
	}
	if cfg.ScanTrigger > maxTrigger {
		return s, []string{fmt.Sprintf("SCAN_TRIGGER=%d is above the %d grace probes the kernel counts: the pipeline alone decides", cfg.ScanTrigger, maxTrigger)}
	}
	for _, m := range cfg.FastPath {
		w := Watch{Mode: m, Proto: TCP}
		block := cfg.BlockTCP
		if m == "sudp" || m == "audp" {
			w.Proto, block = UDP, cfg.BlockUDP
		}
		if block != 1 {
			notes = append(notes, fmt.Sprintf("BLOCK_%s=%d: no fast path for mode %s (alerts and commands are the pipeline's)", map[Proto]string{TCP: "TCP", UDP: "UDP"}[w.Proto], block, m))
			continue
		}
		switch m {
		case "stcp":
			w.Ports = ranges(cfg.TCPPorts)
		case "sudp":
			w.Ports = ranges(cfg.UDPPorts)
		case "atcp":
			w.Ports = below(cfg.AdvancedPortsTCP, cfg.AdvancedExcludeTCP)
		case "audp":
			w.Ports = below(cfg.AdvancedPortsUDP, cfg.AdvancedExcludeUDP)
		}
		if len(w.Ports) == 0 {
			notes = append(notes, fmt.Sprintf("mode %s watches no port: no fast path for it", m))
			continue
		}
		s.Watches = append(s.Watches, w)
	}
	return s, notes
}

// ranges turns a sorted, unique port list into ranges.
func ranges(ports []uint16) []PortRange {
	var out []PortRange
	for _, p := range ports {
		if n := len(out); n > 0 && uint32(out[n-1].Hi)+1 == uint32(p) {
			out[n-1].Hi = p
			continue
		}
		out = append(out, PortRange{p, p})
	}
	return out
}

// below is the advanced modes' watch: every port from 1 to limit-1 except
// the sorted exclude list.
func below(limit int, exclude []uint16) []PortRange {
	var out []PortRange
	next := 1
	for _, x := range exclude {
		if int(x) >= limit {
			break
		}
		if int(x) > next {
			out = append(out, PortRange{uint16(next), x - 1})
		}
		next = int(x) + 1
	}
	if next <= limit-1 {
		out = append(out, PortRange{uint16(next), uint16(limit - 1)})
	}
	return out
}
