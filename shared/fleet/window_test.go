package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/portsentry/pipeline/shared/event"
)

// fault is what becomes of a decision's first publication.
type fault int

const (
	sent    fault = iota
	held          // stored; acknowledged once release is closed
	lost          // never reaches the server; its acknowledgement fails
	ackLost       // stored, but its acknowledgement fails
)

// faulty publishes through the real JetStream context, but the first
// publication of a decision may meet a fault.
type faulty struct {
	js      jetstream.JetStream
	fault   func(subject string, unblock bool) fault
	release chan struct{}

	mu    sync.Mutex
	times map[string]int // publications of each subject and kind
	total int
}

type fakeAck struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *fakeAck) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *fakeAck) Err() <-chan error            { return f.err }
func (f *fakeAck) Msg() *nats.Msg               { return f.msg }

func (p *faulty) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	unblock := strings.Contains(string(m.Data), `"kind":"unblock"`)
	key := fmt.Sprint(m.Subject, unblock)
	p.mu.Lock()
	p.times[key]++
	p.total++
	f := sent
	if p.times[key] == 1 {
		f = p.fault(m.Subject, unblock)
	}
	p.mu.Unlock()
	fake := &fakeAck{msg: m, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	if f == lost {
		fake.err <- errors.New("lost on the way")
		return fake, nil
	}
	real, err := p.js.PublishMsgAsync(m, opts...)
	if err != nil || f == sent {
		return real, err
	}
	go func() {
		if f == held {
			<-p.release
		}
		select {
		case a := <-real.Ok():
			if f == ackLost {
				fake.err <- errors.New("acknowledgement lost")
			} else {
				fake.ok <- a
			}
		case err := <-real.Err():
			fake.err <- err
		}
	}()
	return fake, nil
}

func (p *faulty) published() (total int, times map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, maps.Clone(p.times)
}

func windowTarget(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(i / 256), byte(i % 256)})
}

func windowSubject(i int) string { return DecisionSubject("host-a", event.ModeATCP, windowTarget(i)) }

// startFaulty returns an Outbox publishing through p to a new server.
func startFaulty(t *testing.T, p *faulty) (*Outbox, *nats.Conn, jetstream.Stream) {
	t.Helper()
	s := runServer(t, t.TempDir(), -1)
	p.times = map[string]int{}
	out, err := newOutbox(dial(t, s), "host-a", "ps-block", t.Logf, func(js jetstream.JetStream) publisher { p.js = js; return p })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	nc := dial(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ensureStream(context.Background(), nc, js); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), Stream)
	if err != nil {
		t.Fatal(err)
	}
	return out, nc, st
}

