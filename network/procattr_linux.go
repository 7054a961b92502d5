package network

import "syscall"

// childProcAttr makes the kernel kill a component when the network process
// dies, however it dies: no orphans hold the ports and data files.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
