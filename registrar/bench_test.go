package registrar

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"

	"rcsd/registrar/digest"
	"rcsd/storage"
	"rcsd/subscriber"
)

// BenchmarkRegisterFlow is one registration as the UDP fast path does it:
// parse, challenge, serialise; parse, authenticate, bind, serialise.
// Compare with -benchmem before and after touching the hot path.
func BenchmarkRegisterFlow(b *testing.B) {
	h := newHarness(b, func(_ *Options, d *DigestScheme) { d.Algorithms = []digest.Algorithm{digest.MD5} })
	const users = 10000
	subs := make([]storage.Subscriber, 0, users)
	for i := 0; i < users; i++ {
		s, err := subscriber.Build(subscriber.Spec{IMPUs: []string{fmt.Sprintf("sip:u%d@rcs.local", i)}, Password: "pw"}, realm, "rcs.local")
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, s)
	}
	if err := h.store.PutSubscribers(context.Background(), subs); err != nil {
		b.Fatal(err)
	}
	parser := siplib.NewParser()
	var buf bytes.Buffer
	first := make([][]byte, users)
	for i := range first {
		first[i] = []byte(fmt.Sprintf("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-%d-1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:u%d@rcs.local>;tag=%d\r\nTo: <sip:u%d@rcs.local>\r\nCall-ID: c%d@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:u%d@127.0.0.1:5061;transport=UDP>\r\nExpires: 3600\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n", i, i, i, i, i, i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		i := n % users
		msg, err := parser.ParseSIP(first[i])
		if err != nil {
			b.Fatal(err)
		}
		req := msg.(*siplib.Request)
		req.SetTransport("UDP")
		req.SetSource("127.0.0.1:5061")
		res := h.r.ServeSIP(context.Background(), req)
		buf.Reset()
		res.StringWrite(&buf)
		b.StopTimer()
		ch := challenges(b, res)["MD5"]
		c := digest.Credentials{Username: fmt.Sprintf("u%d@rcs.local", i), Realm: realm, Nonce: ch["nonce"], URI: "sip:127.0.0.1:5060", Algorithm: "MD5", QOP: "auth", NC: "00000001", CNonce: "abc"}
		c.Response = digest.Response(digest.MD5, subs[i].HA1MD5, "REGISTER", &c)
		second := fmt.Sprintf("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-%d-%d;rport\r\nMax-Forwards: 70\r\nFrom: <sip:u%d@rcs.local>;tag=%d\r\nTo: <sip:u%d@rcs.local>\r\nCall-ID: c%d-%d@127.0.0.1\r\nCSeq: 2 REGISTER\r\nContact: <sip:u%d@127.0.0.1:5061;transport=UDP>\r\nAuthorization: Digest username=\"%s\",realm=\"rcs.local\",cnonce=\"abc\",nc=00000001,qop=auth,uri=\"sip:127.0.0.1:5060\",nonce=\"%s\",response=\"%s\",algorithm=MD5\r\nExpires: 3600\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n",
			i, n, i, i, i, i, n, i, c.Username, c.Nonce, c.Response)
		raw := []byte(second)
		b.StartTimer()
		msg, err = parser.ParseSIP(raw)
		if err != nil {
			b.Fatal(err)
		}
		req = msg.(*siplib.Request)
		req.SetTransport("UDP")
		req.SetSource("127.0.0.1:5061")
		res = h.r.ServeSIP(context.Background(), req)
		if res.StatusCode != 200 {
			b.Fatalf("status %d %s", res.StatusCode, res.Reason)
		}
		buf.Reset()
		res.StringWrite(&buf)
	}
}

// BenchmarkAKAFlow is one IMS AKA registration on the memory store:
// challenge (a vector: SQN from the store, Milenage f1-f5), then the
// answer (f2 recomputed, Digest check, bind). The handset's Milenage runs
// with the timer stopped.
func BenchmarkAKAFlow(b *testing.B) {
	h := newAKAHarness(b, "aka digest")
	h.r.id = NewLimiter(0, time.Minute, time.Minute) // b.N challenges of one identity at one instant
	parser := siplib.NewParser()
	var buf bytes.Buffer
	u := newUSIM()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		first := fmt.Sprintf("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-a%d;rport\r\nMax-Forwards: 70\r\nFrom: <sip:native@rcs.local>;tag=%d\r\nTo: <sip:native@rcs.local>\r\nCall-ID: a%d@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:native@127.0.0.1:5061>\r\nAuthorization: %s\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
			n, n, n, initialAuth(nativeUser))
		msg, err := parser.ParseSIP([]byte(first))
		if err != nil {
			b.Fatal(err)
		}
		req := msg.(*siplib.Request)
		req.SetTransport("UDP")
		req.SetSource("127.0.0.1:5061")
		res := h.r.ServeSIP(context.Background(), req)
		buf.Reset()
		res.StringWrite(&buf)
		b.StopTimer()
		nonce := challenges(b, res)[AKAv1SHA256]["nonce"]
		pw, _, err := u.run(b, nonce)
		if err != nil {
			b.Fatal(err)
		}
		second := fmt.Sprintf("REGISTER sip:rcs.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-b%d;rport\r\nMax-Forwards: 70\r\nFrom: <sip:native@rcs.local>;tag=%d\r\nTo: <sip:native@rcs.local>\r\nCall-ID: a%d@127.0.0.1\r\nCSeq: 2 REGISTER\r\nContact: <sip:native@127.0.0.1:5061>\r\nAuthorization: %s\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
			n, n, n, akaAnswer(digest.MD5, AKAv1SHA256, realm, nativeUser, nonce, pw, nil))
		raw := []byte(second)
		b.StartTimer()
		msg, err = parser.ParseSIP(raw)
		if err != nil {
			b.Fatal(err)
		}
		req = msg.(*siplib.Request)
		req.SetTransport("UDP")
		req.SetSource("127.0.0.1:5061")
		res = h.r.ServeSIP(context.Background(), req)
		if res.StatusCode != 200 {
			b.Fatalf("status %d %s", res.StatusCode, res.Reason)
		}
		buf.Reset()
		res.StringWrite(&buf)
	}
}
