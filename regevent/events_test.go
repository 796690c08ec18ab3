package regevent

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"rcsd/storage"
)

func TestContactEvents(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	bind := func(inst string, expiresIn time.Duration, cseq uint32) storage.Binding {
		return storage.Binding{AOR: "sip:alice@rcs.local", Contact: "sip:alice@" + inst, InstanceID: "urn:uuid:" + inst,
			CallID: "call-" + inst, CSeq: cseq, Expires: now.Add(expiresIn)}
	}
	a := bind("a", time.Hour, 1)
	aRefreshed := bind("a", 2*time.Hour, 2)
	aShorter := bind("a", time.Minute, 3)
	aAgain := bind("a", time.Hour, 2) // same expiry, new CSeq: a REGISTER all the same
	b := bind("b", time.Hour, 1)
	bLapsed := bind("b", -time.Second, 1)

	type ev struct{ key, state, event string }
	tests := []struct {
		name          string
		before, after []storage.Binding
		expired       bool
		prev          map[string]string
		want          []ev
	}{
		{"first NOTIFY: everything registered", nil, []storage.Binding{a, b}, false, nil,
			[]ev{{"a", StateActive, EventRegistered}, {"b", StateActive, EventRegistered}}},
		{"new contact beside an unchanged one", []storage.Binding{a}, []storage.Binding{a, b}, false, map[string]string{a.Key(): EventRegistered},
			[]ev{{"a", StateActive, EventRegistered}, {"b", StateActive, EventRegistered}}},
		{"refresh with a later expiry", []storage.Binding{a, b}, []storage.Binding{aRefreshed, b}, false, nil,
			[]ev{{"a", StateActive, EventRefreshed}, {"b", StateActive, EventRegistered}}},
		{"a REGISTER asking for less is a refresh, not shortened", []storage.Binding{a}, []storage.Binding{aShorter}, false, nil,
			[]ev{{"a", StateActive, EventRefreshed}}},
		{"same expiry, new CSeq", []storage.Binding{a}, []storage.Binding{aAgain}, false, nil,
			[]ev{{"a", StateActive, EventRefreshed}}},
		{"untouched contact keeps its last event", []storage.Binding{a, b}, []storage.Binding{a}, false, map[string]string{a.Key(): EventRefreshed},
			[]ev{{"a", StateActive, EventRefreshed}, {"b", StateTerminated, EventUnregistered}}},
		{"de-registration of all", []storage.Binding{a, b}, nil, false, nil,
			[]ev{{"a", StateTerminated, EventUnregistered}, {"b", StateTerminated, EventUnregistered}}},
		{"purge timer", []storage.Binding{a, b}, []storage.Binding{a}, true, nil,
			[]ev{{"a", StateActive, EventRegistered}, {"b", StateTerminated, EventExpired}}},
		{"lapsed binding dropped by a REGISTER is expired", []storage.Binding{a, bLapsed}, []storage.Binding{aRefreshed}, false, nil,
			[]ev{{"a", StateActive, EventRefreshed}, {"b", StateTerminated, EventExpired}}},
		{"key twice in before reported once", []storage.Binding{b, b}, nil, false, nil,
			[]ev{{"b", StateTerminated, EventUnregistered}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []ev
			for _, cs := range contactEvents(tt.before, tt.after, tt.expired, now, tt.prev) {
				got = append(got, ev{cs.b.InstanceID[len("urn:uuid:"):], cs.state, cs.event})
			}
			assert.Equal(t, tt.want, got)
		})
	}
}
