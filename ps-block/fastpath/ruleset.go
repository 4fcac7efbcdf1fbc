package fastpath

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names in ps-block's table. The pipeline's own sets and chain (package
// nft) are left alone: the fast path has a base chain of its own, so either
// can be rebuilt without the other.
const (
	BaseChain    = "fastpath"
	ForwardChain = "fastpath_fwd"
	Protect4     = "fp_protect4"
	Protect6     = "fp_protect6"
	rateChain    = "fp_rate"
	limitedCtr   = "fp_limited"
)

// Set sizes. Every set the packet path writes has one; when a set is full
// the kernel refuses the new element, the rule stops there, and the next
// rule counts the packet in the mode's "full" counter and leaves it to the
// pipeline (which still sees it, decides by evidence and blocks through
// netlink): detection goes on, only slower, and ps-block logs the count
// once a second. Kernel memory is about 64-128 bytes an element.
const (
	BlockSize = 65536 // sources blocked by the kernel, per mode and family
	SeenSize  = 65536 // (source, port) pairs seen, per mode and family
	StageSize = 65536 // sources at each count of distinct ports
)

// Family is IPv4 or IPv6 as the rules address it.
type Family struct {
	Suffix  string // "4" or "6"
	NFProto byte
	SrcOff  uint32 // source address in the network header
	Len     uint32
	Type    nftables.SetDatatype
	// portReg is the 32-bit register after the address in a concatenated
	// key (NFT_REG32_01 after 4 bytes, NFT_REG32_04 after 16).
	portReg uint32
}

// Families are the two the fast path covers.
var Families = []Family{
	{"4", unix.NFPROTO_IPV4, 12, 4, nftables.TypeIPAddr, 9},
	{"6", unix.NFPROTO_IPV6, 8, 16, nftables.TypeIP6Addr, 12},
}

// BlockMap names the map of sources the kernel blocked for mode in family
// f; each element's value is the port that tripped the wire.
func BlockMap(mode string, f Family) string { return "fp_" + mode + f.Suffix }

// ModeOfMap is BlockMap's inverse: the mode and whether name is a block map.
func ModeOfMap(name string) (string, bool) {
	for _, m := range []string{"stcp", "atcp", "sudp", "audp"} {
		for _, f := range Families {
			if name == BlockMap(m, f) {
				return m, true
			}
		}
	}
	return "", false
}

const fullPrefix = "fp_full_"

func fullCounter(mode string) string { return fullPrefix + mode }

// SetSpec is one set and, when Fill, the whole of its contents (replaced
// on every Install); sets without Fill keep what the kernel put in them.
type SetSpec struct {
	Set      *nftables.Set
	Fill     bool
	Elements []nftables.SetElement
}

// ChainSpec is one chain and its rules.
type ChainSpec struct {
	Chain *nftables.Chain
	Rules [][]expr.Any
}

// Ruleset is the whole fast path, as Install applies it.
type Ruleset struct {
	Table    *nftables.Table
	Sets     []SetSpec
	Counters []string
	Chains   []ChainSpec // the base chains first
	// Disarmed are the base chains' rules without detection: blocks made
	// stay enforced while no ps-block reports new ones.
	Disarmed [][]expr.Any
	// BlockMaps are the maps the kernel writes blocks into.
	BlockMaps []*nftables.Set
	// Counts are the stage and pair sets, cleared for a source when its
	// block is lifted.
	Counts []*nftables.Set
}

// Build turns settings and the guard's protected networks into the
// ruleset. It allocates nothing in the kernel.
func Build(s Settings, protected []PrefixRange) (*Ruleset, error) {
	if s.Table == "" {
		return nil, fmt.Errorf("fastpath: no table name")
	}
	if s.Trigger < 0 || s.Trigger > maxTrigger {
		return nil, fmt.Errorf("fastpath: SCAN_TRIGGER %d outside 0-%d", s.Trigger, maxTrigger)
	}
	if s.Trigger > 0 && s.Idle <= 0 {
		return nil, fmt.Errorf("fastpath: SCAN_TRIGGER needs STATE_IDLE_TIMEOUT")
	}
	t := &nftables.Table{Name: s.Table, Family: nftables.TableFamilyINet}
	b := &builder{s: s, rs: &Ruleset{Table: t}}
	accept := nftables.ChainPolicyAccept
	base := &nftables.Chain{Name: BaseChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	b.rs.Chains = append(b.rs.Chains, ChainSpec{Chain: base})
	var fwd *nftables.Chain
	if s.Forward {
		fwd = &nftables.Chain{Name: ForwardChain, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}
		b.rs.Chains = append(b.rs.Chains, ChainSpec{Chain: fwd})
	}
	p4, p6 := protectElements(protected)
	prot := map[string]*nftables.Set{
		"4": b.set(SetSpec{Set: &nftables.Set{Name: Protect4, KeyType: nftables.TypeIPAddr, Interval: true}, Fill: true, Elements: p4}),
		"6": b.set(SetSpec{Set: &nftables.Set{Name: Protect6, KeyType: nftables.TypeIP6Addr, Interval: true}, Fill: true, Elements: p6}),
	}
	if s.Rate > 0 {
		b.rs.Counters = append(b.rs.Counters, limitedCtr)
		rate, unit := limitOf(s.Rate)
		b.chain(rateChain, []expr.Any{
			&expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Unit: unit, Burst: uint32(max(s.Burst, 1)), Over: true},
			objref(limitedCtr),
			&expr.Verdict{Kind: expr.VerdictAccept},
		})
	}
	var drops, dispatch [][]expr.Any
	for _, w := range s.Watches {
		ports := b.set(SetSpec{Set: &nftables.Set{Name: "fp_" + w.Mode + "_ports", KeyType: nftables.TypeInetService, Interval: true},
			Fill: true, Elements: portElements(w.Ports)})
		b.rs.Counters = append(b.rs.Counters, fullCounter(w.Mode))
		for _, f := range Families {
			m := b.set(SetSpec{Set: &nftables.Set{Name: BlockMap(w.Mode, f), KeyType: f.Type, DataType: nftables.TypeInetService,
				IsMap: true, HasTimeout: true, Dynamic: true, Size: BlockSize}})
			b.rs.BlockMaps = append(b.rs.BlockMaps, m)
			drops = append(drops, join(saddr(f, 1), lookup(m), []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}))
			dispatch = append(dispatch, join(family(f), probe(w), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID},
				&expr.Verdict{Kind: expr.VerdictJump, Chain: b.watchChains(w, f, m)},
			}))
		}
	}
	var guard [][]expr.Any
	for _, f := range Families {
		guard = append(guard, join(saddr(f, 1), lookup(prot[f.Suffix]), ret()))
	}
	notHost := [][]expr.Any{{
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.PACKET_HOST}},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}}
	// Blocked sources first (dropped), then the guard's networks (never
	// acted upon), then only packets addressed to this host, then probes.
	b.rs.Chains[0].Rules = concat(drops, guard, notHost, dispatch)
	b.rs.Disarmed = drops
	if fwd != nil {
		b.rs.Chains[1].Rules = drops
	}
	return b.rs, nil
}

