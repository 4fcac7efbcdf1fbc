// Package config reads PortSentry 1.2's portsentry.conf, unchanged, plus the
// keys this project adds. Every stage reads the same file and uses the keys
// it needs. An unknown key is a warning, so a Debian or 2.x file still loads;
// a malformed value is an error naming the file, the line and the key.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry/pipeline/shared/suggest"
)

// DefaultPath is where every stage looks when -c is not given.
const DefaultPath = "/etc/portsentry/portsentry.conf"

// Config holds every key. The zero value is not useful: start from Default.
type Config struct {
	// Source is the file the values came from, or "" for the built-in defaults.
	Source string
	// lines is where each key was read, for errors found after loading.
	lines map[string]int

	TCPPorts, UDPPorts                     []uint16 // sorted, unique
	AdvancedPortsTCP, AdvancedPortsUDP     int      // watch every port below this
	AdvancedExcludeTCP, AdvancedExcludeUDP []uint16

	IgnoreFile, BlockedFile, HistoryFile string
	ResolveHost                          bool
	BlockTCP, BlockUDP                   int // 0 alert, 1 block, 2 run

	KillRoute, KillHostsDeny, KillRunCmd string
	KillRunCmdFirst                      bool
	ScanTrigger                          int
	PortBanner                           string

	// Keys this project adds; README.md and contrib/portsentry.conf describe them.
	BlockDuration    time.Duration // 0: blocks never end, as in 1.2
	StateIdleTimeout time.Duration // a host's count is forgotten after this long idle
	StateMaxHosts    int           // hosts ps-judge remembers at most
	HostsDenyFile    string
	KillUnroute      string // the inverse of KILL_ROUTE, run when a block ends
	CommandTimeout   time.Duration
	NFTBlock         bool
	NFTTable         string
	NFTForward       bool
	// FastPath lists the sensor modes whose probes the kernel blocks by
	// itself (ps-block's nftables fast path); empty: off.
	FastPath         []string
	BlockRate        float64 // new blocks per second ps-block carries out at most
	BlockBurst       int
	BlockMax         int // records ps-block keeps in force at most; 0: no bound
	RunAsUser        string
	ProtectAddresses []netip.Prefix // never blocked, like the host's own addresses
	Fleet            Fleet          // the NATS keys (fleet.go)
}

// Default returns the built-in defaults: those of PortSentry 1.2's shipped
// portsentry.conf, with the nftables action as the one way of blocking.
func Default() *Config {
	return &Config{
		TCPPorts:           mustPorts("1,11,15,79,111,119,143,540,635,1080,1524,2000,5742,6667,12345,12346,20034,27665,31337,32771,32772,32773,32774,40421,49724,54320"),
		UDPPorts:           mustPorts("1,7,9,69,161,162,513,635,640,641,700,37444,34555,31335,32770,32771,32772,32773,32774,31337,54321"),
		AdvancedPortsTCP:   1024,
		AdvancedPortsUDP:   1024,
		AdvancedExcludeTCP: mustPorts("113,139"),
		AdvancedExcludeUDP: mustPorts("520,138,137,67"),
		IgnoreFile:         "/etc/portsentry/portsentry.ignore",
		BlockedFile:        "/var/lib/portsentry/portsentry.blocked",
		HistoryFile:        "/var/lib/portsentry/portsentry.history",
		BlockTCP:           1,
		BlockUDP:           1,
		StateIdleTimeout:   6 * time.Hour,
		StateMaxHosts:      100000,
		HostsDenyFile:      "/etc/hosts.deny",
		CommandTimeout:     10 * time.Second,
		NFTBlock:           true,
		NFTTable:           "portsentry",
		FastPath:           []string{"atcp", "audp"},
		BlockRate:          50,
		BlockBurst:         200,
		BlockMax:           1_000_000,
		RunAsUser:          "nobody",
	}
}

func mustPorts(s string) []uint16 {
	p, err := parsePorts(s)
	if err != nil {
		panic(err) // only for the constant defaults above
	}
	return p
}

// Error is a malformed value: it names the file, the line and the key.
type Error struct {
	File string
	Line int
	Key  string
	Err  error
}

