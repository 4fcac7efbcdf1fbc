package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/portsentry/pipeline/shared/event"
)

// splitter cuts what a transport.Sink flushes into whole lines: a Sink's
// buffer may cut a line between two writes, and the end waits here.
type splitter struct{ carry []byte }

// each calls fn with every whole line of p, without its newline.
func (s *splitter) each(p []byte, fn func(line []byte)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(s.carry)+len(p) <= event.MaxLine { // the stages write no longer line
				s.carry = append(s.carry, p...)
			}
			return
		}
		if len(s.carry) > 0 {
			s.carry = append(s.carry, p[:i]...)
			fn(s.carry)
			s.carry = s.carry[:0]
		} else {
			fn(p[:i])
		}
		p = p[i+1:]
	}
}

// Core publishes each line written to it as one message on a core NATS
// subject: hits and results, which need no keeping. While the server is
// away nats.go keeps up to 4 MiB of them; what overflows is counted and
// said, never waited for.
type Core struct {
	nc      *nats.Conn
	subject string
	split   splitter
	dropped int
	logf    func(format string, args ...any)
}

// NewCore returns a Core publishing on subject.
func NewCore(nc *nats.Conn, subject string, logf func(format string, args ...any)) *Core {
	return &Core{nc: nc, subject: subject, logf: logf}
}

// Write publishes the whole lines of p. It never fails: a stage's output
// to NATS goes on while the server is away.
func (c *Core) Write(p []byte) (int, error) {
	c.split.each(p, func(line []byte) {
		if err := c.nc.Publish(c.subject, line); err != nil {
			c.dropped++
		}
	})
	if c.dropped > 0 && c.nc.IsConnected() {
		c.logf("NATS %s: %d line(s) dropped while the server was away (more than %d bytes waited)", c.subject, c.dropped, maxReconnectBuf)
		c.dropped = 0
	}
	return len(p), nil
}

// Close sends what waits, for 2 s at most, and closes the connection.
func (c *Core) Close() error {
	err := c.nc.FlushTimeout(2 * time.Second)
	c.nc.Close()
	if err != nil {
		return fmt.Errorf("NATS %s: the last lines may not have left: %w", c.subject, err)
	}
	return nil
}

// maxOutbox bounds the decisions an Outbox keeps for the stream while the
// server is away; maxInFlight those published and not yet acknowledged
// (the window): at 10,000 a second it covers acknowledgements 200 ms late,
// as they are on a loaded machine (512 kept the pipe full only up to 51 ms,
// and the decisions waited); ackWait how long an acknowledgement may take.
const (
	maxOutbox   = 4 << 20
	maxInFlight = 2048
	ackWait     = 5 * time.Second
	// closeWait is how long Close goes on sending what waits.
	closeWait = 2 * time.Second
	// unblockKeep is how long the stream keeps an unblock: a member away
	// longer keeps its copy of the block until the block's own end.
	unblockKeep = 7 * 24 * time.Hour
)

type outMsg struct {
	subject, id string
	data        []byte
	until       time.Time
	unblock     bool
}

// flight is a published decision's acknowledgement: nil when there was
// nothing to send (the block ended before it left).
type flight struct {
	ack    jetstream.PubAckFuture
	failed bool // its error was received
}

