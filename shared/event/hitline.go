package event

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// decodeHit reads a hit line written exactly as Append writes one (its keys
// in Append's order, no spaces, no escapes) straight into e, as a template
// is matched: no key is looked up and no field is kept for later checks. A
// flood of hits is almost all such lines, and this costs a fraction of the
// general path. e must be zero (Decode zeroes it) and is filled in place;
// for any other line decodeHit returns false and leaves e zero, and the
// general path then reads the line and gives the error, if any. A line it
// takes, the general path reads to the same event (FuzzDecodeHit).
func (d *Decoder) decodeHit(e *Event, b []byte) bool {
	c := cursor{b: b, ok: true}
	c.lit(&litHead)
	c.lit(&litHit)
	t, text := c.time(&d.second)
	if !c.ok || t.Before(MinTime) || !t.Before(MaxTime) {
		return false
	}
	d.when.keep(t, text)
	e.Kind, e.Time = KindHit, t
	d.middle(&c, e)
	e.Src = c.addr(&d.src)
	c.lit(&litSport)
	e.Sport = c.port()
	c.lit(&litDst)
	e.Dst = c.addr(&d.dst)
	c.lit(&litDport)
	e.Dport = c.port()
	d.end(&c, e)
	if !c.ok || e.Mode == ModeNone || e.Scan == ScanNone || e.Src.Is4() != e.Dst.Is4() || e.Flags != "" && e.Proto != ProtoTCP {
		*e = Event{}
		return false
	}
	return true
}

// segment is a stretch of a hit line between two varying fields, with
// what it said: the lines of one sensor share their middle (sensor, mode,
// protocol) and their end (scan, flags), so a Decoder compares each with
// the last it read before reading it field by field.
type segment struct {
	text   [64]byte
	n      int
	sensor string
	mode   Mode
	proto  Proto
	scan   Scan
	flags  string
}

// same reads the segment if the line goes on with it.
func (g *segment) same(c *cursor, toEnd bool) bool {
	n := g.n
	if !c.ok || n == 0 || len(c.b)-c.i < n || toEnd && len(c.b)-c.i != n || !sameText(c.b[c.i:c.i+n], g.text[:n]) {
		return false
	}
	c.i += n
	return true
}

// keep records b as the segment, when it fits.
func (g *segment) keep(b []byte) {
	if len(b) > len(g.text) {
		g.n = 0
		return
	}
	g.n = copy(g.text[:], b)
}

// middle reads from the sensor to the quote that opens the source.
func (d *Decoder) middle(c *cursor, h *Event) {
	g := &d.mid
	if g.same(c, false) {
		h.Sensor, h.Mode, h.Proto = g.sensor, g.mode, g.proto
		return
	}
	start := c.i
	c.lit(&litSensor)
	switch s := c.text(); string(s) {
	case "ps-sniff":
		h.Sensor = "ps-sniff"
	case "ps-listen":
		h.Sensor = "ps-listen"
	default:
		c.ok = false
	}
	c.lit(&litMode)
	h.Mode = Mode(c.name(modeTable))
	c.lit(&litProto)
	if h.Proto = Proto(c.name(protoTable)); h.Proto != h.Mode.Proto() {
		c.ok = false
	}
	c.lit(&litSrc)
	if c.ok {
		g.keep(c.b[start:c.i])
		g.sensor, g.mode, g.proto = h.Sensor, h.Mode, h.Proto
	}
}

// end reads from the scan to the end of the line.
func (d *Decoder) end(c *cursor, h *Event) {
	g := &d.tail
	if g.same(c, true) {
		h.Scan, h.Flags = g.scan, g.flags
		return
	}
	start := c.i
	c.lit(&litScan)
	h.Scan = Scan(c.name(scanTable))
	if c.ok && c.i < len(c.b) && c.b[c.i] != '}' {
		// Append writes flags only when there are some.
		c.lit(&litFlags)
		flags := c.text()
		for _, f := range flags {
			if !isFlag(f) {
				c.ok = false
			}
		}
		h.Flags = internFlags(flags)
	}
	if !c.ok || c.i != len(c.b)-1 || c.b[c.i] != '}' {
		c.ok = false
		return
	}
	c.i++
	g.keep(c.b[start:c.i])
	g.scan, g.flags = h.Scan, h.Flags
}

