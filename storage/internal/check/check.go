// Package check holds the argument checks every storage backend applies, so
// that all of them reject exactly the same input (the conformance suite in
// storage/storagetest holds them to it).
package check

import (
	"fmt"

	"rcsd/storage"
)

// Subscribers validates a PutSubscribers batch on its own, before any
// backend state is consulted: every subscriber needs an IMPI and at least
// one non-empty IMPU, an IMPI may appear once per batch, and a public
// identity may be claimed once per batch. It returns the batch's IMPIs
// (IMPI -> index in subs), which backends need to tell a real conflict from
// an IMPU moving between two subscribers of the same batch.
func Subscribers(subs []storage.Subscriber) (map[string]int, error) {
	impis := make(map[string]int, len(subs))
	claims := make(map[string]string, len(subs))
	for i := range subs {
		s := &subs[i]
		if s.IMPI == "" {
			return nil, fmt.Errorf("subscriber %d: empty IMPI: %w", i, storage.ErrInvalid)
		}
		if _, dup := impis[s.IMPI]; dup {
			return nil, fmt.Errorf("subscriber %q appears twice in one batch: %w", s.IMPI, storage.ErrInvalid)
		}
		impis[s.IMPI] = i
		if len(s.IMPUs) == 0 {
			return nil, fmt.Errorf("subscriber %q: no public identity: %w", s.IMPI, storage.ErrInvalid)
		}
		for _, u := range s.IMPUs {
			if u == "" {
				return nil, fmt.Errorf("subscriber %q: empty public identity: %w", s.IMPI, storage.ErrInvalid)
			}
			switch owner, seen := claims[u]; {
			case !seen:
				claims[u] = s.IMPI
			case owner == s.IMPI:
				return nil, fmt.Errorf("subscriber %q lists public identity %q twice: %w", s.IMPI, u, storage.ErrInvalid)
			default:
				return nil, fmt.Errorf("public identity %q claimed by both %q and %q: %w", u, owner, s.IMPI, storage.ErrConflict)
			}
		}
	}
	return impis, nil
}

// Bindings validates what an UpdateBindings callback returned for aor:
// every binding must belong to aor, have a contact, and have a key of its
// own (two bindings with one key would make refreshes ambiguous). It does
// not allocate: AORs hold a handful of contacts, so the pairwise key
// comparison is cheaper than a map.
func Bindings(aor string, bs []storage.Binding) error {
	for i := range bs {
		b := &bs[i]
		if b.AOR != aor {
			return fmt.Errorf("binding %d of %q has AOR %q: %w", i, aor, b.AOR, storage.ErrInvalid)
		}
		if b.Contact == "" {
			return fmt.Errorf("binding %d of %q has no contact: %w", i, aor, storage.ErrInvalid)
		}
		for j := range i {
			if SameKey(&bs[j], b) {
				return fmt.Errorf("bindings %d and %d of %q share key %q: %w", j, i, aor, b.Key(), storage.ErrInvalid)
			}
		}
	}
	return nil
}

// SameKey reports whether a and b identify the same binding, as comparing
// their Key values would, without building the key strings.
func SameKey(a, b *storage.Binding) bool {
	if a.InstanceID != "" || b.InstanceID != "" {
		return a.InstanceID == b.InstanceID && a.RegID == b.RegID
	}
	return a.Contact == b.Contact
}
