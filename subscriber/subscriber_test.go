package subscriber

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rcsd/registrar/digest"
)

func TestBuild(t *testing.T) {
	sub, err := Build(Spec{IMPUs: []string{"<sip:Alice@RCS.local>", "tel:+86-138-0000-0001"}, Password: "pw"}, "rcs.local", "rcs.local")
	require.NoError(t, err)
	assert.Equal(t, "Alice@rcs.local", sub.IMPI)
	assert.Equal(t, []string{"sip:Alice@rcs.local", "tel:+8613800000001"}, sub.IMPUs)
	assert.Equal(t, digest.HA1(digest.MD5, "Alice@rcs.local", "rcs.local", "pw"), sub.HA1MD5)
	assert.Equal(t, digest.HA1(digest.SHA256, "Alice@rcs.local", "rcs.local", "pw"), sub.HA1SHA256)
	assert.False(t, sub.HasAKA())

	sub, err = Build(Spec{IMPUs: []string{"sip:b@rcs.local"}, K: "0x465b5ce8b199b49faa5f0a2ee238a6bc", OP: "cdc202d5123e20f62b6d676ac72cb318"}, "rcs.local", "rcs.local")
	require.NoError(t, err)
	assert.True(t, sub.HasAKA())
	assert.False(t, sub.HasDigest())
	assert.Equal(t, []byte{0x80, 0x00}, sub.AMF, "default AMF")
	assert.Equal(t, "cd63cb71954a9f4e48a5994e37a02baf", hex.EncodeToString(sub.OPc), "OPc derived from OP (TS 35.208 test set 1)")

	for _, bad := range []struct {
		spec Spec
		want string
	}{
		{Spec{Password: "pw"}, "public identity is needed"},
		{Spec{IMPUs: []string{"sip:c@rcs.local"}}, "needs a password or AKA keys"},
		{Spec{IMPUs: []string{"sip:c@rcs.local"}, K: "00"}, "k wants 16 bytes"},
		{Spec{IMPUs: []string{"sip:c@rcs.local"}, K: "465b5ce8b199b49faa5f0a2ee238a6bc"}, "k needs op or opc"},
		{Spec{IMPUs: []string{"sip:c@rcs.local"}, OP: "cdc202d5123e20f62b6d676ac72cb318", Password: "x"}, "op/opc need k"},
		{Spec{IMPUs: []string{"sip:c@rcs.local"}, K: "465b5ce8b199b49faa5f0a2ee238a6bc", OP: "cdc202d5123e20f62b6d676ac72cb318", OPc: "cd63cb71954a9f4e48a5994e37a02baf"}, "not both"},
		{Spec{IMPUs: []string{"sip:c@rcs.local"}, IMPI: "a b", Password: "x"}, "private identity"},
		{Spec{IMPUs: []string{"tel:+123"}, Password: "x"}, ""},
	} {
		_, err := Build(bad.spec, "rcs.local", "rcs.local")
		if bad.want == "" {
			assert.NoError(t, err, "tel: gets a default IMPI from the domain")
			continue
		}
		assert.ErrorIs(t, err, ErrInvalid)
		assert.ErrorContains(t, err, bad.want)
	}
}

func TestReadCSV(t *testing.T) {
	subs, err := ReadCSV(strings.NewReader("\ufeffimpu,impi,password,k,op,opc,amf\nsip:a@rcs.local,,pa,,,,\nsip:b@rcs.local;tel:+861,bee,pb,,,,\n"), "rcs.local", "rcs.local")
	require.NoError(t, err)
	require.Len(t, subs, 2)
	assert.Equal(t, "a@rcs.local", subs[0].IMPI)
	assert.Equal(t, []string{"sip:b@rcs.local", "tel:+861"}, subs[1].IMPUs)
	assert.Equal(t, "bee", subs[1].IMPI)

	_, err = ReadCSV(strings.NewReader("name,pw\nx,y\n"), "rcs.local", "rcs.local")
	assert.ErrorContains(t, err, "header must be")
	_, err = ReadCSV(strings.NewReader("impu,password\nsip:a@rcs.local,p\nsip:a@rcs.local,q\n"), "rcs.local", "rcs.local")
	assert.ErrorContains(t, err, "line 3: private identity a@rcs.local already on line 2")
}
