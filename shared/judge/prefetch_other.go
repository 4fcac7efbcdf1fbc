//go:build !amd64 && !arm64

package judge

// prefetch does nothing where the package has no prefetch instruction.
func prefetch(p *entry) {}