func (e *Error) Error() string {
	return fmt.Sprintf("config %s line %d: %s: %v", e.File, e.Line, e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// KeyError is err about key's value, found by a program after loading (a
// command ps-block cannot run without a shell): with the file and line
// where the key was read, or "built-in default" for a key never read.
func (c *Config) KeyError(key string, err error) error {
	if line, ok := c.lines[key]; ok {
		return &Error{File: c.Source, Line: line, Key: key, Err: err}
	}
	return fmt.Errorf("config %s (built-in default): %w", key, err)
}

// Load reads the file at path. With path "" it reads DefaultPath, and if no
// file is there it returns the built-in defaults; a path given explicitly
// must exist. warn receives each warning (unknown or repeated keys).
func Load(path string, warn func(string)) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultPath
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("config %s: is a directory, not a configuration file", path)
	}
	return Parse(f, path, warn)
}

// Parse reads a configuration from r; name is used in messages.
func Parse(r io.Reader, name string, warn func(string)) (*Config, error) {
	if warn == nil {
		warn = func(string) {}
	}
	c := Default()
	c.Source = name
	seen := map[string]int{}
	// Every malformed value is said, not only the first: an administrator
	// fixes them all in one pass (ps-block check).
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		key, val, ok, err := splitLine(sc.Text())
		if err != nil {
			errs = append(errs, &Error{File: name, Line: n, Key: key, Err: err})
			continue
		}
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			// 1.2 reads the first occurrence of a key; keep its behaviour.
			warn(fmt.Sprintf("config %s line %d: %s repeats line %d; the first one counts", name, n, key, first))
			continue
		}
		seen[key] = n
		set, known := setters[key]
		if !known {
			warn(fmt.Sprintf("config %s line %d: unknown key %s ignored%s", name, n, key, didYouMean(key)))
			continue
		}
		if err := set(c, val); err != nil {
			errs = append(errs, &Error{File: name, Line: n, Key: key, Err: err})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config %s line %d: %w", name, n+1, err)
	}
	for key, line := range seen {
		if err := checkMacros(c, key); err != nil {
			errs = append(errs, &Error{File: name, Line: line, Key: key, Err: err})
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return a.(*Error).Line - b.(*Error).Line })
		return nil, errors.Join(errs...)
	}
	c.lines = seen
	return c, nil
}

// splitLine takes KEY="value" (quotes optional), ignoring blank lines and #
// comments, also after a closing quote.
func splitLine(line string) (key, val string, ok bool, err error) {
	s := strings.TrimSpace(line)
	if s == "" || s[0] == '#' {
		return "", "", false, nil
	}
	k, v, found := strings.Cut(s, "=")
	key = strings.TrimSpace(k)
	if !found {
		return key, "", false, errors.New(`not a KEY="value" line`)
	}
	if key == "" || strings.ContainsAny(key, " \t\"") {
		return key, "", false, fmt.Errorf("bad key %q", key)
	}
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, `"`) {
		end := strings.IndexByte(v[1:], '"')
		if end < 0 {
			return key, "", false, errors.New("value has no closing quote")
		}
		rest := strings.TrimSpace(v[end+2:])
		if rest != "" && rest[0] != '#' {
			return key, "", false, fmt.Errorf("text after the closing quote: %q", rest)
		}
		return key, v[1 : end+1], true, nil
	}
	if i := strings.IndexByte(v, '#'); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return key, v, true, nil
}

type setter func(c *Config, v string) error

