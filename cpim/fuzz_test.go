package cpim

import (
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts AppendTo writes
// back in a form strict Parse accepts as the same message.
func FuzzParse(f *testing.F) {
	f.Add([]byte(rfcExample))
	for _, name := range fixtures(f) {
		if b, ok := fixtureCPIM(f, name); ok {
			f.Add(b)
		}
	}
	f.Add([]byte("Subject:;lang=fr x\n\n\n"))
	f.Add([]byte("\n\nContent-Length: 0\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, o := range []Options{{}, {IgnoreContentLength: true}} {
			m, err := o.Parse(in)
			if err != nil {
				if m != nil {
					t.Fatalf("message with error %v", err)
				}
				continue
			}
			out := m.AppendTo(nil)
			again, err := Parse(out)
			if err != nil {
				t.Fatalf("AppendTo output does not parse: %v\ninput %q\noutput %q", err, in, out)
			}
			assertSameMessage(t, m, again)
			if t.Failed() {
				t.Fatalf("input %q\noutput %q", in, out)
			}
			_, _ = m.Decoded()
			_, _ = m.IMDN()
		}
	})
}
