//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package consent

import "syscall"

// peekIdle looks at the socket without consuming or waiting: EAGAIN means
// nothing arrived, so the peer has not closed. End of stream (0 bytes), an
// error (reset) or pending data (possibly before a FIN) all say no.
func peekIdle(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
