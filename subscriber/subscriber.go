// Package subscriber provisions subscribers: it turns what an operator
// types (a public URI, a password, USIM keys) or a CSV file into the
// storage form, with HA1 values instead of the password.
package subscriber

import (
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"rcsd/identity"
	"rcsd/registrar/aka"
	"rcsd/registrar/digest"
	"rcsd/storage"
)

// ErrInvalid wraps every provisioning problem.
var ErrInvalid = errors.New("invalid subscriber")

// Spec is a subscriber as an operator describes it.
type Spec struct {
	IMPUs    []string `json:"impus"`
	IMPI     string   `json:"impi,omitempty"`
	Password string   `json:"password,omitempty"`
	K        string   `json:"k,omitempty"`   // hex, 16 bytes
	OP       string   `json:"op,omitempty"`  // hex, 16 bytes
	OPc      string   `json:"opc,omitempty"` // hex, 16 bytes
	AMF      string   `json:"amf,omitempty"` // hex, 2 bytes
}

// Build validates a Spec and returns the stored form for realm/domain.
func Build(s Spec, realm, domain string) (storage.Subscriber, error) {
	var sub storage.Subscriber
	if len(s.IMPUs) == 0 {
		return sub, fmt.Errorf("%w: a public identity is needed", ErrInvalid)
	}
	for _, u := range s.IMPUs {
		c, err := identity.Canonical(u)
		if err != nil {
			return sub, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		sub.IMPUs = append(sub.IMPUs, c)
	}
	sub.IMPI = strings.TrimSpace(s.IMPI)
	if sub.IMPI == "" {
		impi, err := identity.DefaultIMPI(sub.IMPUs[0], domain)
		if err != nil {
			return sub, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		sub.IMPI = impi
	}
	if strings.ContainsAny(sub.IMPI, " \t\",<>") {
		return sub, fmt.Errorf("%w: private identity %q", ErrInvalid, sub.IMPI)
	}
	sub.Realm = realm
	if s.Password != "" {
		sub.HA1MD5 = digest.HA1(digest.MD5, sub.IMPI, realm, s.Password)
		sub.HA1SHA256 = digest.HA1(digest.SHA256, sub.IMPI, realm, s.Password)
		sub.HA1SHA512256 = digest.HA1(digest.SHA512256, sub.IMPI, realm, s.Password)
	}
	var err error
	if sub.K, err = hexField("k", s.K, 16); err != nil {
		return sub, err
	}
	if sub.OP, err = hexField("op", s.OP, 16); err != nil {
		return sub, err
	}
	if sub.OPc, err = hexField("opc", s.OPc, 16); err != nil {
		return sub, err
	}
	if sub.AMF, err = hexField("amf", s.AMF, 2); err != nil {
		return sub, err
	}
	if len(sub.K) > 0 && len(sub.OP) == 0 && len(sub.OPc) == 0 {
		return sub, fmt.Errorf("%w: k needs op or opc", ErrInvalid)
	}
	if len(sub.K) == 0 && (len(sub.OP) > 0 || len(sub.OPc) > 0) {
		return sub, fmt.Errorf("%w: op/opc need k", ErrInvalid)
	}
	if len(sub.OP) > 0 && len(sub.OPc) > 0 {
		return sub, fmt.Errorf("%w: give op or opc, not both", ErrInvalid)
	}
	if len(sub.OP) > 0 {
		// Kept beside OP so no challenge has to derive it (TS 35.206 §4.1).
		if sub.OPc, err = aka.OPc(sub.K, sub.OP); err != nil {
			return sub, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if len(sub.K) > 0 && len(sub.AMF) == 0 {
		sub.AMF = []byte{0x80, 0x00} // TS 33.102 separation bit set, the usual default
	}
	if s.Password == "" && len(sub.K) == 0 {
		return sub, fmt.Errorf("%w: %s needs a password or AKA keys (k with op/opc)", ErrInvalid, sub.IMPI)
	}
	return sub, nil
}

func hexField(name, v string, n int) ([]byte, error) {
	v = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(v), "0x"), "0X")
	if v == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("%w: %s wants %d bytes of hex", ErrInvalid, name, n)
	}
	return b, nil
}

// CSVHeader is the header line of an import file.
const CSVHeader = "impu,impi,password,k,op,opc,amf"

// ReadCSV reads an import file (header impu,impi,password,k,op,opc,amf;
// empty cells allowed; several public identities in one impu cell are
// separated by spaces or ';'). Every bad line is reported, with its number.
func ReadCSV(r io.Reader, realm, domain string) ([]storage.Subscriber, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: reading header: %w", ErrInvalid, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	if _, ok := col["impu"]; !ok {
		return nil, fmt.Errorf("%w: header must be %s", ErrInvalid, CSVHeader)
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var out []storage.Subscriber
	var problems []string
	seen := map[string]int{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", line, err))
			if len(problems) > 20 {
				break
			}
			continue
		}
		spec := Spec{IMPUs: strings.FieldsFunc(get(rec, "impu"), func(r rune) bool { return r == ' ' || r == ';' }),
			IMPI: get(rec, "impi"), Password: get(rec, "password"), K: get(rec, "k"), OP: get(rec, "op"),
			OPc: get(rec, "opc"), AMF: get(rec, "amf")}
		sub, err := Build(spec, realm, domain)
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", line, err))
			continue
		}
		if prev, dup := seen[sub.IMPI]; dup {
			problems = append(problems, fmt.Sprintf("line %d: private identity %s already on line %d", line, sub.IMPI, prev))
			continue
		}
		seen[sub.IMPI] = line
		out = append(out, sub)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(problems, "\n  "))
	}
	return out, nil
}
