# PortSentry pipeline: build, test, benchmark, fuzz, install, package.
GO       ?= go
PROGRAMS := ps-listen ps-sniff ps-judge ps-block
BINS     := $(PROGRAMS:%=bin/%)
STATICCHECK_VERSION := v0.8.2
# Seconds each fuzz target runs in `make test` (short) and `make fuzz`.
FUZZTIME_SHORT ?= 3s
FUZZTIME       ?= 60s

export CGO_ENABLED := 0

.PHONY: all build deps test unit lint fuzz fuzz-short bench replay demo clean gocheck man install uninstall deb

all: build

build: $(BINS) bin/hitgen

# The version every program prints (--version, its first log line).
VERSION ?= $(shell git describe --always --dirty --tags 2>/dev/null || echo unknown)

bin/%: FORCE gocheck
	$(GO) build -trimpath -ldflags "-X github.com/portsentry/pipeline/shared/stage.version=$(VERSION)" -o $@ ./$*

bin/hitgen: FORCE
	$(GO) build -o $@ ./tests/hitgen

FORCE:

# go.mod asks for Go 1.26, which any Go from 1.21 on downloads by itself
# (GOTOOLCHAIN=auto); Debian 12's golang-go (1.19) cannot: say so plainly
# instead of its error about go.mod.
gocheck:
	@v=$$($(GO) env GOVERSION 2>/dev/null) || { echo "make: no Go ($(GO)): README.md, Quick start, says how to get it" >&2; exit 1; }; \
	v=$${v#go}; if [ "$$(printf '%s\n' 1.21 "$$v" | sort -V | head -n 1)" != 1.21 ]; then \
	  echo "make: Go $$v is too old: this project needs Go 1.26 (go.mod), which Go 1.21 or later fetches by itself; README.md, Quick start, says how to get it" >&2; exit 1; fi

# The programs' manual pages are rendered from the built programs (their
# hidden --man flag), so they never drift from the flags; portsentry.conf(5)
# is written by hand in man/.
MAN8 := $(PROGRAMS:%=bin/man/%.8)

man: $(MAN8)

bin/man/%.8: bin/%
	@mkdir -p bin/man
	$< --man > $@

# The whole suite: lint, unit and kernel tests, end-to-end lab tests, and a
# few seconds of every fuzz target. Root and network namespaces are needed for
# the lab tests; with CI=true a test that cannot run them fails.
test: deps build lint unit fuzz-short

# The lab's real peers (nmap, hping3, nftables, fail2ban, ...) from Debian's
# packages, installed only where missing.
deps:
	@tests/install-deps.sh

# go test shows a skip's reason only with -v: say it here, loudly.
unit:
	@if [ "$$(id -u)" != 0 ]; then echo "*** make unit: not root, so the kernel and lab tests (network namespaces, nftables, packet sockets, real scanners) SKIP; run it as root ***"; fi
	$(GO) test -count=1 -timeout 14m ./...

lint: bin/staticcheck
	@echo "== gofmt, go vet, staticcheck"
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	bin/staticcheck ./...

bin/staticcheck:
	GOBIN=$(CURDIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

fuzz-short:
	@FUZZTIME=$(FUZZTIME_SHORT) tests/fuzz-all.sh

fuzz:
	@FUZZTIME=$(FUZZTIME) tests/fuzz-all.sh

# Throughput, memory and lab figures; long, and prints what it is doing.
bench: build
	@tests/bench.sh

# Sets up a two-namespace lab, scans it with and without the pipeline, and
# prints what the scanner saw side by side; then tears the lab down.
demo: build
	@tests/demo.sh

# Replays a captured hit log through ps-judge and ps-block --dry-run with the
# built-in defaults: the decisions and what would be done, changing nothing.
replay: bin/ps-judge bin/ps-block
	bin/ps-judge -c /dev/null < contrib/sample-hits.jsonl | bin/ps-block -c /dev/null --dry-run

clean:
	rm -rf bin

# Where `make install` puts things: PREFIX for the programs, pages, units and
# documentation; the configuration in SYSCONFDIR whatever the PREFIX (the
# units name /etc/portsentry/portsentry.conf). DESTDIR stages it all
# elsewhere (packages).
PREFIX      ?= /usr/local
SYSCONFDIR  ?= /etc
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/portsentry
LIBDIR      ?= $(PREFIX)/lib
UNITDIR     ?= $(LIBDIR)/systemd/system
INSTALL     ?= install
UNITS       := $(notdir $(wildcard contrib/systemd/*.service contrib/systemd/*.target))
EXAMPLES    := examples/ps-quiet-hours.sh nats/nats-server.conf $(patsubst contrib/%,%,$(shell find contrib/systemd/fleet -type f))
# The units and examples name the programs and the README under /usr/local.
PATHS_SED   := -e 's|/usr/local/sbin/|$(SBINDIR)/|g' -e 's|/usr/local/share/doc/portsentry/|$(DOCDIR)/|g'
# The files install makes outside DOCDIR, which is wholly the project's, for
# uninstall (the configuration is not among them: it is the administrator's).
INSTALLED   := $(PROGRAMS:%=$(SBINDIR)/%) $(PROGRAMS:%=$(MANDIR)/man8/%.8) $(MANDIR)/man5/portsentry.conf.5 \
	$(UNITS:%=$(UNITDIR)/%) $(LIBDIR)/sysusers.d/portsentry.conf $(LIBDIR)/tmpfiles.d/portsentry.conf \
	$(SYSCONFDIR)/logrotate.d/portsentry

# Installs the programs, manual pages, systemd units, sysusers and tmpfiles
# files, logrotate file, documentation and examples; the example
# configuration and ignore file only where none exists yet. Without DESTDIR
# it also creates the users and directories the units need (the units are
# left disabled: README, "Install").
install: build man
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(LIBDIR)/sysusers.d $(DESTDIR)$(LIBDIR)/tmpfiles.d $(DESTDIR)$(SYSCONFDIR)/logrotate.d \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/portsentry
	$(INSTALL) -m 0755 $(BINS) $(DESTDIR)$(SBINDIR)/
	$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 man/portsentry.conf.5 $(DESTDIR)$(MANDIR)/man5/
	for u in $(UNITS); do sed $(PATHS_SED) contrib/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	$(INSTALL) -m 0644 contrib/systemd/portsentry.sysusers $(DESTDIR)$(LIBDIR)/sysusers.d/portsentry.conf
	$(INSTALL) -m 0644 contrib/systemd/portsentry.tmpfiles $(DESTDIR)$(LIBDIR)/tmpfiles.d/portsentry.conf
	$(INSTALL) -m 0644 contrib/logrotate/portsentry $(DESTDIR)$(SYSCONFDIR)/logrotate.d/portsentry
	$(INSTALL) -m 0644 README.md SECURITY.md contrib/portsentry.conf contrib/portsentry.ignore $(DESTDIR)$(DOCDIR)/
	for e in $(EXAMPLES); do d=$(DESTDIR)$(DOCDIR)/examples/$${e#examples/}; $(INSTALL) -d $$(dirname $$d) && \
		sed $(PATHS_SED) contrib/$$e > $$d && chmod --reference=contrib/$$e $$d || exit 1; done
	for f in portsentry.conf portsentry.ignore; do \
		if [ -e $(DESTDIR)$(SYSCONFDIR)/portsentry/$$f ]; then echo "kept the existing $(DESTDIR)$(SYSCONFDIR)/portsentry/$$f; the example is $(DESTDIR)$(DOCDIR)/$$f"; \
		else $(INSTALL) -m 0644 contrib/$$f $(DESTDIR)$(SYSCONFDIR)/portsentry/$$f || exit 1; fi; done
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then \
		echo "systemd-sysusers portsentry.conf; systemd-tmpfiles --create portsentry.conf"; \
		systemd-sysusers portsentry.conf && systemd-tmpfiles --create portsentry.conf || exit 1; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; fi

# Removes what install made; the configuration in $(SYSCONFDIR)/portsentry,
# the state in /var/lib/portsentry, the users and the nftables table stay
# (README, "Remove").
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# A Debian package of `make install` with PREFIX=/usr, built with dpkg-deb
# alone: conffiles for everything under /etc, the maintainer scripts of
# contrib/debian (users and directories at configure, units disabled at
# remove, state removed at purge). Its version sorts above Debian's 1.2.
DEB_VERSION ?= 2.0~git$(shell git rev-list --count HEAD 2>/dev/null || echo 0).$(subst -,.,$(VERSION))
DEB_ARCH    ?= $(shell dpkg --print-architecture)
DEB         := bin/portsentry_$(DEB_VERSION)_$(DEB_ARCH).deb

deb:
	rm -rf bin/deb bin/portsentry_*.deb
	$(MAKE) install DESTDIR=$(CURDIR)/bin/deb PREFIX=/usr
	gzip -9n bin/deb/usr/share/man/man*/*
	$(INSTALL) -d bin/deb/DEBIAN
	$(INSTALL) -m 0755 contrib/debian/postinst contrib/debian/prerm contrib/debian/postrm bin/deb/DEBIAN/
	cd bin/deb && find etc -type f | sed 's|^|/|' | sort > DEBIAN/conffiles
	sed -e 's|@VERSION@|$(DEB_VERSION)|' -e 's|@ARCH@|$(DEB_ARCH)|' \
		-e "s|@SIZE@|$$(du -sk --exclude=DEBIAN bin/deb | cut -f1)|" contrib/debian/control > bin/deb/DEBIAN/control
	dpkg-deb --root-owner-group -Zgzip --build bin/deb $(DEB)