// storedSeqs returns the stream sequence of the message on each of the
// subjects of decisions 0 to n-1 (0: none), the kind stored there, and
// how many messages the stream ever stored.
func storedSeqs(t *testing.T, st jetstream.Stream, n int) (seq []uint64, unblock []bool, stored uint64) {
	t.Helper()
	ctx := context.Background()
	seq, unblock = make([]uint64, n), make([]bool, n)
	for i := range n {
		m, err := st.GetLastMsgForSubject(ctx, windowSubject(i))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		seq[i], unblock[i] = m.Sequence, strings.Contains(string(m.Data), `"kind":"unblock"`)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return seq, unblock, info.State.LastSeq
}

// The window slides: with one acknowledgement held, the decisions after
// it go on leaving, up to maxInFlight published and not acknowledged, and
// no more; once it comes, every decision is stored once, in order.
func TestOutboxWindowSlides(t *testing.T) {
	const n, slow = 2*maxInFlight + 100, 10
	p := &faulty{release: make(chan struct{}), fault: func(subject string, _ bool) fault {
		if subject == windowSubject(slow) {
			return held
		}
		return sent
	}}
	out, _, st := startFaulty(t, p)
	until := time.Now().Add(time.Hour)
	for i := range n {
		out.Add(decision(event.KindBlock, windowTarget(i).String(), until, "host-a"))
	}
	waitFor(t, "a full window after the held acknowledgement", func() bool { total, _ := p.published(); return total >= slow+maxInFlight })
	time.Sleep(300 * time.Millisecond) // more would leave now
	if total, _ := p.published(); total != slow+maxInFlight {
		t.Errorf("%d published while decision %d's acknowledgement is held, want %d (those before it, and a window from it)", total, slow, slow+maxInFlight)
	}
	if w := out.Waiting(); w != n-slow {
		t.Errorf("%d decisions wait, want %d (the stored ones before the held acknowledgement left)", w, n-slow)
	}
	close(p.release)
	waitFor(t, "the outbox to empty", func() bool { return out.Waiting() == 0 })
	seq, _, last := storedSeqs(t, st, n)
	if last != n {
		t.Errorf("the stream stored %d messages, want %d", last, n)
	}
	for i, s := range seq {
		if s != uint64(i+1) {
			t.Fatalf("decision %d stored as message %d, want %d", i, s, i+1)
		}
	}
	if total, _ := p.published(); total != n {
		t.Errorf("%d publications, want %d: none again", total, n)
	}
}

// After a failed publication the window is sent again from the first
// decision not stored: what was stored is stored once, what was lost is
// stored, and a decision lost after which a newer one on its subject was
// stored is not sent again. Decision 0's acknowledgement is held until the
// window is full, so that the failure meets a full window.
func TestOutboxResendsFromFirstNotStored(t *testing.T) {
	const n, bad = 1000, 100
	cases := []struct {
		name        string
		fault       fault
		unblockNext bool // decision bad+1 unblocks decision bad's target
		wantLast    uint64
		wantTimes   int // publications of decision bad
	}{
		{"acknowledgement lost, stored", ackLost, false, n, 2},
		{"lost before the server", lost, false, n, 2},
		{"block lost, its unblock stored", lost, true, n - 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &faulty{release: make(chan struct{}), fault: func(subject string, unblock bool) fault {
				switch {
				case subject == windowSubject(0):
					return held
				case subject == windowSubject(bad) && !unblock:
					return c.fault
				}
				return sent
			}}
			out, nc, st := startFaulty(t, p)
			r := follow(t, nc, "host-b/ps-block")
			time.Sleep(300 * time.Millisecond) // the follower is there
			until := time.Now().Add(time.Hour)
			for i := range n {
				if c.unblockNext && i == bad+1 {
					out.Add(decision(event.KindUnblock, windowTarget(bad).String(), time.Time{}, "host-a"))
					continue
				}
				out.Add(decision(event.KindBlock, windowTarget(i).String(), until, "host-a"))
			}
			waitFor(t, "a full window", func() bool { total, _ := p.published(); return total >= min(n, maxInFlight) })
			close(p.release)
			waitFor(t, "the outbox to empty", func() bool { return out.Waiting() == 0 })

			seq, unblock, last := storedSeqs(t, st, n)
			if last != c.wantLast {
				t.Errorf("the stream stored %d messages, want %d: each decision once", last, c.wantLast)
			}
			for i, s := range seq {
				switch {
				case c.unblockNext && i == bad+1:
					if s != 0 {
						t.Errorf("decision %d's target has message %d, want none", i, s)
					}
				case s == 0:
					t.Errorf("decision %d was not stored", i)
				case c.fault == ackLost && s != uint64(i+1):
					t.Errorf("decision %d stored as message %d, want %d", i, s, i+1)
				}
			}
			if c.unblockNext && !unblock[bad] {
				t.Errorf("the stream keeps the block of %s, not its unblock", windowTarget(bad))
			}
			if _, times := p.published(); times[fmt.Sprint(windowSubject(bad), false)] != c.wantTimes {
				t.Errorf("decision %d published %d times, want %d", bad, times[fmt.Sprint(windowSubject(bad), false)], c.wantTimes)
			}

			// A member receives each stored decision once, and of the
			// target blocked then unblocked only the unblock.
			lines := receivedOnce(t, r, "the member", int(c.wantLast))
			if c.unblockNext {
				var about []string
				for _, l := range lines {
					if strings.Contains(l, `"target":"`+windowTarget(bad).String()+`"`) {
						about = append(about, l)
					}
				}
				if len(about) != 1 || !strings.Contains(about[0], `"kind":"unblock"`) {
					t.Errorf("the member got %q about %s, want only the unblock", about, windowTarget(bad))
				}
			}
		})
	}
}
