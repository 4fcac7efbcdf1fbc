package ratelimit

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	type step struct {
		at   time.Duration // since t0
		n    int           // events at that moment
		want int           // how many are allowed
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst then refill", 10, 5, []step{{0, 8, 5}, {100 * time.Millisecond, 3, 1}, {time.Second, 20, 5}}},
		{"never above burst", 100, 2, []step{{time.Hour, 5, 2}}},
		{"unlimited", 0, 0, []step{{0, 1000, 1000}}},
		{"clock going back gives nothing", 1, 1, []step{{time.Second, 1, 1}, {0, 1, 0}}},
		{"fraction accumulates", 2, 1, []step{{0, 1, 1}, {250 * time.Millisecond, 1, 0}, {500 * time.Millisecond, 1, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.rate, tc.burst, t0)
			for i, s := range tc.steps {
				got := 0
				for range s.n {
					if b.Allow(t0.Add(s.at)) {
						got++
					}
				}
				if got != s.want {
					t.Errorf("step %d: allowed %d, want %d", i, got, s.want)
				}
			}
		})
	}
}
