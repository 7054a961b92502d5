//go:build !linux

package network

import "syscall"

// childProcAttr: without a parent-death signal the components are stopped
// by StopProcesses only.
func childProcAttr() *syscall.SysProcAttr { return nil }