// The template's literals, in the order Append writes them.
var (
	litHead   = literal(`{"v":1,"kind":"`)
	litHit    = literal(`hit","time":"`)
	litSensor = literal(`,"sensor":"`)
	litMode   = literal(`,"mode":"`)
	litProto  = literal(`,"proto":"`)
	litSrc    = literal(`,"src":"`)
	litSport  = literal(`,"sport":`)
	litDst    = literal(`,"dst":"`)
	litDport  = literal(`,"dport":`)
	litScan   = literal(`,"scan":"`)
	litFlags  = literal(`,"flags":"`)
)

// word is a literal of 8 to 16 bytes as its first and last eight bytes
// (which overlap when it is shorter than 16): matching it costs two loads
// and two compares, not a call.
type word struct {
	first, last uint64
	n           int
}

func literal(s string) word {
	return word{binary.LittleEndian.Uint64([]byte(s)), binary.LittleEndian.Uint64([]byte(s[len(s)-8:])), len(s)}
}

// cursor walks a line that must follow a template. Once a step fails, ok is
// false and every later step is a no-op, so that a template reads as a list
// of steps and is checked once, at its end.
type cursor struct {
	b  []byte
	i  int
	ok bool
}

// lit reads w.
func (c *cursor) lit(w *word) {
	if !c.ok || len(c.b)-c.i < w.n ||
		binary.LittleEndian.Uint64(c.b[c.i:]) != w.first || binary.LittleEndian.Uint64(c.b[c.i+w.n-8:]) != w.last {
		c.ok = false
		return
	}
	c.i += w.n
}

// text reads a string's text up to its closing quote, which it reads too;
// every string of the template follows a literal that ends with its opening
// quote. flatString reads it, and refuses what no field of a hit takes
// (an escape, a control character, a byte outside ASCII): such a line is
// left to the general path.
func (c *cursor) text() []byte {
	if !c.ok || c.i == 0 || c.b[c.i-1] != '"' {
		c.ok = false
		return nil
	}
	s, next, ok := flatString(c.b, c.i-1)
	if !ok {
		c.ok = false
		return nil
	}
	c.i = next
	return s
}

// name reads a string that must be one of the names of t and returns its
// index, or 0.
func (c *cursor) name(t *names) int {
	s := c.text()
	if len(s) > 7 {
		c.ok = false
		return 0
	}
	k := pack(s)
	for i := 1; i < len(t); i++ {
		if t[i] == k {
			return i
		}
	}
	c.ok = false
	return 0
}

// names holds a list of names (modes, protocols, scans) of at most 7 bytes
// as numbers, each compared in one instruction.
type names [8]uint64

func packNames(list []string) *names {
	var t names
	for i := range t {
		t[i] = 1 << 63 // no text packs to this: index 0 (none) and unused entries never match
	}
	for i := 1; i < len(list); i++ {
		t[i] = pack([]byte(list[i]))
	}
	return &t
}

// pack is s, at most 7 bytes, as a number, its length in the top byte so
// that a name never equals a longer text padded with NUL bytes.
func pack(s []byte) uint64 {
	x := uint64(len(s)) << 56
	for i, c := range s {
		x |= uint64(c) << (8 * i)
	}
	return x
}

var modeTable, protoTable, scanTable = packNames(modeNames[:]), packNames(protoNames[:]), packNames(scanNames[:])

// addr reads an address string in place, with the addresses kept.
func (c *cursor) addr(p *addrPair) netip.Addr {
	if !c.opened() {
		return netip.Addr{}
	}
	a, n, ok := p.read(c.b[c.i:])
	return closed(c, n, ok, a)
}

// time reads a time string in place, with the Decoder's second.
func (c *cursor) time(second *secondCache) (time.Time, []byte) {
	if !c.opened() {
		return time.Time{}, nil
	}
	t, n, ok := second.read(c.b[c.i:])
	text := c.b[c.i : c.i+n]
	return closed(c, n, ok, t), text
}

// opened reports whether a string opened: every string of the template
// follows a literal that ends with its opening quote.
func (c *cursor) opened() bool {
	if !c.ok || c.i == 0 || c.b[c.i-1] != '"' {
		c.ok = false
	}
	return c.ok
}

