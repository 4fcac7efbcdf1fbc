package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/portsentry/pipeline/shared/event"
)

// Fleet holds the keys of the NATS transport and of the fleet: the name
// this host gives its decisions, the addresses it registers as a member,
// and the connection's credentials and TLS files. Empty means not set.
type Fleet struct {
	Host      string       // FLEET_HOST; "" means the host name up to its first dot
	Addresses []netip.Addr // FLEET_ADDRESSES: registered beside the interfaces' addresses

	User, Password string // NATS_USER, NATS_PASSWORD
	Token          string // NATS_TOKEN
	NKeySeed       string // NATS_NKEY_SEED: file holding an nkey seed
	Creds          string // NATS_CREDS: a user credentials file (JWT and seed)
	TLSCA          string // NATS_TLS_CA: the CA that signed the server's certificate
	TLSCert        string // NATS_TLS_CERT and NATS_TLS_KEY: this client's certificate
	TLSKey         string
}

// The fleet's keys join the setters here, so that config.go keeps the keys
// of one stage's pipeline and this file those of the fleet.
func init() {
	for k, s := range map[string]setter{
		"FLEET_HOST":      hostKey,
		"FLEET_ADDRESSES": addrsKey,
		"NATS_USER":       stringKey(func(c *Config) *string { return &c.Fleet.User }),
		"NATS_PASSWORD":   stringKey(func(c *Config) *string { return &c.Fleet.Password }),
		"NATS_TOKEN":      stringKey(func(c *Config) *string { return &c.Fleet.Token }),
		"NATS_NKEY_SEED":  optional(pathKey(func(c *Config) *string { return &c.Fleet.NKeySeed })),
		"NATS_CREDS":      optional(pathKey(func(c *Config) *string { return &c.Fleet.Creds })),
		"NATS_TLS_CA":     optional(pathKey(func(c *Config) *string { return &c.Fleet.TLSCA })),
		"NATS_TLS_CERT":   optional(pathKey(func(c *Config) *string { return &c.Fleet.TLSCert })),
		"NATS_TLS_KEY":    optional(pathKey(func(c *Config) *string { return &c.Fleet.TLSKey })),
	} {
		setters[k] = s
	}
}

// optional lets an empty value mean "not set", as the example file has it.
func optional(set setter) setter {
	return func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		return set(c, v)
	}
}

func hostKey(c *Config, v string) error {
	if v != "" && !event.ValidHost(v) {
		return fmt.Errorf("%q is not a host name of 1 to %d letters, digits, _ and - (no dots: it is a NATS subject token)", v, event.MaxHost)
	}
	c.Fleet.Host = v
	return nil
}

// maxFleetAddresses bounds FLEET_ADDRESSES, as every member's list is
// bounded when read from the bucket.
const maxFleetAddresses = 64

func addrsKey(c *Config, v string) error {
	var out []netip.Addr
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		a, err := event.ParseAddr(f)
		if err != nil {
			return fmt.Errorf("%q is not an IP address", f)
		}
		out = append(out, a)
	}
	if len(out) > maxFleetAddresses {
		return fmt.Errorf("%d addresses, at most %d", len(out), maxFleetAddresses)
	}
	c.Fleet.Addresses = out
	return nil
}

// CheckNATS reports a contradiction among the NATS credentials: the server
// takes one way of proving who a client is.
func (f *Fleet) CheckNATS() error {
	ways := 0
	for _, set := range []bool{f.User != "", f.Token != "", f.NKeySeed != "", f.Creds != ""} {
		if set {
			ways++
		}
	}
	switch {
	case ways > 1:
		return errors.New("NATS_USER, NATS_TOKEN, NATS_NKEY_SEED and NATS_CREDS exclude each other: set one")
	case f.Password != "" && f.User == "":
		return errors.New("NATS_PASSWORD is set without NATS_USER")
	case (f.TLSCert == "") != (f.TLSKey == ""):
		return errors.New("NATS_TLS_CERT and NATS_TLS_KEY go together")
	}
	return nil
}
