package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"rcsd/storage/memory"
)

func TestAccessRules(t *testing.T) {
	tests := []struct {
		name, token, remote, auth string
		want                      int
	}{
		{"loopback without token", "", "127.0.0.1:5000", "", http.StatusOK},
		{"ipv6 loopback", "", "[::1]:5000", "", http.StatusOK},
		{"remote without token configured", "", "192.0.2.7:5000", "", http.StatusForbidden},
		{"token required even on loopback", "t0k", "127.0.0.1:5000", "", http.StatusUnauthorized},
		{"wrong token", "t0k", "192.0.2.7:5000", "Bearer nope", http.StatusUnauthorized},
		{"right token from anywhere", "t0k", "192.0.2.7:5000", "Bearer t0k", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(memory.New(), prometheus.NewRegistry(), tt.token, "rcs.local", "rcs.local", false, zap.NewNop())
			req := httptest.NewRequest(http.MethodGet, "/admin/subscribers", nil)
			req.RemoteAddr = tt.remote
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			s.http.Handler.ServeHTTP(rec, req)
			assert.Equal(t, tt.want, rec.Code, rec.Body.String())
		})
	}
}

func TestProvisioningAPI(t *testing.T) {
	store := memory.New()
	s := New(store, prometheus.NewRegistry(), "", "rcs.local", "rcs.local", false, zap.NewNop())
	do := func(method, path, ctype, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1"
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		s.http.Handler.ServeHTTP(rec, req)
		return rec
	}
	rec := do(http.MethodPost, "/admin/subscribers", "application/json", `[{"impus":["sip:ann@rcs.local","tel:+8613800000009"],"password":"pw"}]`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	sub, err := store.SubscriberByIMPU(context.Background(), "tel:+8613800000009")
	require.NoError(t, err)
	assert.Equal(t, "ann@rcs.local", sub.IMPI)
	assert.NotEmpty(t, sub.HA1SHA256)

	rec = do(http.MethodPost, "/admin/subscribers", "text/csv", "impu,impi,password\nsip:bo@rcs.local,,pw\n")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"stored":1}`, rec.Body.String())

	// Taking someone else's public identity is a conflict, and nothing is stored.
	rec = do(http.MethodPost, "/admin/subscribers", "application/json", `[{"impus":["sip:ann@rcs.local"],"impi":"other","password":"pw"}]`)
	assert.Equal(t, http.StatusConflict, rec.Code)

	rec = do(http.MethodPost, "/admin/subscribers", "application/json", `[{"impus":["mailto:x@y"],"password":"pw"}]`)
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	rec = do(http.MethodPost, "/admin/subscribers", "application/json", `not json`)
	assert.Equal(t, http.StatusBadRequest, rec.Code)

	rec = do(http.MethodGet, "/admin/subscribers/sip:ann@rcs.local", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	var v View
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
	assert.Equal(t, View{IMPI: "ann@rcs.local", IMPUs: []string{"sip:ann@rcs.local", "tel:+8613800000009"}, Realm: "rcs.local", Digest: true}, v)
	assert.NotContains(t, rec.Body.String(), "ha1")

	rec = do(http.MethodDelete, "/admin/subscribers/ann@rcs.local", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	rec = do(http.MethodGet, "/admin/subscribers/ann@rcs.local", "", "")
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

func TestReadyz(t *testing.T) {
	store := memory.New()
	s := New(store, prometheus.NewRegistry(), "", "rcs.local", "rcs.local", false, zap.NewNop())
	get := func() int {
		rec := httptest.NewRecorder()
		s.http.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	assert.Equal(t, http.StatusServiceUnavailable, get(), "not ready before listeners are bound")
	s.SetReady(true)
	assert.Equal(t, http.StatusOK, get())
	require.NoError(t, store.Close())
	assert.Equal(t, http.StatusServiceUnavailable, get(), "not ready when the store is gone")
}
