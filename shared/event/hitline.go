package event

import (
	"encoding/binary"
	"net/netip"
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
	text := c.text()
	t, ok := d.second.parseUTC(text)
	if !ok || t.Before(MinTime) || !t.Before(MaxTime) {
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
	if !c.ok || n == 0 || len(c.b)-c.i < n || toEnd && len(c.b)-c.i != n || string(c.b[c.i:c.i+n]) != string(g.text[:n]) {
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

func (c *cursor) addr(cache *addrCache) netip.Addr {
	s := c.text()
	if !c.ok {
		return netip.Addr{}
	}
	a, ok := cache.parse(s)
	c.ok = ok
	return a
}

// addrCache keeps the last address text parsed and what it gave.
type addrCache struct {
	text      [45]byte // the longest IPv6 text without a zone
	n         uint8
	canonical bool // text is a's own form
	a         netip.Addr
}

// parse is scanAddr, consulting and updating c. Only addresses are kept:
// a text that is none is parsed again each time.
func (c *addrCache) parse(s []byte) (netip.Addr, bool) {
	if c.n > 0 && string(s) == string(c.text[:c.n]) {
		return c.a, true
	}
	a, canonical, ok := scanAddr(s)
	if !ok {
		return netip.Addr{}, false
	}
	if len(s) <= len(c.text) {
		c.n = uint8(copy(c.text[:], s))
		c.a, c.canonical = a, canonical
	}
	return a, true
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