type builder struct {
	s  Settings
	rs *Ruleset
}

func (b *builder) set(sp SetSpec) *nftables.Set {
	sp.Set.Table = b.rs.Table
	sp.Set.KeyByteOrder = binaryutil.BigEndian
	b.rs.Sets = append(b.rs.Sets, sp)
	return sp.Set
}

func (b *builder) chain(name string, rules ...[]expr.Any) string {
	c := &nftables.Chain{Name: name, Table: b.rs.Table}
	b.rs.Chains = append(b.rs.Chains, ChainSpec{Chain: c, Rules: rules})
	return name
}

// watchChains builds the chains of one mode and family and returns the
// name of the one the base chain jumps to.
//
//	fp_atcp4:       a socket would take the packet: return (a listening
//	                daemon, an FTP data port bound a moment ago)
//	                [SCAN_TRIGGER=0] goto fp_atcp4_block
//	                source.port seen before: return (a retransmission)
//	                add source.port to the pairs; goto fp_atcp4_count
//	                (pairs full) count it, return: the pipeline decides
//	fp_atcp4_count: source at stage N: goto fp_atcp4_block
//	                source at stage k: move it to stage k+1, return
//	                (stage k+1 full) count it, return
//	                else: stage 1, return
//	fp_atcp4_block: over BLOCK_RATE: accept (the pipeline decides)
//	                add source : port to the block map, drop
//	                (map full) count it, return
//
// Each stage set's and pair's timeout is STATE_IDLE_TIMEOUT from the
// probe that put it there.
func (b *builder) watchChains(w Watch, f Family, blockMap *nftables.Set) string {
	name := BlockMap(w.Mode, f)
	full := []expr.Any{objref(fullCounter(w.Mode)), &expr.Verdict{Kind: expr.VerdictReturn}}

	var block [][]expr.Any
	if b.s.Rate > 0 {
		block = append(block, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: rateChain}})
	}
	block = append(block, join(saddr(f, 1), []expr.Any{
		&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Dynset{SrcRegKey: 1, SrcRegData: 2, SetName: blockMap.Name, SetID: blockMap.ID,
			Operation: unix.NFT_DYNSET_OP_ADD, Timeout: b.s.Duration},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}), full)
	b.chain(name+"_block", block...)

	noSocket := [][]expr.Any{socket(0), socket(1)}
	if b.s.Trigger == 0 {
		return b.chain(name, append(noSocket, goTo(name+"_block"))...)
	}
	idle := b.s.Idle
	seen := b.set(SetSpec{Set: &nftables.Set{Name: name + "_seen", KeyType: nftables.MustConcatSetType(f.Type, nftables.TypeInetService),
		HasTimeout: true, Dynamic: true, Size: SeenSize}})
	b.rs.Counts = append(b.rs.Counts, seen)
	stages := make([]*nftables.Set, b.s.Trigger+1) // stages[k]: k distinct ports seen
	for k := 1; k <= b.s.Trigger; k++ {
		stages[k] = b.set(SetSpec{Set: &nftables.Set{Name: fmt.Sprintf("%s_s%d", name, k), KeyType: f.Type,
			HasTimeout: true, Dynamic: true, Size: StageSize}})
		b.rs.Counts = append(b.rs.Counts, stages[k])
	}
	pair := func() []expr.Any {
		return join(saddr(f, 1), []expr.Any{&expr.Payload{DestRegister: f.portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}})
	}
	count := [][]expr.Any{join(saddr(f, 1), lookup(stages[b.s.Trigger]), goTo(name+"_block"))}
	for k := b.s.Trigger - 1; k >= 1; k-- {
		count = append(count,
			join(saddr(f, 1), lookup(stages[k]), update(stages[k+1], idle), ret()),
			join(saddr(f, 1), lookup(stages[k]), full))
	}
	count = append(count, join(saddr(f, 1), update(stages[1], idle), ret()), full)
	b.chain(name+"_count", count...)
	return b.chain(name, append(noSocket,
		join(pair(), lookup(seen), ret()),
		join(pair(), []expr.Any{&expr.Dynset{SrcRegKey: 1, SetName: seen.Name, SetID: seen.ID, Operation: unix.NFT_DYNSET_OP_ADD, Timeout: idle}}, goTo(name+"_count")),
		full)...)
}

