package sip

import (
	"strings"
	"testing"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func clusterServer(self, key string) *Server {
	s := &Server{log: zap.NewNop()}
	s.SetCluster(ClusterConfig{Self: self, Key: []byte(key)})
	return s
}

func withRoute(t *testing.T, route string) *siplib.Request {
	t.Helper()
	msg, err := siplib.ParseMessage([]byte(request("MESSAGE", "sip:bob@127.0.0.1:5070", "TCP", "127.0.0.1:6000", "Route: "+route+"\r\n")))
	require.NoError(t, err)
	return msg.(*siplib.Request)
}

// A flow token names the flow and the node holding it, and only the nodes
// sharing the key can make one.
func TestFlowToken(t *testing.T) {
	n1, n2 := clusterServer("n1", "shared"), clusterServer("n2", "shared")
	flow := Flow{Node: "n2", Transport: "tcp", Source: "127.0.0.1:40294", Contact: "sip:bob@127.0.0.1:40294;transport=tcp"}
	tok := n1.token(flow)
	assert.Regexp(t, `^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`, tok, "fits a SIP URI user part unescaped")
	got, err := n2.flowOf(tok)
	require.NoError(t, err)
	assert.Equal(t, flow, got)

	p, sig, _ := strings.Cut(tok, ".")
	other := n1.token(Flow{Node: "n2", Transport: "tcp", Source: "127.0.0.1:1"})
	op, _, _ := strings.Cut(other, ".")
	for name, bad := range map[string]string{
		"no signature":       p,
		"signature of other": op + "." + sig,
		"not base64":         "!!." + sig,
		"truncated sig":      p + "." + sig[:10],
		"other key":          clusterServer("n1", "not shared").token(flow),
	} {
		_, err := n2.flowOf(bad)
		assert.Error(t, err, name)
	}
}

func TestForwarded(t *testing.T) {
	n1, n2 := clusterServer("n1", "shared"), clusterServer("n2", "shared")
	flow := Flow{Node: "n2", Transport: "tcp", Source: "127.0.0.1:40294"}
	tok := n1.token(flow)
	cases := []struct {
		name  string
		route string
		ok    bool
	}{
		{"token of this node", "<sip:" + tok + "@127.0.0.1:5070;transport=tcp;lr>", true},
		{"handset's Service-Route", "<sip:orig@127.0.0.1:5070;lr>", false},
		{"forged token", "<sip:" + strings.Replace(tok, "A", "B", 1) + "x@127.0.0.1:5070;lr>", false},
		{"flow of another node", "<sip:" + n1.token(Flow{Node: "n3", Transport: "tcp", Source: "127.0.0.1:1"}) + "@127.0.0.1:5070;lr>", false},
		{"no user", "<sip:127.0.0.1:5070;lr>", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := n2.forwarded(withRoute(t, tc.route))
			assert.Equal(t, tc.ok, ok)
			if tc.ok {
				assert.Equal(t, flow, got)
			}
		})
	}
	_, ok := (&Server{log: zap.NewNop()}).forwarded(withRoute(t, "<sip:"+tok+"@127.0.0.1:5070;lr>"))
	assert.False(t, ok, "a single node forwards nothing")
}

func FuzzFlowToken(f *testing.F) {
	s := clusterServer("n1", "k")
	f.Add(s.token(Flow{Node: "n1", Transport: "udp", Source: "1.2.3.4:5", Local: "127.0.0.1:5060", Contact: "sip:a@1.2.3.4:5"}))
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, tok string) {
		if flow, err := s.flowOf(tok); err == nil {
			assert.Equal(t, tok, s.token(flow), "only tokens this key made verify")
		}
	})
}
