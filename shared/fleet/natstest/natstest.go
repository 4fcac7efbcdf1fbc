// Package natstest runs an embedded NATS server for tests: JetStream on,
// on loopback, quiet, stopped when the test ends.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Run starts a server with opts (nil: JetStream on 127.0.0.1, any port,
// its store in dir) and shuts it down in t.Cleanup.
func Run(t testing.TB, dir string, port int, opts *server.Options) *server.Server {
	t.Helper()
	if opts == nil {
		opts = &server.Options{JetStream: true}
	}
	opts.Host, opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", port, dir, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}
