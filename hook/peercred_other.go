//go:build !linux

package hook

import "net"

// peerUID is unknown off Linux: the socket's file mode alone decides.
func peerUID(net.Conn) (int, bool) { return 0, false }
