package imdn

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDisposition(t *testing.T) {
	tests := []struct {
		in   string
		want Disposition
		str  string
	}{
		{"", 0, ""},
		{"  ", 0, ""},
		{"display", Display, "display"},
		{"positive-delivery,display", PositiveDelivery | Display, "positive-delivery, display"},                                                           // seed 001 L577
		{"negative-delivery, positive-delivery, display", PositiveDelivery | NegativeDelivery | Display, "positive-delivery, negative-delivery, display"}, // seed 001 L2114
		{"POSITIVE-DELIVERY , Negative-Delivery", PositiveDelivery | NegativeDelivery, "positive-delivery, negative-delivery"},
		{"burned", Burned, "burned"},
		{"\tprocessing ,, display,\t", Processing | Display, "processing, display"},
		{"display, display", Display, "display"},
		{"burned,display,processing,negative-delivery,positive-delivery", PositiveDelivery | NegativeDelivery | Processing | Display | Burned,
			"positive-delivery, negative-delivery, processing, display, burned"},
		{"display;x=1, positive-delivery", PositiveDelivery | Display, "positive-delivery, display"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDisposition(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, d)
			assert.Equal(t, tt.str, d.String())
			again, err := ParseDisposition(d.String())
			require.NoError(t, err)
			assert.Equal(t, d, again)
		})
	}
}

func TestParseDispositionUnknown(t *testing.T) {
	tests := []struct {
		in    string
		known Disposition
		msg   string
	}{
		{"read", 0, `imdn: invalid: unknown disposition "read"`},
		{"display, delivered, burn", Display, `imdn: invalid: unknown disposition "delivered", "burn"`},
		{"positive delivery", 0, `"positive delivery"`},
		{"positive-delivery;", PositiveDelivery, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDisposition(tt.in)
			assert.Equal(t, tt.known, d)
			if tt.msg == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrUnknownDisposition)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
}

func TestDispositionStringIgnoresUnknownBits(t *testing.T) {
	assert.Equal(t, "display", (Display | 1<<7).String())
	assert.True(t, (Display | Burned).Has(Burned))
	assert.False(t, Display.Has(Display|Burned))
}

func TestWants(t *testing.T) {
	all := PositiveDelivery | NegativeDelivery | Processing | Display | Burned
	tests := []struct {
		kind   Kind
		status string
		needs  Disposition // the only disposition that asks for it; 0 = never wanted
	}{
		{DeliveryNotification, "delivered", PositiveDelivery},
		{DeliveryNotification, "failed", NegativeDelivery},
		{DeliveryNotification, "forbidden", NegativeDelivery},
		{DeliveryNotification, "error", NegativeDelivery},
		{DisplayNotification, "displayed", Display},
		{DisplayNotification, "forbidden", Display},
		{DisplayNotification, "error", Display},
		{ProcessingNotification, "processed", Processing},
		{ProcessingNotification, "stored", Processing},
		{ProcessingNotification, "forbidden", Processing},
		{ProcessingNotification, "error", Processing},
		{BurnNotification, "burned", Burned},
		{BurnNotification, "error", Burned},
		{DeliveryNotification, "displayed", 0},
		{DisplayNotification, "delivered", 0},
		{BurnNotification, "delivered", 0},
		{Kind(0), "delivered", 0},
		{DeliveryNotification, "Delivered", 0},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String()+"/"+tt.status, func(t *testing.T) {
			assert.Equal(t, tt.needs, For(tt.kind, tt.status))
			for _, dn := range dispositionNames {
				assert.Equal(t, dn.d == tt.needs, dn.d.Wants(tt.kind, tt.status), "request %s", dn.name)
			}
			assert.Equal(t, tt.needs != 0, all.Wants(tt.kind, tt.status))
			assert.False(t, (all&^tt.needs).Wants(tt.kind, tt.status), "every disposition but the one needed")
			assert.False(t, Disposition(0).Wants(tt.kind, tt.status))
		})
	}
	// The spec's example request (seed 001 L577) asks for delivered and displayed only.
	d, err := ParseDisposition("positive-delivery,display")
	require.NoError(t, err)
	assert.True(t, d.Wants(DeliveryNotification, "delivered"))
	assert.True(t, d.Wants(DisplayNotification, "displayed"))
	assert.False(t, d.Wants(DeliveryNotification, "failed"))
	assert.False(t, d.Wants(BurnNotification, "burned"))
}
