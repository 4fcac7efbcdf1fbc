// Package pcapfile reads capture files (pcap and pcapng, through gopacket's
// pure-Go pcapgo) for replay, with each packet's link type mapped to what
// package decode takes.
package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/portsentry/pipeline/ps-sniff/decode"
)

// Reader reads one capture file.
type Reader struct {
	f    *os.File
	pcap *pcapgo.Reader
	ng   *pcapgo.NgReader
	link decode.LinkType
}

// Open opens path and checks that it is a pcap or pcapng file whose link
// type ps-sniff can decode.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture file: %w", err)
	}
	r, err := newReader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func newReader(f *os.File, path string) (*Reader, error) {
	br := bufio.NewReaderSize(f, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%s: not a pcap or pcapng file: too short", path)
	}
	r := &Reader{f: f}
	var lt uint32
	switch m := binary.LittleEndian.Uint32(magic); m {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1: // pcap, µs and ns, either byte order
		// gopacket keeps link types in a byte, which turns SLL2 (276)
		// into 20: read the header's field itself.
		hdr, err := br.Peek(24)
		if err != nil {
			return nil, fmt.Errorf("%s: pcap header cut short", path)
		}
		order := binary.ByteOrder(binary.LittleEndian)
		if m == 0xd4c3b2a1 || m == 0x4d3cb2a1 {
			order = binary.BigEndian
		}
		lt = order.Uint32(hdr[20:24]) & 0x0fffffff // the top bits tell FCS length
		if r.pcap, err = pcapgo.NewReader(br); err != nil {
			return nil, fmt.Errorf("%s: bad pcap header: %w", path, err)
		}
	case 0x0a0d0d0a: // pcapng section header block
		if r.ng, err = pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{}); err != nil {
			return nil, fmt.Errorf("%s: bad pcapng file: %w", path, err)
		}
		lt = uint32(r.ng.LinkType())
	default:
		return nil, fmt.Errorf("%s: not a pcap or pcapng file (starts with %x)", path, magic)
	}
	if r.link, err = linkType(lt); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// linkType maps a pcap link type. 12 and 14 are DLT_RAW on some systems.
func linkType(lt uint32) (decode.LinkType, error) {
	switch lt {
	case uint32(layers.LinkTypeEthernet):
		return decode.LinkEthernet, nil
	case uint32(layers.LinkTypeLinuxSLL):
		return decode.LinkSLL, nil
	case 276: // LINKTYPE_LINUX_SLL2
		return decode.LinkSLL2, nil
	case uint32(layers.LinkTypeRaw), uint32(layers.LinkTypeIPv4), uint32(layers.LinkTypeIPv6), 12, 14:
		return decode.LinkRaw, nil
	}
	return 0, fmt.Errorf("link type %d is not supported (Ethernet, Linux cooked or raw IP are)", lt)
}

// Link is the file's link type.
func (r *Reader) Link() decode.LinkType { return r.link }

// Next returns the next packet and its timestamp, or io.EOF at the end. The
// data is valid until the next call.
func (r *Reader) Next() ([]byte, time.Time, error) {
	var data []byte
	var ci gopacket.CaptureInfo
	var err error
	if r.pcap != nil {
		data, ci, err = r.pcap.ZeroCopyReadPacketData()
	} else {
		data, ci, err = r.ng.ZeroCopyReadPacketData()
	}
	if errors.Is(err, io.EOF) {
		return nil, time.Time{}, io.EOF
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("reading %s: %w", r.f.Name(), err)
	}
	return data, ci.Timestamp, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }
