package featuretag

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Every spelling of the spec's examples (nm01-core fixtures 15 and 19,
// nm01-chat-group's tolerant parsing list).
func TestHas(t *testing.T) {
	for _, tc := range []struct {
		v    string
		icsi string
		want bool
	}{
		{`*;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"`, ICSIMsg, true},
		{`*;g.3gpp.icsi-ref="urn:3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"`, ICSIMsg, true},
		{`*;+g.3gpp.icsi-ref="urn:3Aurn-7:3A3gpp-service.ims.icsi.oma.cpm.msg"`, ICSIMsg, true},
		{`*+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gppservice.ims.icsi.oma.cpm.msg"`, ICSIMsg, true},
		{`urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg`, ICSIMsg, true},
		{`URN:URN-7:3GPP-SERVICE.IMS.ICSI.OMA.CPM.MSG`, ICSIMsg, true},
		{`+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.largemsg"`, ICSIMsg, false},
		{`+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session,urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"`, ICSIMsg, true},
		{`+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msgx"`, ICSIMsg, false},
		{``, ICSIMsg, false},
		{"*;+g.3gpp.icsi-ref=“urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg”", ICSIMsg, true},
	} {
		assert.Equal(t, tc.want, Has(tc.v, tc.icsi), tc.v)
	}
	assert.Equal(t, `*;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"`, AcceptContact(ICSIMsg))
	assert.True(t, Has(AcceptContact(ICSIMsg), ICSIMsg))
}

func TestParam(t *testing.T) {
	v, ok := Param(`*;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg";barCycle="10"`, "barcycle")
	assert.True(t, ok)
	assert.Equal(t, "10", v)
	_, ok = Param(`*;+g.3gpp.icsi-ref="x"`, "barCycle")
	assert.False(t, ok)
}
