package benchfloor

import "testing"

// BenchmarkFloor reports the machine's floors on their own:
// go test ./internal/benchfloor -run '^$' -bench . -benchmem
func BenchmarkFloor(b *testing.B) { Run(b, "") }
