//go:build amd64 || arm64

package judge

// prefetch asks the processor to bring the cache line at p into its cache
// without waiting for it: unlike a load, it holds up no later instruction.
//
//go:noescape
func prefetch(p *entry)
