package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// config.example.yaml documents every setting and loads to the defaults.
func TestExampleCoversEveryKeyAndLoads(t *testing.T) {
	data, err := os.ReadFile("../config.example.yaml")
	require.NoError(t, err)
	var tree map[string]any
	require.NoError(t, yaml.Unmarshal(data, &tree))
	var keys []string
	var walkMap func(prefix string, m map[string]any)
	walkMap = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := strings.TrimPrefix(prefix+"."+k, ".")
			if sub, ok := v.(map[string]any); ok {
				walkMap(key, sub)
				continue
			}
			keys = append(keys, key)
		}
	}
	walkMap("", tree)
	assert.ElementsMatch(t, Keys(), keys)

	cfg, err := Load("../config.example.yaml", nil, nil)
	require.NoError(t, err)
	assert.Equal(t, Default(), cfg)
}

func TestPrecedence(t *testing.T) {
	f := t.TempDir() + "/c.yaml"
	require.NoError(t, os.WriteFile(f, []byte("domain: file.example\nsip:\n  max_message_size: 4096\nauth:\n  nonce_lifetime: 30s\n"), 0o600))
	cfg, err := Load(f, []string{"RCSD_DOMAIN=env.example", "RCSD_SIP_MAX_MESSAGE_SIZE=8192", "PATH=/bin"},
		map[string]string{"domain": "flag.example", "sip.listen": "udp://127.0.0.1:5070, tcp://127.0.0.1:5070"})
	require.NoError(t, err)
	assert.Equal(t, "flag.example", cfg.Domain, "flag beats env and file")
	assert.Equal(t, 8192, cfg.SIP.MaxMessageSize, "env beats file")
	assert.Equal(t, 30*time.Second, cfg.Auth.NonceLifetime, "file beats default")
	assert.Equal(t, []string{"udp://127.0.0.1:5070", "tcp://127.0.0.1:5070"}, cfg.SIP.Listen)
}

func TestEveryProblemReported(t *testing.T) {
	_, err := Load("", []string{"RCSD_NOPE=1"}, map[string]string{
		"domain": "bad domain", "sip.listen": "sctp://x:1", "log.level": "loud",
		"auth.digest_algorithms": "MD5,SHA-1", "registrar.min_expires": "abc",
	})
	require.ErrorIs(t, err, ErrInvalid)
	for _, want := range []string{"RCSD_NOPE: unknown setting", "domain:", "sip.listen:", "log.level:", "auth.digest_algorithms:", "--registrar.min_expires: want an integer"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestUnknownFileKey(t *testing.T) {
	f := t.TempDir() + "/c.yaml"
	require.NoError(t, os.WriteFile(f, []byte("sip:\n  lissen: []\n"), 0o600))
	_, err := Load(f, nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "lissen")
}
