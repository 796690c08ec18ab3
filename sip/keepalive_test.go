package sip

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RFC 5626 §4.4.1 keep-alive on a connection (seed 001 asks for link
// keep-alives): a CRLFCRLF ping gets a CRLF pong, and the connection goes
// on carrying SIP.
func TestCRLFKeepAlive(t *testing.T) {
	s := startServer(t, 65535)
	c, err := net.Dial("tcp", s.Addr("tcp"))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "\r\n", string(buf[:n]), "pong")
	_, err = c.Write([]byte(request("OPTIONS", "sip:rcs.local", "TCP", c.LocalAddr().String(), "")))
	require.NoError(t, err)
	n, err = c.Read(buf)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(buf[:n]), "SIP/2.0 200 OK\r\n"), string(buf[:n]))
}
