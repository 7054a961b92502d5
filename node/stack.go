package node

// requestStack is the stack a request handler grows to at its start.
// HTTP/2 runs every request on a goroutine of its own, which starts with a
// few kB of stack; a request that reaches SQLite (the FHIR store, the
// exchange state) needs tens of kB, and the runtime doubles the stack on
// the way there, copying it — deeper each time — at every step. Growing it
// once, while the stack is still shallow, costs one allocation and a short
// copy. In the Notified Pull benchmark stack growth fell from 5.7 % to 3.9 %
// of the CPU (docs/performance.md).
const requestStack = 64 << 10

// stackGrowth is never true: it keeps the compiler from dropping the
// frame of growStack.
var stackGrowth = false

// growStack makes its caller's goroutine grow its stack to requestStack at
// once: the frame below is reserved (and the stack grown for it on entry)
// though it is never written.
//
//go:noinline
func growStack() {
	if stackGrowth {
		var frame [requestStack]byte
		frame[0] = 1
		sinkFrame(frame[:])
	}
}

//go:noinline
func sinkFrame(b []byte) { _ = b }
