package codec

import (
	"encoding/binary"
	"fmt"

	"rcsd/storage"
)

// MessageFormat is the format byte of AppendMessage.
const MessageFormat byte = 3

// AppendMessage appends the encoding of m to dst.
func AppendMessage(dst []byte, m *storage.Message) []byte {
	dst = append(dst, MessageFormat)
	dst = appendString(dst, m.ID)
	dst = appendString(dst, m.Recipient)
	dst = appendString(dst, m.Sender)
	dst = appendStrings(dst, m.DedupKeys)
	dst = appendTime(dst, m.Received)
	dst = appendTime(dst, m.Expires)
	dst = binary.AppendVarint(dst, int64(m.Attempts))
	dst = appendTime(dst, m.NextAttempt)
	dst = appendStrings(dst, m.Headers)
	return appendBytes(dst, m.Body)
}

// DecodeMessage decodes an AppendMessage encoding. Its strings share data's
// memory; its body is a copy.
func DecodeMessage(data string) (storage.Message, error) {
	var m storage.Message
	d := decoder{s: data}
	if f := d.byte(); f != MessageFormat && d.err == nil {
		return m, fmt.Errorf("%w: format %d, want message format %d", ErrCorrupt, f, MessageFormat)
	}
	m.ID = d.string()
	m.Recipient = d.string()
	m.Sender = d.string()
	m.DedupKeys = d.strings()
	m.Received = d.time()
	m.Expires = d.time()
	m.Attempts = d.int()
	m.NextAttempt = d.time()
	m.Headers = d.strings()
	body := d.string()
	if err := d.finish(); err != nil {
		return storage.Message{}, err
	}
	if body != "" {
		m.Body = []byte(body)
	}
	return m, nil
}

func (d *decoder) strings() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.string()
	}
	return out
}
