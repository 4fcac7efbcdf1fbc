package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/shared/event"
)

// admit is the gate's pass for addr, which Add requires.
func admit(addr netip.Addr) gate.Pass {
	p, err := gate.New(nil).Admit(addr, 21, event.ModeATCP, gate.Decision)
	if err != nil {
		panic(err)
	}
	return p
}

// TestAddNeedsPass: without the gate's Pass nothing is buffered.
func TestAddNeedsPass(t *testing.T) {
	a := New(&fakeConn{}, Config{}, time.Now)
	if err := a.Add(gate.Pass{}, time.Time{}); !errors.Is(err, gate.ErrNoPass) || a.Pending() != 0 {
		t.Fatalf("Add without a pass: %v, %d pending", err, a.Pending())
	}
}

// fakeConn records what the action would send; it stands in for the
// kernel where only the batching is under test.
type fakeConn struct {
	Conn      // methods the tests do not reach panic through the nil interface
	msgs      []int
	batches   [][]int
	flushErr  error
	delErr    error
	deletions int
}

func (f *fakeConn) SetAddElements(_ *nftables.Set, els []nftables.SetElement) error {
	f.msgs = append(f.msgs, len(els))
	return nil
}

func (f *fakeConn) SetDeleteElements(*nftables.Set, []nftables.SetElement) error {
	f.deletions++
	return nil
}

func (f *fakeConn) Flush() error {
	f.batches = append(f.batches, f.msgs)
	f.msgs = nil
	if f.deletions > 0 {
		f.deletions = 0
		return f.delErr
	}
	return f.flushErr
}

func TestFlushBatching(t *testing.T) {
	tests := []struct {
		n4, n6      int
		wantBatches int
	}{
		{0, 0, 1},
		{1, 1, 1},
		{maxMsgElems, 0, 1},
		{maxBatchElems, 0, 2}, // a full batch goes at once, then an empty final Flush
		{50_000, 50_000, 5},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d+%d", tc.n4, tc.n6), func(t *testing.T) {
			f := &fakeConn{}
			a := New(f, Config{}, time.Now)
			for i := range tc.n4 {
				_ = a.Add(admit(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})), time.Time{})
			}
			for i := range tc.n6 {
				_ = a.Add(admit(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})), time.Time{})
			}
			if err := a.Flush(); err != nil {
				t.Fatal(err)
			}
			if len(f.batches) != tc.wantBatches {
				t.Errorf("%d transactions, want %d", len(f.batches), tc.wantBatches)
			}
			total := 0
			for _, b := range f.batches {
				inBatch := 0
				for _, m := range b {
					if m > maxMsgElems || m == 0 {
						t.Errorf("message with %d elements", m)
					}
					inBatch += m
				}
				if inBatch > maxBatchElems {
					t.Errorf("transaction with %d elements", inBatch)
				}
				total += inBatch
			}
			if total != tc.n4+tc.n6 || a.Pending() != 0 {
				t.Errorf("sent %d, pending %d; want %d, 0", total, a.Pending(), tc.n4+tc.n6)
			}
		})
	}
}

// An element list is one netlink attribute with a 16-bit length.
func TestMessageFitsAttribute(t *testing.T) {
	const ipv6ElemWithTimeout = 4 + (4 + 4 + 16) + (4 + 8)
	if maxMsgElems*ipv6ElemWithTimeout > 65535 {
		t.Fatalf("%d IPv6 elements take %d bytes, more than an attribute holds", maxMsgElems, maxMsgElems*ipv6ElemWithTimeout)
	}
}

func TestAddTimeout(t *testing.T) {
	now := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		until time.Time
		want  time.Duration
		err   error
	}{
		{"permanent", time.Time{}, 0, nil},
		{"hour", now.Add(time.Hour), time.Hour, nil},
		{"sub-millisecond rounds up", now.Add(10 * time.Microsecond), time.Millisecond, nil},
		{"ended", now, 0, ErrEnded},
		{"past", now.Add(-time.Hour), 0, ErrEnded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := New(&fakeConn{}, Config{}, func() time.Time { return now })
			err := a.Add(admit(netip.MustParseAddr("198.18.0.1")), tc.until)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				if a.Pending() != 0 {
					t.Fatal("ended block was buffered")
				}
				return
			}
			if got := a.pend4[0].Timeout; got != tc.want {
				t.Errorf("timeout %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSetFor(t *testing.T) {
	a := New(&fakeConn{}, Config{}, time.Now)
	for addr, want := range map[string]string{"198.18.0.1": Set4, "::ffff:198.18.0.1": Set4, "2001:db8::1": Set6} {
		if got := a.SetFor(netip.MustParseAddr(addr)); got != want {
			t.Errorf("SetFor(%s) = %s, want %s", addr, got, want)
		}
	}
	if a.Table() != DefaultTable {
		t.Errorf("table %q", a.Table())
	}
}

func TestDeleteError(t *testing.T) {
	f := &fakeConn{delErr: errors.New("netlink: boom")}
	a := New(f, Config{}, time.Now)
	if _, err := a.Delete(netip.MustParseAddr("198.18.0.1")); err == nil {
		t.Fatal("Delete hid a flush error")
	}
}
