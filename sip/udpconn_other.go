//go:build !linux

package sip

import "net"

func newRawUDPConn(pc net.PacketConn) net.PacketConn { return pc }
