// Package suggest finds the known word a mistyped one was meant to be (a
// configuration key, a flag), so a message can name it.
package suggest

import "strings"

// Nearest returns the word of known closest to word, ignoring case, when it
// is close enough to be a likely typo: an edit distance (insertions,
// deletions, substitutions and swaps of neighbours) of at most one for
// every four letters, and at least one. ok is false when none is.
func Nearest(word string, known []string) (best string, ok bool) {
	w := strings.ToUpper(word)
	limit := max(1, len(w)/4)
	bestD := limit + 1
	for _, k := range known {
		if d := distance(w, strings.ToUpper(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best, bestD <= limit
}

// distance is the optimal string alignment distance between a and b,
// byte-wise (keys and flags are ASCII), with two rows of a bounded size.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Nothing this long is a typo of a key; don't spend on it.
		return max(len(a), len(b))
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
