// Package fleet carries event lines over NATS and joins the hosts of a
// fleet: sensors publish hit lines on core NATS, decisions travel through
// a JetStream stream that keeps each one while it lasts, and every member
// registers its addresses in a key-value bucket that every guard reads, so
// that members never block each other. The lines are the pipeline's own,
// unchanged, and every line read from NATS is checked like a pipe's.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/event"
)

// Names on the server. Subjects are <Prefix>.hit.<host> (core NATS),
// <Prefix>.result.<host> (core NATS) and
// <Prefix>.decision.<host>.<mode>.<target> (the stream): one subject per
// host, mode and target, of which the stream keeps the last message only,
// so a block is kept until its end or an unblock replaces it, and a member
// that starts reads exactly the decisions in force.
const (
	Prefix  = "portsentry"
	Stream  = "PORTSENTRY_DECISIONS"
	Members = "portsentry_members"
)

// Lines names what a stage sends or reads over NATS.
type Lines int

// The three kinds of traffic.
const (
	Hits Lines = iota
	Decisions
	Results
)

// HeaderSender names the program that published a decision
// ("host/ps-block"), so that a ps-block skips what it published itself.
const HeaderSender = "Portsentry-Sender"

// IsURL reports whether a --listen or --connect value names a NATS server.
func IsURL(s string) bool { return strings.HasPrefix(s, "nats://") || strings.HasPrefix(s, "tls://") }

// HostName is the name this host gives its decisions: FLEET_HOST, else the
// system's host name up to its first dot.
func HostName(f *config.Fleet) (string, error) {
	if f.Host != "" {
		return f.Host, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host name: %w (set FLEET_HOST)", err)
	}
	h, _, _ = strings.Cut(h, ".")
	if !event.ValidHost(h) {
		return "", fmt.Errorf("host name %q cannot name decisions: set FLEET_HOST to 1 to %d letters, digits, _ and -", h, event.MaxHost)
	}
	return h, nil
}

// maxReconnectBuf bounds what nats.go keeps of core publications (hits,
// results) while the server is away; more is dropped, counted and said.
const maxReconnectBuf = 4 << 20

// Dial connects to url with the credentials and TLS of f. It returns at
// once even when the server is unreachable: the connection is then made,
// and remade after every loss, in the background, while the local pipeline
// goes on. logf says when the server is lost and found again.
func Dial(url string, f *config.Fleet, name string, logf func(format string, args ...any)) (*nats.Conn, error) {
	if !IsURL(url) {
		return nil, fmt.Errorf("%q is not a NATS address (nats://host:port or tls://host:port)", url)
	}
	if err := f.CheckNATS(); err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(maxReconnectBuf),
		nats.ConnectHandler(func(c *nats.Conn) { logf("NATS: connected to %s", c.ConnectedUrlRedacted()) }),
		nats.ReconnectHandler(func(c *nats.Conn) { logf("NATS: connected again to %s", c.ConnectedUrlRedacted()) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logf("NATS: disconnected (%v); the local pipeline goes on, and what it decides is sent when the server is back", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			if s != nil {
				logf("NATS: %s: %v", s.Subject, err)
			} else {
				logf("NATS: %v", err)
			}
		}),
	}
	switch {
	case f.User != "":
		opts = append(opts, nats.UserInfo(f.User, f.Password))
	case f.Token != "":
		opts = append(opts, nats.Token(f.Token))
	case f.Creds != "":
		opts = append(opts, nats.UserCredentials(f.Creds))
	case f.NKeySeed != "":
		o, err := nats.NkeyOptionFromSeed(f.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED %s: %w", f.NKeySeed, err)
		}
		opts = append(opts, o)
	}
	if f.TLSCA != "" {
		opts = append(opts, nats.RootCAs(f.TLSCA))
	}
	if f.TLSCert != "" {
		opts = append(opts, nats.ClientCert(f.TLSCert, f.TLSKey))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS %s: %w", url, err)
	}
	return nc, nil
}

// HitSubject, ResultSubject and DecisionSubject name where lines go.
func HitSubject(host string) string    { return Prefix + ".hit." + host }
func ResultSubject(host string) string { return Prefix + ".result." + host }

// DecisionSubject is the one subject of a host's decisions about target in
// mode. A dot would split the token, so IPv4 dots become dashes; IPv6
// colons are allowed in a token.
func DecisionSubject(host string, mode event.Mode, target netip.Addr) string {
	var buf [96]byte
	return string(appendDecisionSubject(buf[:0], host, mode, target))
}

// appendDecisionSubject appends DecisionSubject to b, which a hot path
// compares or keeps without a string of its own.
func appendDecisionSubject(b []byte, host string, mode event.Mode, target netip.Addr) []byte {
	b = append(b, Prefix+".decision."...)
	b = append(append(b, host...), '.')
	b = append(append(b, mode.String()...), '.')
	addr := len(b)
	b = target.AppendTo(b)
	for i := addr; i < len(b); i++ {
		if b[i] == '.' {
			b[i] = '-'
		}
	}
	return b
}

// streamConfig is the decisions' stream. The last message of each subject
// is kept (a newer decision or an unblock replaces it), each for as long
// as its block lasts when the server can expire messages one by one (2.11
// and later); Duplicates is the window in which a decision published again
// after a lost acknowledgement is recognised by its Nats-Msg-Id and stored
// once.
func streamConfig(ttl bool) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              Stream,
		Subjects:          []string{Prefix + ".decision.>"},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: 1,
		MaxMsgs:           1_000_000,
		MaxBytes:          1 << 30,
		Discard:           jetstream.DiscardOld,
		Duplicates:        10 * time.Minute,
		AllowMsgTTL:       ttl,
	}
}

// serverHasTTL reports whether the connected server expires messages one
// by one (nats-server 2.11 and later).
func serverHasTTL(nc *nats.Conn) bool {
	var major, minor int
	if _, err := fmt.Sscanf(nc.ConnectedServerVersion(), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 2 || major == 2 && minor >= 11
}

// ensureStream finds the decisions' stream, or makes it. It reports whether
// the stream expires messages one by one. Lookups come first, so that a
// member allowed only to read the stream's information can use one an
// administrator made.
func ensureStream(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) (ttl bool, err error) {
	s, err := js.Stream(ctx, Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, streamConfig(serverHasTTL(nc)))
	}
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", Stream, err)
	}
	return s.CachedInfo().Config.AllowMsgTTL, nil
}
