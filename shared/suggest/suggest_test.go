package suggest

import "testing"

func TestNearest(t *testing.T) {
	keys := []string{"NFT_BLOCK", "NFT_TABLE", "BLOCK_UDP", "BLOCK_TCP", "TCP_PORTS", "UDP_PORTS", "KILL_ROUTE", "KILL_UNROUTE", "SCAN_TRIGGER"}
	for _, tc := range []struct {
		word, want string
		ok         bool
	}{
		{"NFT_BLOK", "NFT_BLOCK", true},       // a letter missing
		{"block_udp", "BLOCK_UDP", true},      // case only
		{"BLOCK_UPD", "BLOCK_UDP", true},      // two letters swapped
		{"SCAN_TRIGER", "SCAN_TRIGGER", true}, // a letter missing
		{"TCP_PORT", "TCP_PORTS", true},
		{"KILL_UNROUT", "KILL_UNROUTE", true},
		{"NFT_BLOCKS", "NFT_BLOCK", true},
		{"RESOLVE_HOST", "", false}, // nothing near
		{"FOO", "", false},
		{"", "", false},
	} {
		got, ok := Nearest(tc.word, keys)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("Nearest(%q) = %q, %v; want %q, %v", tc.word, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"A", "", 1}, {"", "AB", 2}, {"AB", "BA", 1}, {"KITTEN", "SITTING", 3},
		{"NFT_BLOK", "NFT_BLOCK", 1}, {"CA", "ABC", 3},
	} {
		if d := distance(tc.a, tc.b); d != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
		if d := distance(tc.b, tc.a); d != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.b, tc.a, d, tc.d)
		}
	}
}
