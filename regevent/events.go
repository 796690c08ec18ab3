package regevent

import (
	"time"

	"rcsd/storage"
)

// contactEvents compares what a watcher was last told (before) with the
// bindings now stored (after) and says how to report each contact, after
// the contact state machine of RFC 3680 §4.7.1:
//
//   - a key not in before was added by a REGISTER: active/registered
//     ("created" is for contacts made administratively or by non-SIP
//     means, which the registrar has none of);
//   - a key in both that a new REGISTER touched (expiry, Call-ID or CSeq
//     changed): active/refreshed, also when the new expiry is earlier —
//     "shortened" is the administrator cutting a binding short to force a
//     re-registration, and would make the handset re-register at once;
//   - a key in both that nothing touched repeats the event last reported
//     (prev, by key), since a full-state document restates every contact;
//   - a key gone from after: terminated/expired when the purge timer
//     removed it (expired) or its expiry had passed by now (the store
//     drops expired bindings on the next REGISTER before the purge timer
//     reports them), else terminated/unregistered (Expires: 0).
//
// Active contacts come first in after's order (first registered first),
// then the terminated ones in before's order.
func contactEvents(before, after []storage.Binding, expired bool, now time.Time, prev map[string]string) []contactState {
	old := make(map[string]*storage.Binding, len(before))
	for i := range before {
		old[before[i].Key()] = &before[i]
	}
	out := make([]contactState, 0, len(before)+len(after))
	seen := make(map[string]bool, len(after))
	for _, b := range after {
		k := b.Key()
		seen[k] = true
		ev := EventRegistered
		if o, ok := old[k]; ok {
			switch {
			case !b.Expires.Equal(o.Expires) || b.CallID != o.CallID || b.CSeq != o.CSeq:
				ev = EventRefreshed
			case prev[k] != "":
				ev = prev[k]
			}
		}
		out = append(out, contactState{b: b, state: StateActive, event: ev})
	}
	for _, b := range before {
		k := b.Key()
		if seen[k] {
			continue
		}
		seen[k] = true // a key twice in before is reported once
		ev := EventUnregistered
		if expired || !b.Expires.After(now) {
			ev = EventExpired
		}
		out = append(out, contactState{b: b, state: StateTerminated, event: ev})
	}
	return out
}
