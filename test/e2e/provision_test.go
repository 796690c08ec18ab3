package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// While rcsd runs, its embedded store is locked: the subscriber commands
// go through the admin API instead, and what they provision is usable at
// once.
func TestProvisionWhileRunning(t *testing.T) {
	p := rcsdproc.Start(t)
	ctx := context.Background()
	csv := filepath.Join(t.TempDir(), "subs.csv")
	require.NoError(t, os.WriteFile(csv, []byte("impu,impi,password,k,op,opc,amf\nsip:erin@rcs.local,,erin-pw,,,,\nsip:frank@rcs.local tel:+8613900000002,,frank-pw,,,,\n"), 0o600))
	out, err := p.Run(ctx, "subscriber", "import", csv)
	require.NoError(t, err, out)
	assert.Contains(t, out, "imported 2 subscribers")

	out, err = p.Run(ctx, "subscriber", "list")
	require.NoError(t, err, out)
	assert.Equal(t, "erin@rcs.local\tsip:erin@rcs.local\tdigest=true aka=false\nfrank@rcs.local\tsip:frank@rcs.local,tel:+8613900000002\tdigest=true aka=false\n", out)

	out, err = p.Run(ctx, "subscriber", "show", "tel:+8613900000002")
	require.NoError(t, err, out)
	assert.Contains(t, out, `"impi": "frank@rcs.local"`)

	// Provisioned through the API, erin registers right away.
	c := dial(t, "TCP", p)
	res, _ := c.register(regReq{user: "erin", callID: "e2e-erin", cseq: 1})
	ch := firstChallenge(t, res)
	res, raw := c.register(regReq{user: "erin", callID: "e2e-erin", cseq: 2, auth: authorize(ch, "erin@rcs.local", "erin-pw", "00000001")})
	require.Equal(t, 200, res.StatusCode, raw)

	out, err = p.Run(ctx, "subscriber", "delete", "erin@rcs.local")
	require.NoError(t, err, out)
	assert.Equal(t, "deleted erin@rcs.local\n", out)
	_, err = p.Run(ctx, "subscriber", "show", "erin@rcs.local")
	require.Error(t, err)

	// A deleted user fails exactly like an unknown one.
	res, _ = c.register(regReq{user: "erin", callID: "e2e-erin2", cseq: 1})
	ch = firstChallenge(t, res)
	res, _ = c.register(regReq{user: "erin", callID: "e2e-erin2", cseq: 2, auth: authorize(ch, "erin@rcs.local", "erin-pw", "00000001")})
	assert.Equal(t, 403, res.StatusCode)
}

// With an admin token the API wants it; without one it is loopback-only.
func TestAdminToken(t *testing.T) {
	p := rcsdproc.Start(t, "--http.admin_token", "s3cret")
	url := fmt.Sprintf("http://127.0.0.1:%d/admin/subscribers", p.HTTPPort)
	res, err := http.Get(url)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)

	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`[{"impus":["sip:gina@rcs.local"],"password":"pw"}]`))
	req.Header.Set("Authorization", "Bearer s3cret")
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)

	// The CLI passes the token from the same configuration.
	out, err := p.Run(context.Background(), "subscriber", "show", "gina@rcs.local")
	require.NoError(t, err, out)
	assert.Contains(t, out, `"impi": "gina@rcs.local"`)

	assert.Equal(t, "ready\n", httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", p.HTTPPort)))
}