// probe matches the packets a sensor of w's mode counts, before the port
// and socket checks: TCP segments without ACK and RST, or UDP datagrams.
func probe(w Watch) []expr.Any {
	if w.Proto == UDP {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		}
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x14}, Xor: []byte{0}}, // ACK|RST
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
	}
}

// socket is `socket transparent V return`: the packet would reach a
// socket (the expression breaks when there is none).
func socket(v byte) []expr.Any {
	return []expr.Any{
		&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{v}},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
}

func family(f Family) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.NFProto}},
	}
}

// saddr loads the source address; the family check before it costs little
// and lets nft(8) print "ip saddr" rather than a raw offset.
func saddr(f Family, reg uint32) []expr.Any {
	return append(family(f), &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: f.SrcOff, Len: f.Len})
}

func lookup(s *nftables.Set) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}}
}

func update(s *nftables.Set, timeout time.Duration) []expr.Any {
	return []expr.Any{&expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: timeout}}
}

func ret() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}} }

func goTo(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}
}

func objref(counter string) expr.Any {
	return &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: counter}
}

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func concat(parts ...[][]expr.Any) [][]expr.Any {
	var out [][]expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// limitOf expresses a rate per second as the kernel's whole number per
// unit, in the smallest unit that keeps it at least 1.
func limitOf(perSecond float64) (uint64, expr.LimitTime) {
	for _, u := range []expr.LimitTime{expr.LimitTimeSecond, expr.LimitTimeMinute, expr.LimitTimeHour} {
		if r := perSecond * float64(u); r >= 1 && (r == math.Trunc(r) || u == expr.LimitTimeHour) {
			return uint64(math.Round(r)), u
		}
	}
	return 1, expr.LimitTimeDay
}

// String renders the ruleset for the golden test and for a reader: one
// line a set, a counter and a rule.
func (rs *Ruleset) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "table inet %s\n", rs.Table.Name)
	for _, sp := range rs.Sets {
		s := sp.Set
		fmt.Fprintf(&sb, "set %s key=%s", s.Name, s.KeyType.Name)
		if s.IsMap {
			fmt.Fprintf(&sb, " data=%s", s.DataType.Name)
		}
		for _, fl := range []struct {
			on   bool
			name string
		}{{s.Interval, "interval"}, {s.HasTimeout, "timeout"}, {s.Dynamic, "dynamic"}} {
			if fl.on {
				sb.WriteString(" " + fl.name)
			}
		}
		if s.Size > 0 {
			fmt.Fprintf(&sb, " size=%d", s.Size)
		}
		if sp.Fill {
			fmt.Fprintf(&sb, " elements=%d:", len(sp.Elements))
			for _, e := range sp.Elements {
				fmt.Fprintf(&sb, " %x", e.Key)
				if e.IntervalEnd {
					sb.WriteString("(end)")
				}
			}
		}
		sb.WriteByte('\n')
	}
	for _, c := range rs.Counters {
		fmt.Fprintf(&sb, "counter %s\n", c)
	}
	for _, c := range rs.Chains {
		fmt.Fprintf(&sb, "chain %s", c.Chain.Name)
		if c.Chain.Hooknum != nil {
			fmt.Fprintf(&sb, " hook=%d priority=%d", *c.Chain.Hooknum, *c.Chain.Priority)
		}
		sb.WriteByte('\n')
		for _, r := range c.Rules {
			sb.WriteString("  ")
			for i, e := range r {
				if i > 0 {
					sb.WriteString(" ; ")
				}
				sb.WriteString(strings.TrimPrefix(fmt.Sprintf("%T%+v", e, e), "*expr."))
			}
			sb.WriteByte('\n')
		}
	}
	return sb.String()
}
