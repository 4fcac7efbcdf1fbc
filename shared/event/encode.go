package event

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// maxDetail bounds a result's detail so that every line fits in MaxLine.
const maxDetail = 1024

// Append appends e as one event line, newline included, to dst. Only the
// fields of e's kind are written.
func Append(dst []byte, e *Event) []byte {
	var c Encoder
	return c.Append(dst, e)
}

// Encoder is Append for a stage that writes many lines: it keeps the text
// of the last second it wrote (date and clock) of each time field, which
// the next lines of a flood share. The zero Encoder is ready.
type Encoder struct {
	time, until clock
	echo        *Decoder // see Echo
	mid         middle
}

// middle is the text of a decision from the quote that closes its target
// to the key of its port (to its end, for an unblock): the same for every
// decision of one mode and host, with what it was made of.
type middle struct {
	text    []byte
	mode    Mode
	host    string
	unblock bool
}

// middle appends the mode, the host and the protocol of a decision or an
// unblock, and the key of a decision's port.
func (c *Encoder) middle(dst []byte, e *Event) []byte {
	m := &c.mid
	if unblock := e.Kind == KindUnblock; len(m.text) == 0 || m.mode != e.Mode || m.host != e.Host || m.unblock != unblock {
		m.text = append(m.text[:0], '"')
		m.text = appendName(m.text, "mode", e.Mode.String())
		if e.Host != "" {
			m.text = appendString(m.text, "host", e.Host)
		}
		if !unblock {
			m.text = appendName(m.text, "proto", e.Mode.Proto().String())
			m.text = append(m.text, `,"port":`...)
		}
		m.mode, m.host, m.unblock = e.Mode, e.Host, unblock
	}
	return append(dst, m.text...)
}

// heads are each kind's line up to its time's text; scanHits each scan's
// text from the end of a decision's port to its count of hits.
var heads, scanHits = func() (h [len(kindNames)]string, s [len(scanNames)]string) {
	for k, name := range kindNames {
		h[k] = `{"v":1,"kind":"` + name + `","time":"`
	}
	for k, name := range scanNames {
		if k != int(ScanNone) {
			s[k] = `,"scan":"` + name + `"`
		}
		s[k] += `,"hits":`
	}
	return h, s
}()

// Echo makes c write the source address and the time of either of the
// last two hits d read, when c writes them again as a target and a time,
// as the text they were read in if that text is their own form: a judge's
// decision names the source and the time of a hit it just read (it reads
// one ahead), and copying text costs less than writing it anew.
func (c *Encoder) Echo(d *Decoder) { c.echo = d }

// echoTime and echoSource are the texts Echo copies, or nil.
func (c *Encoder) echoTime(t time.Time) []byte {
	if c.echo == nil {
		return nil
	}
	return c.echo.when.echo(t)
}

func (c *Encoder) echoSource(a netip.Addr) []byte {
	if c.echo == nil {
		return nil
	}
	return c.echo.src.echo(a)
}

// clock is the text of one second.
type clock struct {
	sec  int64 // unix seconds of text, when set
	set  bool
	text [len("2006-01-02T15:04:05")]byte
}

// Append is the package's Append.
func (c *Encoder) Append(dst []byte, e *Event) []byte {
	if int(e.Kind) < len(heads) {
		dst = append(dst, heads[e.Kind]...)
	} else {
		dst = append(dst, `{"v":1,"kind":"`+e.Kind.String()+`","time":"`...)
	}
	if text := c.echoTime(e.Time); text != nil {
		dst = append(dst, text...)
	} else {
		dst = c.time.appendTime(dst, e.Time)
	}
	dst = append(dst, '"')
	switch e.Kind {
	case KindHit:
		dst = appendString(dst, "sensor", e.Sensor)
		dst = appendName(dst, "mode", e.Mode.String())
		dst = appendName(dst, "proto", e.Proto.String())
		dst = appendAddr(dst, "src", e.Src)
		dst = appendInt(dst, "sport", int(e.Sport))
		dst = appendAddr(dst, "dst", e.Dst)
		dst = appendInt(dst, "dport", int(e.Dport))
		dst = appendName(dst, "scan", e.Scan.String())
		if e.Flags != "" {
			dst = appendString(dst, "flags", e.Flags)
		}
	case KindResult:
		if e.Target.IsValid() {
			dst = appendAddr(dst, "target", e.Target)
		}
		if e.Mode != ModeNone {
			dst = appendName(dst, "mode", e.Mode.String())
		}
		dst = appendString(dst, "action", e.Action)
		dst = append(dst, `,"ok":`...)
		dst = strconv.AppendBool(dst, e.OK)
		dst = appendString(dst, "detail", truncate(e.Detail, maxDetail))
	default:
		dst = append(dst, `,"target":"`...)
		if text := c.echoSource(e.Target); text != nil {
			dst = append(dst, text...)
		} else {
			dst = e.Target.AppendTo(dst)
		}
		dst = c.middle(dst, e)
		if e.Kind != KindUnblock {
			dst = appendNumber(dst, int(e.Port))
			if int(e.Scan) < len(scanHits) {
				dst = append(dst, scanHits[e.Scan]...)
			} else {
				dst = appendName(dst, "scan", e.Scan.String())
				dst = append(dst, `,"hits":`...)
			}
			dst = appendNumber(dst, e.Hits)
			if !e.Until.IsZero() {
				dst = append(dst, `,"until":"`...)
				dst = c.until.appendTime(dst, e.Until)
				dst = append(dst, '"')
			}
		}
	}
	return append(dst, "}\n"...)
}

