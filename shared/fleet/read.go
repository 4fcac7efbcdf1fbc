package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/portsentry/pipeline/shared/event"
	"github.com/portsentry/pipeline/shared/transport"
)

// ErrNotOneLine refuses a message that holds more than one line: every
// message is one event line.
var ErrNotOneLine = errors.New("message holds more than one line")

// oneLine checks a message's framing as transport checks a pipe's: one
// line, at most event.MaxLine bytes with its newline, which may be absent.
func oneLine(b []byte) ([]byte, error) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	switch {
	case len(b)+1 > event.MaxLine:
		return nil, transport.ErrTooLong
	case bytes.IndexByte(b, '\n') >= 0:
		return nil, ErrNotOneLine
	}
	return b, nil
}

// Bounds of what a subscriber keeps before the handler takes it; beyond
// them the server's messages are dropped and nats.go reports a slow
// consumer, which the connection's error handler logs.
const (
	pendingMsgs  = 64 * 1024
	pendingBytes = 64 << 20
)

// ReadHits feeds h the hit lines every sensor of the fleet publishes, as a
// Unix socket's writers would, until the subscription is drained. The lines
// are decoded and checked by h, like any other.
func ReadHits(nc *nats.Conn, h transport.Handler) (*nats.Subscription, error) {
	n := 0
	var sub *nats.Subscription
	sub, err := nc.Subscribe(Prefix+".hit.>", func(m *nats.Msg) {
		n++
		data, err := oneLine(m.Data)
		h.Line("NATS "+m.Subject, n, data, err)
		if msgs, _, _ := sub.Pending(); msgs == 0 {
			h.Idle()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("NATS subscribe %s.hit.>: %w", Prefix, err)
	}
	if err := sub.SetPendingLimits(pendingMsgs, pendingBytes); err != nil {
		return nil, fmt.Errorf("NATS subscribe %s.hit.>: %w", Prefix, err)
	}
	// A round trip, so that the server has the subscription when this
	// returns and a hit published next is not missed. With the server away
	// it is sent on reconnecting, as nats.go does for every subscription.
	_ = nc.FlushTimeout(5 * time.Second)
	return sub, nil
}

// checkDecision checks a message of the stream beyond its framing: a
// block, run or unblock, naming the host of its subject, on the one
// subject of its host, mode and target. A member's credentials may then be
// limited to its own subjects, and no member speaks in another's name.
func checkDecision(subject string, data []byte, ev *event.Event) ([]byte, error) {
	line, err := oneLine(data)
	if err != nil {
		return nil, err
	}
	if err := event.DecodeInto(ev, line); err != nil {
		return nil, err
	}
	var buf [96]byte
	switch {
	case ev.Kind != event.KindBlock && ev.Kind != event.KindRun && ev.Kind != event.KindUnblock:
		return nil, fmt.Errorf("a %s line is not a fleet decision", ev.Kind)
	case ev.Host == "":
		return nil, errors.New(`the decision names no host ("host")`)
	case subject != string(appendDecisionSubject(buf[:0], ev.Host, ev.Mode, ev.Target)):
		return nil, fmt.Errorf("a decision of host %s about %s in mode %s does not belong on subject %s", ev.Host, ev.Target, ev.Mode, subject)
	}
	return line, nil
}

// followQueue bounds the messages received and not yet given to the
// handler; when it is full the consumer waits, and so does the server.
// followPull is how many the consumer asks the server for ahead (nats.go
// asks again when half are in): 2,048 keep 10,000 a second flowing while a
// request takes up to 100 ms to be answered (500, nats.go's default, up
// to 25 ms); followPullBytes bounds their size.
const (
	followQueue     = 1024
	followPull      = 2048
	followPullBytes = 4 << 20
	// followSettle is how long a decision handed to h waits for the next
	// message the server says is coming before h is told to carry it out.
	followSettle = 50 * time.Millisecond
)

// EventHandler is a Handler that also takes lines decoded already: Follow
// hands it the event checkDecision decoded, not the line to decode again.
type EventHandler interface {
	transport.Handler
	Event(origin string, n int, ev *event.Event)
}

// Follow feeds h the fleet's decisions: first every one still in force
// (the stream keeps the last of each host, mode and target, while it
// lasts), then each as it is stored, until ctx ends. self is the
// HeaderSender of this program, whose own decisions it skips. After a lost
// server it goes on where it was; while the stream cannot be reached it
// retries every second. Each message is checked by checkDecision and then
// given to h with its stream sequence as its line number, so h checks it
// again as any line (an EventHandler gets the event checkDecision decoded,
// and checks it from there); a refused message reaches h as an error.
func Follow(ctx context.Context, nc *nats.Conn, self string, h transport.Handler, logf func(format string, args ...any)) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("NATS JetStream: %w", err)
	}
	var cons jetstream.Consumer
	for failures := 0; ; failures++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = ensureStream(cctx, nc, js)
		if err == nil {
			cons, err = js.OrderedConsumer(cctx, Stream, jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{Prefix + ".decision.>"},
				DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
			})
		}
		cancel()
		if err == nil {
			break
		}
		if failures%10 == 0 {
			logf("NATS: cannot follow the fleet's decisions yet: %v (retrying every second)", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	// The consumer's callback hands each message to one worker, which
	// calls h.Idle only when none waits, in the client or on the server:
	// while h carries out a batch the next messages gather, so a stream of
	// decisions is carried out in batches, one at a time only when they
	// come one at a time. A member's own decisions come back too: they
	// are skipped and call no h.Idle, which would cut the batch its own
	// input is filling into pieces.
	// The server's count of what waits (NumPending) decides no more than
	// the batch: when the queue is empty and the count says more is coming
	// but nothing comes within followSettle, h is told the input paused, so
	// a decision handed to it never waits on a count that is off.
	queue := make(chan jetstream.Msg, followQueue)
	worked := make(chan struct{})
	go func() {
		defer close(worked)
		var ev event.Event
		handed := false // a line went to h since its last Idle
		settle := time.NewTimer(followSettle)
		settle.Stop()
		defer settle.Stop()
		for {
			var m jetstream.Msg
			select {
			case m = <-queue:
			case <-settle.C:
				if handed {
					h.Idle()
					handed = false
				}
				continue
			case <-ctx.Done():
				return
			}
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			if m.Headers().Get(HeaderSender) != self {
				line, err := checkDecision(m.Subject(), m.Data(), &ev)
				if eh, ok := h.(EventHandler); ok && err == nil {
					eh.Event("NATS "+m.Subject(), int(meta.Sequence.Stream), &ev)
				} else {
					h.Line("NATS "+m.Subject(), int(meta.Sequence.Stream), line, err)
				}
				handed = true
			}
			switch {
			case !handed || len(queue) > 0:
			case meta.NumPending == 0:
				h.Idle()
				handed = false
			default:
				settle.Reset(followSettle)
			}
		}
	}()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case queue <- m:
		case <-ctx.Done():
		}
	},
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			logf("NATS: following the fleet's decisions: %v", err)
		}),
		jetstream.PullMaxMessagesWithBytesLimit(followPull, followPullBytes))
	if err != nil {
		return fmt.Errorf("NATS: following the fleet's decisions: %w", err)
	}
	logf("NATS: following the fleet's decisions (stream %s)", Stream)
	<-ctx.Done()
	cc.Stop()
	<-worked
	return nil
}