var setters = map[string]setter{
	"TCP_PORTS":            portsKey(func(c *Config) *[]uint16 { return &c.TCPPorts }),
	"UDP_PORTS":            portsKey(func(c *Config) *[]uint16 { return &c.UDPPorts }),
	"ADVANCED_PORTS_TCP":   intKey(1, 65535, func(c *Config) *int { return &c.AdvancedPortsTCP }),
	"ADVANCED_PORTS_UDP":   intKey(1, 65535, func(c *Config) *int { return &c.AdvancedPortsUDP }),
	"ADVANCED_EXCLUDE_TCP": portsKey(func(c *Config) *[]uint16 { return &c.AdvancedExcludeTCP }),
	"ADVANCED_EXCLUDE_UDP": portsKey(func(c *Config) *[]uint16 { return &c.AdvancedExcludeUDP }),
	"IGNORE_FILE":          pathKey(func(c *Config) *string { return &c.IgnoreFile }),
	"BLOCKED_FILE":         pathKey(func(c *Config) *string { return &c.BlockedFile }),
	"HISTORY_FILE":         pathKey(func(c *Config) *string { return &c.HistoryFile }),
	"RESOLVE_HOST":         boolKey(func(c *Config) *bool { return &c.ResolveHost }),
	"BLOCK_TCP":            intKey(0, 2, func(c *Config) *int { return &c.BlockTCP }),
	"BLOCK_UDP":            intKey(0, 2, func(c *Config) *int { return &c.BlockUDP }),
	"KILL_ROUTE":           stringKey(func(c *Config) *string { return &c.KillRoute }),
	"KILL_HOSTS_DENY":      stringKey(func(c *Config) *string { return &c.KillHostsDeny }),
	"KILL_RUN_CMD":         stringKey(func(c *Config) *string { return &c.KillRunCmd }),
	"KILL_RUN_CMD_FIRST":   boolKey(func(c *Config) *bool { return &c.KillRunCmdFirst }),
	"SCAN_TRIGGER":         intKey(0, 1000, func(c *Config) *int { return &c.ScanTrigger }),
	"PORT_BANNER":          stringKey(func(c *Config) *string { return &c.PortBanner }),

	"BLOCK_DURATION":     durationKey(true, func(c *Config) *time.Duration { return &c.BlockDuration }),
	"STATE_IDLE_TIMEOUT": durationKey(false, func(c *Config) *time.Duration { return &c.StateIdleTimeout }),
	"STATE_MAX_HOSTS":    intKey(1, 100_000_000, func(c *Config) *int { return &c.StateMaxHosts }),
	"HOSTS_DENY_FILE":    pathKey(func(c *Config) *string { return &c.HostsDenyFile }),
	"KILL_UNROUTE":       stringKey(func(c *Config) *string { return &c.KillUnroute }),
	"COMMAND_TIMEOUT":    durationKey(false, func(c *Config) *time.Duration { return &c.CommandTimeout }),
	"NFT_BLOCK":          boolKey(func(c *Config) *bool { return &c.NFTBlock }),
	"NFT_TABLE":          nameKey(func(c *Config) *string { return &c.NFTTable }),
	"NFT_FORWARD":        boolKey(func(c *Config) *bool { return &c.NFTForward }),
	"FAST_PATH":          fastPathKey,
	"BLOCK_RATE":         rateKey(func(c *Config) *float64 { return &c.BlockRate }),
	"BLOCK_BURST":        intKey(1, 1_000_000, func(c *Config) *int { return &c.BlockBurst }),
	"BLOCK_MAX":          intKey(0, 100_000_000, func(c *Config) *int { return &c.BlockMax }),
	"RUN_AS_USER":        nameKey(func(c *Config) *string { return &c.RunAsUser }),
	"PROTECT_ADDRESSES":  prefixesKey(func(c *Config) *[]netip.Prefix { return &c.ProtectAddresses }),
}

// didYouMean names the known key an unknown one is likely a typo of, since
// the default of the key meant applies silently otherwise.
func didYouMean(key string) string {
	near, ok := suggest.Nearest(key, Keys())
	switch {
	case !ok:
		return ""
	case strings.EqualFold(near, key):
		return fmt.Sprintf(": did you mean %s? (keys are upper case)", near)
	}
	return fmt.Sprintf(": did you mean %s?", near)
}

// Keys lists every key this package knows, sorted.
func Keys() []string {
	keys := make([]string, 0, len(setters))
	for k := range setters {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func portsKey(field func(*Config) *[]uint16) setter {
	return func(c *Config, v string) error {
		p, err := parsePorts(v)
		*field(c) = p
		return err
	}
}

func intKey(lo, hi int, field func(*Config) *int) setter {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%q is not a whole number from %d to %d", v, lo, hi)
		}
		*field(c) = n
		return nil
	}
}

func boolKey(field func(*Config) *bool) setter {
	return func(c *Config, v string) error {
		switch v {
		case "0":
			*field(c) = false
		case "1":
			*field(c) = true
		default:
			return fmt.Errorf("%q is neither 0 nor 1", v)
		}
		return nil
	}
}

func stringKey(field func(*Config) *string) setter {
	return func(c *Config, v string) error {
		if strings.ContainsAny(v, "\x00\r\n") {
			return errors.New("value holds a control character")
		}
		*field(c) = v
		return nil
	}
}

func pathKey(field func(*Config) *string) setter {
	return func(c *Config, v string) error {
		if v == "" || v[0] != '/' || strings.ContainsAny(v, "\x00\r\n") {
			return fmt.Errorf("%q is not an absolute path", v)
		}
		*field(c) = v
		return nil
	}
}

