package fleet

import (
	"bytes"
	"context"
	"fmt"
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
// server is away; maxInFlight those published before their acknowledgements.
const (
	maxOutbox   = 4 << 20
	maxInFlight = 512
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

// Outbox publishes decisions to the fleet's stream. Each is queued at once
// (the caller never waits for NATS) and published in order with a
// Nats-Msg-Id, so that one published again after a lost acknowledgement
// is stored once; it leaves the queue only when the server has stored it.
// While the server is away up to 4 MiB of decisions wait; more are dropped,
// counted and said. A decision whose block ended meanwhile is not sent.
type Outbox struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	host   string // names the decisions that name none
	sender string // HeaderSender
	logf   func(format string, args ...any)
	split  splitter

	mu      sync.Mutex
	queue   []outMsg
	bytes   int
	dropped int
	ev      event.Event
	buf     []byte

	ready bool // the stream was found or made
	ttl   bool // the stream expires messages one by one
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

// NewOutbox returns an Outbox publishing as program on host.
func NewOutbox(nc *nats.Conn, host, program string, logf func(format string, args ...any)) (*Outbox, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("NATS JetStream: %w", err)
	}
	o := &Outbox{nc: nc, js: js, host: host, sender: host + "/" + program, logf: logf,
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
	o.mu.Lock()
	defer o.mu.Unlock()
	ev := &o.ev
	if err := event.DecodeInto(ev, line); err != nil {
		return
	}
	if ev.Kind != event.KindBlock && ev.Kind != event.KindRun && ev.Kind != event.KindUnblock {
		return
	}
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
		id:      fmt.Sprintf("%s|%s|%s|%s|%s", ev.Host, ev.Kind, ev.Mode, ev.Target, ev.Time.Format(time.RFC3339Nano)),
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

// Waiting is how many decisions wait for the server.
func (o *Outbox) Waiting() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

func (o *Outbox) run() {
	defer close(o.done)
	retry := time.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	var said time.Time // the last failure said: once, then every 10 s
	for {
		select {
		case <-o.stop:
			return
		case <-o.wake:
		case <-retry.C:
		}
		for {
			n, err := o.send(5 * time.Second)
			if err != nil {
				if time.Since(said) >= 10*time.Second {
					o.logf("NATS stream %s: %v (%d decision(s) waiting; retrying)", Stream, err, o.Waiting())
					said = time.Now()
				}
				break
			}
			said = time.Time{}
			if n == 0 {
				break
			}
		}
	}
}

// send publishes the head of the queue and waits for the server to store
// it; it returns how many left the queue.
func (o *Outbox) send(wait time.Duration) (int, error) {
	o.mu.Lock()
	if o.dropped > 0 {
		o.logf("NATS stream %s: %d decision(s) dropped: more than %d bytes waited for the server", Stream, o.dropped, maxOutbox)
		o.dropped = 0
	}
	batch := o.queue[:min(len(o.queue), maxInFlight)]
	o.mu.Unlock()
	if len(batch) == 0 {
		return 0, nil
	}
	if !o.nc.IsConnected() {
		return 0, fmt.Errorf("server unreachable")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if !o.ready {
		ttl, err := ensureStream(ctx, o.nc, o.js)
		if err != nil {
			return 0, err
		}
		o.ready, o.ttl = true, ttl
	}
	now := time.Now()
	acks := make([]jetstream.PubAckFuture, 0, len(batch))
	var err error
	for _, m := range batch {
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.id), jetstream.WithExpectStream(Stream)}
		switch {
		case !m.until.IsZero() && !m.until.After(now):
			acks = append(acks, nil) // the block is over: nothing to tell
			continue
		case !m.until.IsZero() && o.ttl:
			opts = append(opts, jetstream.WithMsgTTL(max(m.until.Sub(now).Round(time.Second)+time.Second, time.Second)))
		case m.unblock && o.ttl:
			opts = append(opts, jetstream.WithMsgTTL(unblockKeep))
		}
		msg := &nats.Msg{Subject: m.subject, Data: m.data, Header: nats.Header{HeaderSender: []string{o.sender}}}
		f, perr := o.js.PublishMsgAsync(msg, opts...)
		if perr != nil {
			err = perr
			break
		}
		acks = append(acks, f)
	}
	// Only a stored prefix leaves the queue, so order is kept: a block
	// retried after its unblock was stored would replace the unblock.
	stored := 0
wait:
	for _, f := range acks {
		if f == nil {
			stored++
			continue
		}
		select {
		case <-f.Ok():
			stored++
		case e := <-f.Err():
			err = e
			break wait
		case <-ctx.Done():
			err = fmt.Errorf("no acknowledgement within %v", wait)
			break wait
		}
	}
	o.mu.Lock()
	for _, m := range o.queue[:stored] {
		o.bytes -= len(m.data)
	}
	o.queue = o.queue[:copy(o.queue, o.queue[stored:])]
	o.mu.Unlock()
	return stored, err
}

// Close sends what waits, for 2 s at most, says what could not be sent,
// and closes the connection.
func (o *Outbox) Close() error {
	close(o.stop)
	<-o.done
	deadline := time.Now().Add(2 * time.Second)
	for o.Waiting() > 0 && time.Now().Before(deadline) {
		if _, err := o.send(time.Until(deadline)); err != nil {
			break
		}
	}
	o.nc.Close()
	if n := o.Waiting(); n > 0 {
		return fmt.Errorf("NATS stream %s: %d decision(s) not sent: the server did not store them before the stop", Stream, n)
	}
	return nil
}
