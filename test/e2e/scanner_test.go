package e2e

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/test/rcsdproc"
)

// sipvicious svwar, the usual SIP user scanner, must find nothing: existing
// and unknown extensions get the same challenge. `make test` installs it.
func TestSvwarFindsNoUsers(t *testing.T) {
	svwar, err := exec.LookPath("svwar")
	if err != nil {
		t.Fatal("svwar not found: run `make test` (it installs sipvicious) or apt-get install sipvicious")
	}
	p := rcsdproc.Start(t)
	for _, u := range []string{"1001", "1005"} {
		out, err := p.Run(context.Background(), "subscriber", "add", "sip:"+u+"@rcs.local", "--password", "pw-"+u)
		require.NoError(t, err, out)
	}
	for _, force := range []bool{false, true} {
		args := []string{"-m", "REGISTER", "-p", strconv.Itoa(p.Port), "127.0.0.1", "-e1000-1008"}
		if force {
			args = append([]string{"--force"}, args...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, _ := exec.CommandContext(ctx, svwar, args...).CombinedOutput()
		cancel()
		assert.Contains(t, string(out), "found nothing", "force=%v:\n%s", force, out)
		assert.NotContains(t, string(out), "| 1001", "force=%v", force)
		assert.NotContains(t, string(out), "| 1005", "force=%v", force)
	}
}