// publisher publishes to the stream and acknowledges later: the
// JetStream context, or in tests one that loses acknowledgements.
type publisher interface {
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Outbox publishes decisions to the fleet's stream. Each is queued at once
// (the caller never waits for NATS) and published in order with a
// Nats-Msg-Id, so that one published again after a lost acknowledgement
// is stored once. Up to maxInFlight are published ahead of their
// acknowledgements, and each acknowledgement makes room for the next, so
// the pipe to the server never runs dry while decisions wait; a decision
// leaves the queue only when the server has stored it and every one before
// it. While the server is away up to 4 MiB of decisions wait; more are
// dropped, counted and said. A decision whose block ended meanwhile is not
// sent.
type Outbox struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	pub    publisher
	host   string // names the decisions that name none
	sender string // HeaderSender
	logf   func(format string, args ...any)
	split  splitter

	mu      sync.Mutex
	queue   []outMsg // its head is the window: flight[i] is queue[i]'s
	bytes   int
	dropped int
	ev      event.Event
	buf     []byte

	// The sending goroutine's (run's) own.
	flight []flight
	ready  bool // the stream was found or made
	ttl    bool // the stream expires messages one by one

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// NewOutbox returns an Outbox publishing as program on host.
func NewOutbox(nc *nats.Conn, host, program string, logf func(format string, args ...any)) (*Outbox, error) {
	return newOutbox(nc, host, program, logf, func(js jetstream.JetStream) publisher { return js })
}

// newOutbox is NewOutbox publishing through what wrap makes of the
// JetStream context.
func newOutbox(nc *nats.Conn, host, program string, logf func(format string, args ...any), wrap func(jetstream.JetStream) publisher) (*Outbox, error) {
	// The timeout fails an acknowledgement that never comes, so that
	// nats.go forgets it and the window is sent again.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(ackWait))
	if err != nil {
		return nil, fmt.Errorf("NATS JetStream: %w", err)
	}
	o := &Outbox{nc: nc, js: js, pub: wrap(js), host: host, sender: host + "/" + program, logf: logf,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go o.run()
	return o, nil
}

// Write queues the decisions among the whole lines of p (a transport.Sink
// writes to it). It never fails.
func (o *Outbox) Write(p []byte) (int, error) {
	o.split.each(p, func(line []byte) { o.Add(line) })
	return len(p), nil
}

// Add queues one line if it is a block, run or unblock: an alert acts on
// nothing, and other lines are not decisions. A decision that names no
// host is named by this one. Lines that are not valid events are not sent.
func (o *Outbox) Add(line []byte) {
	var ev event.Event
	if err := event.DecodeInto(&ev, line); err != nil {
		return
	}
	o.AddEvent(&ev)
}

// AddEvent is Add for a line its caller decoded already with
// event.DecodeInto (ps-block --fleet decodes each line once, for the fleet
// and for its blocker). ev is not changed.
func (o *Outbox) AddEvent(in *event.Event) {
	if in.Kind != event.KindBlock && in.Kind != event.KindRun && in.Kind != event.KindUnblock {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ev = *in
	ev := &o.ev
	if ev.Host == "" {
		ev.Host = o.host
	}
	o.buf = event.Append(o.buf[:0], ev)
	data := bytes.Clone(o.buf[:len(o.buf)-1])
	if o.bytes+len(data) > maxOutbox {
		o.dropped++
		return
	}
	o.queue = append(o.queue, outMsg{
		subject: DecisionSubject(ev.Host, ev.Mode, ev.Target),
		id:      msgID(o.buf[:0], ev),
		data:    data,
		until:   ev.Until,
		unblock: ev.Kind == event.KindUnblock,
	})
	o.bytes += len(data)
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// msgID is a decision's Nats-Msg-Id, built in b: its host, kind, mode,
// target and time.
func msgID(b []byte, ev *event.Event) string {
	b = append(append(b, ev.Host...), '|')
	b = append(append(b, ev.Kind.String()...), '|')
	b = append(append(b, ev.Mode.String()...), '|')
	b = append(ev.Target.AppendTo(b), '|')
	return string(ev.Time.AppendFormat(b, time.RFC3339Nano))
}

// Waiting is how many decisions wait for the server, in flight or not.
func (o *Outbox) Waiting() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// run sends until the stop, then what waits for closeWait at most. After a
// failure it tries again every 250 ms.
func (o *Outbox) run() {
	defer close(o.done)
	retry := time.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	var (
		said   time.Time // the last failure said: once, then every 10 s
		paused bool      // after a failure, until the next tick
		stop   = o.stop
		tick   = retry.C
		end    time.Time // after the stop: when sending ends
		ending <-chan time.Time
	)
	deadline := func() time.Time {
		if stop == nil {
			return end
		}
		return time.Now().Add(ackWait)
	}
	for {
		var err error
		if !paused {
			if err = o.publish(deadline()); err == nil {
				err = o.acknowledged(0)
			}
		}
		if err == nil {
			if stop == nil && o.Waiting() == 0 {
				return
			}
			var ok <-chan *jetstream.PubAck
			var failed <-chan error
			if len(o.flight) > 0 {
				ok, failed = o.flight[0].ack.Ok(), o.flight[0].ack.Err()
			}
			select {
			case <-ok:
				said = time.Time{}
				err = o.acknowledged(1)
			case err = <-failed:
				o.flight[0].failed = true
			case <-o.wake:
			case <-tick:
				paused = false
			case <-stop:
				stop, tick, paused = nil, nil, false
				end = time.Now().Add(closeWait)
				ending = time.After(closeWait)
			case <-ending:
				return
			}
		}
		if err != nil {
			o.recover(deadline())
			if stop == nil {
				return // stopping: no second try
			}
			if time.Since(said) >= 10*time.Second {
				o.logf("NATS stream %s: %v (%d decision(s) waiting; retrying)", Stream, err, o.Waiting())
				said = time.Now()
			}
			paused = true
		}
	}
}

// publish fills the window: it publishes in order the decisions that wait
// and are not in flight, until maxInFlight are.
func (o *Outbox) publish(deadline time.Time) error {
	o.mu.Lock()
	if o.dropped > 0 {
		o.logf("NATS stream %s: %d decision(s) dropped: more than %d bytes waited for the server", Stream, o.dropped, maxOutbox)
		o.dropped = 0
	}
	// Read without the lock below: Add only appends, and only this
	// goroutine takes decisions out.
	next := o.queue[len(o.flight):min(len(o.queue), maxInFlight)]
	o.mu.Unlock()
	if len(next) == 0 {
		return nil
	}
	if !o.nc.IsConnected() {
		return errors.New("server unreachable")
	}
	if !o.ready {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		ttl, err := ensureStream(ctx, o.nc, o.js)
		cancel()
		if err != nil {
			return err
		}
		o.ready, o.ttl = true, ttl
	}
	now := time.Now()
	for _, m := range next {
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.id), jetstream.WithExpectStream(Stream),
			// A retry inside nats.go would come after the decisions that
			// followed: a failure comes back here, which keeps the order.
			jetstream.WithRetryAttempts(0)}
		switch {
		case !m.until.IsZero() && !m.until.After(now):
			o.flight = append(o.flight, flight{}) // the block is over: nothing to tell
			continue
		case !m.until.IsZero() && o.ttl:
			opts = append(opts, jetstream.WithMsgTTL(max(m.until.Sub(now).Round(time.Second)+time.Second, time.Second)))
		case m.unblock && o.ttl:
			opts = append(opts, jetstream.WithMsgTTL(unblockKeep))
		}
		msg := &nats.Msg{Subject: m.subject, Data: m.data, Header: nats.Header{HeaderSender: []string{o.sender}}}
		f, err := o.pub.PublishMsgAsync(msg, opts...)
		if err != nil {
			return err
		}
		o.flight = append(o.flight, flight{ack: f})
	}
	return nil
}

// acknowledged takes the stored head of the window out of the queue: n
// decisions known stored, then each next one whose acknowledgement is
// there. It returns the error of the first that failed, then the head.
func (o *Outbox) acknowledged(n int) error {
	var err error
scan:
	for ; n < len(o.flight); n++ {
		if a := o.flight[n].ack; a != nil {
			select {
			case <-a.Ok():
			case err = <-a.Err():
				o.flight[n].failed = true
				break scan
			default:
				break scan
			}
		}
	}
	if n == 0 {
		return err
	}
	o.mu.Lock()
	for _, m := range o.queue[:n] {
		o.bytes -= len(m.data)
	}
	clear(o.queue[:n]) // the array keeps no data it no longer needs
	o.queue = o.queue[n:]
	o.mu.Unlock()
	clear(o.flight[:n])
	o.flight = o.flight[n:]
	return err
}

// recover follows a failed publication. It waits, until deadline at most,
// for the fate of the rest of the window; what is not known by then counts
// as not stored. The stored head leaves the queue, and so does a decision
// not stored on whose subject a later one was: published again it would
// replace the newer decision (a block retried after its unblock was
// stored would replace the unblock). The window is then empty: what
// remains is published again from the first not stored, and what the
// server stored without its acknowledgement arriving is recognised by its
// Nats-Msg-Id and stored once.
func (o *Outbox) recover(deadline time.Time) {
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	stored := make([]bool, len(o.flight))
wait:
	for i, f := range o.flight {
		switch {
		case f.ack == nil:
			stored[i] = true
		case f.failed:
		default:
			select {
			case <-f.ack.Ok():
				stored[i] = true
			case <-f.ack.Err():
			case <-timeout.C:
				break wait
			}
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	// From the window's end to its start: which subjects a later decision
	// was stored on, and the kept decisions moved to the window's end.
	later := map[string]bool{}
	first := slices.Index(stored, false)
	if first < 0 {
		first = len(stored)
	}
	superseded, w := 0, len(o.flight)
	for i := len(o.flight) - 1; i >= 0; i-- {
		m := o.queue[i]
		switch {
		case stored[i]:
			later[m.subject] = true
			if i > first {
				break // kept: sent again, stored once
			}
			o.bytes -= len(m.data)
			continue
		case later[m.subject]:
			superseded++
			o.bytes -= len(m.data)
			continue
		}
		w--
		o.queue[w] = m
	}
	clear(o.queue[:w])
	o.queue = o.queue[w:]
	clear(o.flight)
	o.flight = o.flight[:0]
	if superseded > 0 {
		o.logf("NATS stream %s: %d decision(s) not sent again: a later decision on the same subject was stored", Stream, superseded)
	}
}

// Close sends what waits, for 2 s at most, says what could not be sent,
// and closes the connection.
func (o *Outbox) Close() error {
	close(o.stop)
	<-o.done
	o.nc.Close()
	if n := o.Waiting(); n > 0 {
		return fmt.Errorf("NATS stream %s: %d decision(s) not sent: the server did not store them before the stop", Stream, n)
	}
	return nil
}