// Encode returns e as one event line, newline included.
func Encode(e *Event) []byte { return Append(make([]byte, 0, 256), e) }

// appendTime writes t as RFC 3339 in UTC with the nanoseconds there are
// (time.RFC3339Nano's form), digit by digit: the layout interpreter of
// AppendFormat was a tenth of a decision's cost.
func (c *clock) appendTime(dst []byte, t time.Time) []byte {
	unix := t.Unix()
	if unix < 0 || unix >= maxUnix {
		return t.UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	if c.set && unix == c.sec {
		dst = append(dst, c.text[:]...)
	} else {
		start := len(dst)
		dst = appendClock(dst, unix)
		c.sec, c.set = unix, true
		copy(c.text[:], dst[start:])
	}
	if ns := t.Nanosecond(); ns != 0 {
		width := 9
		for ns%10 == 0 {
			ns /= 10
			width--
		}
		dst = append(dst, '.')
		dst = appendDigits(dst, ns, width)
	}
	return append(dst, 'Z')
}

// appendClock writes unix, 0 <= unix < maxUnix, as YYYY-MM-DDTHH:MM:SS.
func appendClock(dst []byte, unix int64) []byte {
	y, mo, d := civilFromDays(unix / 86400)
	h, mi, sec := int(unix%86400/3600), int(unix%3600/60), int(unix%60)
	dst = appendDigits(dst, y, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(mo), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, d, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, h, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, mi, 2)
	dst = append(dst, ':')
	return appendDigits(dst, sec, 2)
}

// maxUnix is 10000-01-01T00:00:00Z: appendTime writes four-digit years.
const maxUnix = 253402300800

// civilFromDays is the date days after 1970-01-01, for days >= 0 (Howard
// Hinnant's algorithm, the inverse of daysFromCivil): cheaper than
// time.Time's Date and Clock.
func civilFromDays(days int64) (y, m, d int) {
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	m = int(mp + 3)
	if m > 12 {
		m -= 12
	}
	y = int(yoe + era*400)
	if m <= 2 {
		y++
	}
	return y, m, d
}

// appendDigits writes n, 0 <= n < 10^width, in exactly width digits.
func appendDigits(dst []byte, n, width int) []byte {
	dst = append(dst, "000000000"[:width]...)
	for i := len(dst) - 1; n > 0; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
	return dst
}

func appendAddr(dst []byte, key string, a netip.Addr) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, key...)
	dst = append(dst, `":"`...)
	dst = a.AppendTo(dst)
	return append(dst, '"')
}

func appendInt(dst []byte, key string, n int) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, key...)
	dst = append(dst, `":`...)
	return appendNumber(dst, n)
}

// appendNumber writes n. Ports and most hit counts go digit by digit,
// cheaper than strconv's general case.
func appendNumber(dst []byte, n int) []byte {
	if n < 0 || n >= 100000 {
		return strconv.AppendInt(dst, int64(n), 10)
	}
	width := 1
	for limit := 10; width < 5 && n >= limit; limit *= 10 {
		width++
	}
	return appendDigits(dst, n, width)
}

// appendName writes a name from one of the fixed lists (modes, protocols,
// scans), which never need escaping.
func appendName(dst []byte, key, name string) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, key...)
	dst = append(dst, `":"`...)
	dst = append(dst, name...)
	return append(dst, '"')
}

func appendString(dst []byte, key, s string) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, key...)
	dst = append(dst, `":`...)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b, _ := json.Marshal(s) // cannot fail for a string; escapes and repairs UTF-8
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