// closed moves past a string's text of n bytes read in place, which its
// closing quote must follow, and returns v, or v's zero value on failure.
func closed[T any](c *cursor, n int, ok bool, v T) T {
	if !ok || c.i+n >= len(c.b) || c.b[c.i+n] != '"' {
		c.ok = false
		var zero T
		return zero
	}
	c.i += n + 1
	return v
}

// addrCache is an address text read and what it gave.
type addrCache struct {
	text      [45]byte // the longest IPv6 text without a zone
	n         uint8
	canonical bool // text is a's own form
	a         netip.Addr
}

// addrPair keeps the last two address texts of one field, the one read
// last replaced last: a dual-stack host's destinations alternate, and a
// judge that reads one hit ahead echoes the source of the hit before the
// last.
type addrPair struct {
	c      [2]addrCache
	newest uint8
}

// read is readAddr, consulting and updating p. Only addresses are kept:
// a text that is none is read again each time.
func (p *addrPair) read(b []byte) (netip.Addr, int, bool) {
	for k := range uint8(2) {
		i := p.newest ^ k
		if a, n, ok := p.c[i].hit(b); ok {
			p.newest = i
			return a, n, true
		}
	}
	a, canonical, n, ok := readAddr(b)
	if !ok {
		return netip.Addr{}, 0, false
	}
	p.newest ^= 1
	p.c[p.newest].keep(b[:n], a, canonical)
	return a, n, true
}

// echo returns the text kept for a, if it is a's own form, or nil.
func (p *addrPair) echo(a netip.Addr) []byte {
	for i := range p.c {
		if c := &p.c[i]; c.canonical && c.n > 0 && c.a == a {
			return c.text[:c.n]
		}
	}
	return nil
}

// hit returns the address kept, if b starts with its text and a quote.
func (c *addrCache) hit(b []byte) (netip.Addr, int, bool) {
	if n := int(c.n); n > 0 && n < len(b) && b[n] == '"' && sameText(b[:n], c.text[:n]) {
		return c.a, n, true
	}
	return netip.Addr{}, 0, false
}

// keep records that text is a, in its own form or not.
func (c *addrCache) keep(text []byte, a netip.Addr, canonical bool) {
	if len(text) <= len(c.text) {
		c.n = uint8(copy(c.text[:], text))
		c.a, c.canonical = a, canonical
	}
}

// sameText reports whether a and b, of equal lengths, are equal: eight
// bytes at a time, the last eight first (where spoofed addresses differ),
// with no call.
func sameText(a, b []byte) bool {
	n := len(a)
	if n < 8 || len(b) != n {
		return string(a) == string(b)
	}
	le := binary.LittleEndian
	if le.Uint64(a[n-8:]) != le.Uint64(b[n-8:]) {
		return false
	}
	for i := 0; i+8 < n; i += 8 {
		if le.Uint64(a[i:]) != le.Uint64(b[i:]) {
			return false
		}
	}
	return true
}

// port reads a port number as JSON writes it: no sign, no leading zero.
func (c *cursor) port() uint16 {
	if !c.ok {
		return 0
	}
	n, j := 0, c.i
	for ; j < len(c.b) && j-c.i < 6 && c.b[j] >= '0' && c.b[j] <= '9'; j++ {
		n = n*10 + int(c.b[j]-'0')
	}
	if d := j - c.i; d == 0 || d > 5 || d > 1 && c.b[c.i] == '0' || n > 65535 {
		c.ok = false
		return 0
	}
	c.i = j
	return uint16(n)
}

// isFlag reports whether f is a TCP flag's letter.
func isFlag(f byte) bool {
	switch f {
	case 'F', 'S', 'R', 'P', 'A', 'U', 'E', 'C':
		return true
	}
	return false
}

// usualFlags are the flags of the probes the sensors see most: reading
// them allocates nothing.
var usualFlags = [...]string{"S", "F", "", "FPU", "SF", "U", "P"}

// internFlags returns flags as a string, shared when it is a usual one.
func internFlags(flags []byte) string {
	for _, u := range usualFlags {
		if u == string(flags) {
			return u
		}
	}
	return string(flags)
}
