// Package cpim parses and builds message/cpim objects (RFC 3862) as the
// China Mobile RCS UNI spec (seed 001, NM-01) uses them: the wrapper of every
// pager MESSAGE, large-message/chat MSRP SEND and IMDN, carrying the IMDN
// request headers of RFC 5438 (NS imdn <urn:ietf:params:imdn>).
//
// A CPIM object is three parts: CPIM message headers, an empty line, the
// MIME headers of the encapsulated content, an empty line, the content.
// Parse keeps headers in order and as sent, so a relay can forward them
// unchanged; it validates what the spec's 400 rules need (§5.1.1.1.2):
// syntax, UTF-8, From/To/cc identities, DateTime, NS, Require, the content's
// Content-Type, Content-Transfer-Encoding and Content-Length, and uniqueness.
//
// # Uniqueness (ErrDuplicate)
//
// RFC 3862 §4 lets To and cc repeat (one recipient each) and Subject repeat
// with different lang parameters; From, DateTime and Require carry one value
// for the whole message. The spec answers 400 when "a CPIM header appears
// twice" (rule 6), which read literally would forbid To/cc repeats the RFC
// allows; Parse reads it as "a header that must be unique appears twice":
//
//   - From, DateTime, Require: at most once.
//   - Subject: at most once per lang parameter (compared case-insensitively;
//     no lang is its own value).
//   - NS: a prefix (or the default, prefix-less namespace) declared once.
//   - IMDN headers (RFC 5438 §6): each at most once, except IMDN-Record-Route
//     and IMDN-Route, which RFC 5438 §6.5-6.6 lets intermediaries repeat. A
//     header is an IMDN header when its prefix is declared by NS for
//     urn:ietf:params:imdn, or its prefix is "imdn" and no NS declares it.
//   - Content headers (RFC 2045/2183): Content-Type, Content-Length,
//     Content-Transfer-Encoding, Content-Disposition, Content-ID,
//     Content-Description, Content-Language at most once.
//   - To, cc and headers of other namespaces may repeat.
//
// CPIM header names are case-sensitive (RFC 3862 §3.1): "from" is an
// extension header, not From. Content header names are MIME names and are
// compared case-insensitively (the spec's clients send "content-type:").
//
// # Tolerated quirks
//
// Bare LF line ends; no space, or several, after the colon; whitespace
// before the colon; an object that stops after its CPIM headers (IMDN
// requests in INVITEs, seed fixtures) or after its content headers. In
// identities (Identity): a trailing space inside <>, a missing scheme
// (<anonymous@anonymous.invalid> means sip:), a space after "sip:", and
// stray words inside <> beside the one URI (Q17). DateTime offsets with a
// one-digit hour (+8:00, Q19). Header values are kept as sent, so RFC 3862
// §2.3 escapes are not undone.
//
// Not tolerated: folded (continuation) lines, which RFC 3862 §3 does not
// have; control characters or invalid UTF-8 in headers; empty header values
// (the spec: an optional field, if present, must not be empty); a content
// Content-Length larger than the content present, unless
// Options.IgnoreContentLength is set — the spec's own examples get it wrong
// (Q20), so a relay facing such clients may set it.
//
// # Limits and memory
//
// At most MaxHeaders headers in each section and MaxLine bytes per header
// line. Parse copies its input once (headers into one string, the content
// into one slice) and never retains b; it allocates a constant four times,
// not per header.
package cpim
