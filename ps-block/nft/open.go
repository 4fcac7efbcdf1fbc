package nft

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sendBuf is the netlink send buffer asked for, so that a batch of
// maxBatchElems fits in one sendmsg (the kernel refuses larger messages with
// EMSGSIZE). SO_SNDBUFFORCE needs CAP_NET_ADMIN, which the action needs anyway.
const sendBuf = 4 << 20

// Open returns a lasting nftables connection; netns is a namespace descriptor,
// or 0 for the caller's own namespace.
func Open(netns int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(forceSendBuf)}
	if netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nft: open netlink: %w", err)
	}
	return c, nil
}

func forceSendBuf(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink raw conn: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuf)
	}); err != nil {
		return fmt.Errorf("netlink control: %w", err)
	}
	if serr != nil {
		// Without the privilege, fall back to the capped buffer.
		return c.SetWriteBuffer(sendBuf)
	}
	return nil
}
