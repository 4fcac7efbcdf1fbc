// Package ratelimit is a token bucket for new blocks: a flood of spoofed
// decisions must not turn into a flood of firewall changes. It is driven by
// an injected clock so tests need not sleep.
package ratelimit

import "time"

// Bucket allows Rate events per second on average and Burst at once.
// Rate <= 0 means no limit. It is not safe for concurrent use.
type Bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// New returns a full bucket.
func New(rate float64, burst int, now time.Time) *Bucket {
	if burst < 1 {
		burst = 1
	}
	return &Bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// Allow takes one token at time now, if there is one.
func (b *Bucket) Allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}
