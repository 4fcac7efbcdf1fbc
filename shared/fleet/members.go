package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/portsentry/pipeline/shared/event"
)

// Bounds on what the member bucket may make a guard hold.
const (
	maxMembers       = 4096
	maxMemberAddrs   = 256
	maxMemberValue   = 16 * 1024
	registerInterval = 30 * time.Second
)

// MemberAddrs is what a host registers as its own: its interfaces'
// addresses that another host could see (not loopback, link-local or
// multicast ones) and the extra ones configured (FLEET_ADDRESSES: a NAT's
// outside address, say), sorted and unique.
func MemberAddrs(own, extra []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range append(slices.Clone(own), extra...) {
		a = a.Unmap()
		if a.IsValid() && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsMulticast() && !a.IsUnspecified() {
			out = append(out, a.WithZone(""))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// parseMember reads one member's value: addresses separated by spaces.
// Whatever is not an address is reported and skipped, and at most
// maxMemberAddrs are taken.
func parseMember(value []byte) (addrs []netip.Addr, problems []string) {
	if len(value) > maxMemberValue {
		return nil, []string{fmt.Sprintf("value of %d bytes, more than %d: ignored", len(value), maxMemberValue)}
	}
	for _, f := range strings.Fields(string(value)) {
		a, err := event.ParseAddr(f)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%q is not an IP address (skipped)", f))
			continue
		}
		if len(addrs) == maxMemberAddrs {
			problems = append(problems, fmt.Sprintf("more than %d addresses: the rest ignored", maxMemberAddrs))
			break
		}
		addrs = append(addrs, a)
	}
	return addrs, problems
}

func formatMember(addrs []netip.Addr) []byte {
	var b []byte
	for i, a := range addrs {
		if i > 0 {
			b = append(b, ' ')
		}
		b = a.AppendTo(b)
	}
	return b
}

func ensureBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, Members)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Members, History: 1, Storage: jetstream.FileStorage,
			Description: "PortSentry fleet members: host name -> its addresses, never blocked by another member"})
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Members, err)
	}
	return kv, nil
}

// Membership registers this host in the member bucket and tells set the
// addresses of every member (address -> host name) each time they change.
type Membership struct {
	nc   *nats.Conn
	host string
	own  func() []netip.Addr // this host's addresses, asked again now and then; nil: watch only
	set  func(map[netip.Addr]string)
	logf func(format string, args ...any)
}

// NewMembership returns a Membership of host; with own nil it only watches.
func NewMembership(nc *nats.Conn, host string, own func() []netip.Addr, set func(map[netip.Addr]string), logf func(format string, args ...any)) *Membership {
	return &Membership{nc: nc, host: host, own: own, set: set, logf: logf}
}

// Run registers and watches until ctx ends, retrying while the server is
// away. ready is closed once the members in the bucket have been given to
// set, so that a caller can hold the fleet's decisions until its guard
// knows them.
func (m *Membership) Run(ctx context.Context, ready chan<- struct{}) {
	js, err := jetstream.New(m.nc)
	if err != nil {
		m.logf("NATS JetStream: %v", err)
		return
	}
	readyOnce := func() {
		if ready != nil {
			close(ready)
			ready = nil
		}
	}
	for failures := 0; ctx.Err() == nil; failures++ {
		err := m.watch(ctx, js, readyOnce)
		if ctx.Err() != nil {
			return
		}
		if failures%10 == 0 {
			m.logf("NATS: fleet members: %v (retrying every second)", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (m *Membership) watch(ctx context.Context, js jetstream.JetStream, ready func()) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	kv, err := ensureBucket(cctx, js)
	cancel()
	if err != nil {
		return err
	}
	registered, err := m.register(ctx, kv, nil)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching bucket %s: %w", Members, err)
	}
	defer w.Stop()
	members := map[string][]netip.Addr{}
	initial := true
	tick := time.NewTicker(registerInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			// Addresses change (DHCP, a new interface): register again.
			if registered, err = m.register(ctx, kv, registered); err != nil {
				return err
			}
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch of bucket %s ended", Members)
			}
			if e == nil { // the values present at the start have all come
				initial = false
				m.publish(members)
				ready()
				continue
			}
			m.update(members, e)
			if !initial {
				m.publish(members)
			}
		}
	}
}

// register puts this host's addresses in the bucket when they differ from
// what it registered last.
func (m *Membership) register(ctx context.Context, kv jetstream.KeyValue, last []netip.Addr) ([]netip.Addr, error) {
	if m.own == nil { // a judge reads the members; only ps-block registers
		return nil, nil
	}
	addrs := m.own()
	if last != nil && slices.Equal(addrs, last) {
		return last, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := kv.Put(cctx, m.host, formatMember(addrs)); err != nil {
		return last, fmt.Errorf("registering %s in bucket %s: %w", m.host, Members, err)
	}
	m.logf("NATS: registered as fleet member %s with %d address(es)", m.host, len(addrs))
	return addrs, nil
}

func (m *Membership) update(members map[string][]netip.Addr, e jetstream.KeyValueEntry) {
	host := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		delete(members, host)
		return
	}
	if !event.ValidHost(host) {
		m.logf("NATS: fleet member %q: not a host name (ignored)", host)
		return
	}
	addrs, problems := parseMember(e.Value())
	for _, p := range problems {
		m.logf("NATS: fleet member %s: %s", host, p)
	}
	if _, known := members[host]; !known && len(members) >= maxMembers {
		m.logf("NATS: fleet member %s ignored: more than %d members", host, maxMembers)
		return
	}
	members[host] = addrs
}

func (m *Membership) publish(members map[string][]netip.Addr) {
	out := make(map[netip.Addr]string, len(members))
	for host, addrs := range members {
		for _, a := range addrs {
			out[a] = host
		}
	}
	m.set(out)
}
