// Package logtest keeps log lines for tests: a Book takes them as a logf
// function (Logf) or as the administrator's log of a stage (Admin,
// Security, Attack, AttackLimited), from several goroutines.
package logtest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Book is safe for concurrent use; its zero value is ready.
type Book struct {
	mu    sync.Mutex
	lines []string
}

// Logf keeps one line.
func (b *Book) Logf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, fmt.Sprintf(format, args...))
}

// The four levels of shared/alert's Logger, all kept alike.
func (b *Book) Admin(format string, args ...any)         { b.Logf(format, args...) }
func (b *Book) Security(format string, args ...any)      { b.Logf(format, args...) }
func (b *Book) Attack(format string, args ...any)        { b.Logf(format, args...) }
func (b *Book) AttackLimited(format string, args ...any) { b.Logf(format, args...) }

// Lines is a copy of the lines kept so far.
func (b *Book) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.lines)
}

// Count is how many lines contain sub.
func (b *Book) Count(sub string) int {
	n := 0
	for _, l := range b.Lines() {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// Has reports whether a line contains sub.
func (b *Book) Has(sub string) bool { return b.Count(sub) > 0 }