// nameKey takes a short identifier: a table or a user name.
func nameKey(field func(*Config) *string) setter {
	return func(c *Config, v string) error {
		if v == "" || len(v) > 32 || strings.IndexFunc(v, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
		}) >= 0 {
			return fmt.Errorf("%q is not a name of at most 32 letters, digits, _ and -", v)
		}
		*field(c) = v
		return nil
	}
}

// durationKey takes Go durations ("90m", "24h") or a plain number of
// seconds. zeroOK allows 0, meaning forever.
func durationKey(zeroOK bool, field func(*Config) *time.Duration) setter {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			n, err2 := strconv.ParseUint(v, 10, 32)
			if err2 != nil {
				return fmt.Errorf("%q is not a duration (like 3600, 90m or 24h)", v)
			}
			d = time.Duration(n) * time.Second
		}
		if d < 0 || d == 0 && !zeroOK {
			return fmt.Errorf("%q must be more than 0", v)
		}
		*field(c) = d
		return nil
	}
}

func rateKey(field func(*Config) *float64) setter {
	return func(c *Config, v string) error {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r > 0 && r <= 1e6) {
			return fmt.Errorf("%q is not a rate from above 0 to 1000000 per second", v)
		}
		*field(c) = r
		return nil
	}
}

func prefixesKey(field func(*Config) *[]netip.Prefix) setter {
	return func(c *Config, v string) error {
		var out []netip.Prefix
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			p, err := ParsePrefix(f)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		*field(c) = out
		return nil
	}
}

// ParsePrefix takes an address (one host) or a CIDR network, IPv4 or IPv6,
// without zone; the network is masked to its prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR network", s)
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped network needs at least 96 bits", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR network", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// fastPathKey takes "0" (off) or the sensor modes the kernel fast path
// watches, at most one per protocol: the kernel keeps one count per source
// and protocol, as one sensor mode does.
func fastPathKey(c *Config, v string) error {
	if strings.TrimSpace(v) == "0" {
		c.FastPath = nil
		return nil
	}
	var modes []string
	var tcp, udp bool
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		var seen *bool
		switch f {
		case "stcp", "atcp":
			seen = &tcp
		case "sudp", "audp":
			seen = &udp
		default:
			return fmt.Errorf("%q is not a mode (stcp, atcp, sudp, audp) nor 0", f)
		}
		if *seen {
			return fmt.Errorf("%q: one mode per protocol at most", v)
		}
		*seen = true
		modes = append(modes, f)
	}
	if len(modes) == 0 {
		return errors.New(`empty: give the modes (like "atcp,audp") or 0 to turn the fast path off`)
	}
	c.FastPath = modes
	return nil
}

// parsePorts takes 1.2's comma lists, with ranges a-b, without 1.2's cap
// of 64. Ports are 1-65535; the result is sorted and unique.
func parsePorts(v string) ([]uint16, error) {
	var out []uint16
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("range %q runs backwards", f)
			}
		}
		for p := a; p <= b; p++ {
			out = append(out, uint16(p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return n, nil
}

// checkMacros enforces 1.2's rule that KILL_ROUTE and KILL_HOSTS_DENY name
// $TARGET$, and refuses macros nobody expands.
func checkMacros(c *Config, key string) error {
	var v string
	switch key {
	case "KILL_ROUTE":
		v = c.KillRoute
	case "KILL_HOSTS_DENY":
		v = c.KillHostsDeny
	case "KILL_UNROUTE":
		v = c.KillUnroute
	case "KILL_RUN_CMD":
		return unknownMacro(c.KillRunCmd)
	default:
		return nil
	}
	if v != "" && !strings.Contains(v, "$TARGET$") {
		return errors.New("must contain $TARGET$")
	}
	return unknownMacro(v)
}

// macroRe matches what 1.2 would take for a macro: $NAME$.
var macroRe = regexp.MustCompile(`\$[A-Z_]+\$`)

func unknownMacro(v string) error {
	for _, m := range macroRe.FindAllString(v, -1) {
		switch m {
		case "$TARGET$", "$PORT$", "$MODE$":
		default:
			return fmt.Errorf("unknown macro %s (known: $TARGET$ $PORT$ $MODE$)", m)
		}
	}
	return nil
}
