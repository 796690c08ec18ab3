// Package codec is the compact binary encoding of storage.Subscriber and
// []storage.Binding shared by the backends: the bolt backend writes it to
// its file, and the memory backend keeps its values in it, so that the Go
// garbage collector sees one pointer-free blob per value instead of a
// struct full of string and slice pointers.
//
// An encoding starts with a format byte (SubscriberFormat or
// BindingsFormat) followed by the fields in declaration order: strings and
// byte slices as a uvarint length and the bytes, unsigned integers as
// uvarints, signed ones as zigzag varints, slices as a uvarint count and
// their elements, and times as zigzag varint Unix seconds and uvarint
// nanoseconds (which, unlike Unix nanoseconds, covers every time.Time,
// the zero one included).
//
// Decoding takes a string: the decoded strings are substrings of it, so
// decoding allocates no string of its own. Callers decoding a []byte they
// do not own (a bbolt page) convert it with string(), one copy. Byte slices
// (the AKA key material) are copied out, since callers may modify them.
// Empty slices decode as nil, and times decode in UTC.
package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"rcsd/storage"
)

// Format bytes. A change of layout takes a new format byte, so that old
// data is recognised instead of misread.
const (
	SubscriberFormat byte = 1
	BindingsFormat   byte = 2
)

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("codec: corrupt encoding")

// AppendSubscriber appends the encoding of sub to dst.
func AppendSubscriber(dst []byte, sub *storage.Subscriber) []byte {
	dst = append(dst, SubscriberFormat)
	dst = appendString(dst, sub.IMPI)
	dst = appendStrings(dst, sub.IMPUs)
	dst = appendString(dst, sub.Realm)
	dst = appendString(dst, sub.HA1MD5)
	dst = appendString(dst, sub.HA1SHA256)
	dst = appendString(dst, sub.HA1SHA512256)
	dst = appendBytes(dst, sub.K)
	dst = appendBytes(dst, sub.OP)
	dst = appendBytes(dst, sub.OPc)
	dst = appendBytes(dst, sub.AMF)
	return binary.AppendUvarint(dst, sub.SQN)
}

// DecodeSubscriber decodes an AppendSubscriber encoding. Its strings share
// data's memory; its byte slices share one new array, each capped at its
// length. It allocates at most twice (IMPUs and key material).
func DecodeSubscriber(data string) (storage.Subscriber, error) {
	var sub storage.Subscriber
	d := decoder{s: data}
	if f := d.byte(); f != SubscriberFormat && d.err == nil {
		return sub, fmt.Errorf("%w: format %d, want subscriber format %d", ErrCorrupt, f, SubscriberFormat)
	}
	sub.IMPI = d.string()
	if n := d.count(1); n > 0 {
		sub.IMPUs = make([]string, n)
		for i := range sub.IMPUs {
			sub.IMPUs[i] = d.string()
		}
	}
	sub.Realm = d.string()
	sub.HA1MD5 = d.string()
	sub.HA1SHA256 = d.string()
	sub.HA1SHA512256 = d.string()
	k, op, opc, amf := d.string(), d.string(), d.string(), d.string()
	sub.SQN = d.uvarint()
	if err := d.finish(); err != nil {
		return storage.Subscriber{}, err
	}
	if n := len(k) + len(op) + len(opc) + len(amf); n > 0 {
		buf := make([]byte, 0, n)
		sub.K, buf = carve(buf, k)
		sub.OP, buf = carve(buf, op)
		sub.OPc, buf = carve(buf, opc)
		sub.AMF, _ = carve(buf, amf)
	}
	return sub, nil
}

// SubscriberIMPI returns the IMPI of an AppendSubscriber encoding (a
// substring of data) without decoding the rest.
func SubscriberIMPI(data string) (string, error) {
	d := decoder{s: data}
	if f := d.byte(); f != SubscriberFormat && d.err == nil {
		return "", fmt.Errorf("%w: format %d, want subscriber format %d", ErrCorrupt, f, SubscriberFormat)
	}
	impi := d.string()
	return impi, d.err
}

// carve appends b to buf, which must have room for it, and returns the
// appended segment capped at its length (nil for an empty b), so that
// appending to one segment cannot overwrite the next.
func carve(buf []byte, b string) (seg, rest []byte) {
	if len(b) == 0 {
		return nil, buf
	}
	start := len(buf)
	buf = append(buf, b...)
	return buf[start:len(buf):len(buf)], buf
}

// AppendBindings appends the encoding of bs to dst.
func AppendBindings(dst []byte, bs []storage.Binding) []byte {
	dst = append(dst, BindingsFormat)
	dst = binary.AppendUvarint(dst, uint64(len(bs)))
	for i := range bs {
		b := &bs[i]
		dst = appendString(dst, b.AOR)
		dst = appendString(dst, b.Contact)
		dst = appendString(dst, b.Params)
		dst = appendString(dst, b.InstanceID)
		dst = binary.AppendVarint(dst, int64(b.RegID))
		dst = appendString(dst, b.Q)
		dst = appendString(dst, b.CallID)
		dst = binary.AppendUvarint(dst, uint64(b.CSeq))
		dst = appendTime(dst, b.Expires)
		dst = appendStrings(dst, b.Path)
		dst = appendString(dst, b.UserAgent)
		dst = appendString(dst, b.IMPI)
		dst = appendString(dst, b.Transport)
		dst = appendString(dst, b.Source)
		dst = appendString(dst, b.Local)
		dst = appendString(dst, b.Node)
		dst = appendTime(dst, b.RegisteredAt)
	}
	return dst
}

