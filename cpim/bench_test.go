package cpim

import "testing"

// BenchmarkParse measures the one-to-one pager message of spec fixture 15
// (fig 5-17). Its Content-Length is the spec's (Q20), hence the option.
func BenchmarkParse(b *testing.B) {
	in, ok := fixtureCPIM(b, "nm01-core/15-pager-message-one-to-one.txt")
	if !ok {
		b.Fatal("no CPIM in fixture 15")
	}
	o := Options{IgnoreContentLength: true}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := o.Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendTo measures writing the same message into a reused buffer.
func BenchmarkAppendTo(b *testing.B) {
	in, _ := fixtureCPIM(b, "nm01-core/15-pager-message-one-to-one.txt")
	m, err := Options{IgnoreContentLength: true}.Parse(in)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendTo(buf[:0])
	}
}