// minBinding is the fewest bytes one encoded binding takes: 13 empty
// strings, RegID, CSeq, two times of two bytes each and the Path count.
const minBinding = 13 + 1 + 1 + 4 + 1

// DecodeBindings decodes an AppendBindings encoding, keeping only the
// bindings for which keep (if not nil) returns true. Their strings share
// data's memory. It allocates at most twice: the bindings, and one array
// for all their Path entries. It returns nil when no binding is kept.
func DecodeBindings(data string, keep func(*storage.Binding) bool) ([]storage.Binding, error) {
	d := decoder{s: data}
	if f := d.byte(); f != BindingsFormat && d.err == nil {
		return nil, fmt.Errorf("%w: format %d, want bindings format %d", ErrCorrupt, f, BindingsFormat)
	}
	n := d.count(minBinding)
	if n == 0 {
		return nil, d.finish()
	}
	out := make([]storage.Binding, 0, n)
	var arena []string
	for range n {
		// Decoded in place; dropped again if keep refuses it.
		out = append(out, storage.Binding{})
		b := &out[len(out)-1]
		b.AOR = d.string()
		b.Contact = d.string()
		b.Params = d.string()
		b.InstanceID = d.string()
		b.RegID = d.int()
		b.Q = d.string()
		b.CallID = d.string()
		b.CSeq = d.uint32()
		b.Expires = d.time()
		pathStart := len(arena)
		if np := d.count(1); np > 0 {
			if arena == nil {
				// Sized for every binding to carry as many
				// entries as this one, which is the usual case.
				arena = make([]string, 0, np*n)
			}
			for range np {
				arena = append(arena, d.string())
			}
			b.Path = arena[pathStart:len(arena):len(arena)]
		}
		b.UserAgent = d.string()
		b.IMPI = d.string()
		b.Transport = d.string()
		b.Source = d.string()
		b.Local = d.string()
		b.Node = d.string()
		b.RegisteredAt = d.time()
		if d.err != nil {
			break
		}
		if keep != nil && !keep(b) {
			out = out[:len(out)-1]
			if b.Path != nil && len(arena) == pathStart+len(b.Path) {
				clear(arena[pathStart:])
				arena = arena[:pathStart]
			}
			*b = storage.Binding{}
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// FirstAOR returns the AOR of the first binding of an AppendBindings
// encoding (a substring of data), without decoding the rest.
func FirstAOR(data string) (string, error) {
	d := decoder{s: data}
	if f := d.byte(); f != BindingsFormat && d.err == nil {
		return "", fmt.Errorf("%w: format %d, want bindings format %d", ErrCorrupt, f, BindingsFormat)
	}
	if d.count(minBinding) == 0 {
		if d.err != nil {
			return "", d.err
		}
		return "", fmt.Errorf("%w: no bindings", ErrCorrupt)
	}
	aor := d.string()
	return aor, d.err
}

// appendStrings appends a count and then each string.
func appendStrings(dst []byte, ss []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ss)))
	for _, v := range ss {
		dst = appendString(dst, v)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// decoder reads an encoding; the first error sticks and makes every later
// read return a zero value.
type decoder struct {
	s   string
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s at offset %d", ErrCorrupt, what, d.off)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.s) {
		d.fail("format byte")
		return 0
	}
	d.off++
	return d.s[d.off-1]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var x uint64
	for i, shift := d.off, uint(0); i < len(d.s); i, shift = i+1, shift+7 {
		c := d.s[i]
		if i-d.off == binary.MaxVarintLen64-1 && c > 1 {
			break // overflows 64 bits
		}
		if c < 0x80 {
			if c == 0 && i > d.off {
				break // not minimal: the encoding is canonical
			}
			d.off = i + 1
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
	}
	d.fail("varint")
	return 0
}

func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) int() int {
	x := d.varint()
	if x < math.MinInt || x > math.MaxInt {
		d.fail("int")
		return 0
	}
	return int(x)
}

func (d *decoder) uint32() uint32 {
	x := d.uvarint()
	if x > math.MaxUint32 {
		d.fail("uint32")
		return 0
	}
	return uint32(x)
}

// count reads an element count, checking it against the bytes left (each
// element takes at least min) so that garbage cannot make the caller
// allocate more than the input's size.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.off)/uint64(min) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)-d.off) {
		d.fail("length")
		return ""
	}
	s := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail("nanoseconds")
	}
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// finish reports the first error, or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.s) {
		d.fail("trailing data")
	}
	return d.err
}
