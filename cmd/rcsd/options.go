package main

import (
	"context"

	siplib "github.com/emiago/sipgo/sip"

	"rcsd/pager"
	rsip "rcsd/sip"
)

// optionsHandler answers OPTIONS addressed to the server itself (keepalive
// and monitoring probes: a Request-URI without user part) with 200 and its
// capabilities; an OPTIONS to a user is capability discovery (seed 001
// §5.1.3.6), which the messaging function answers.
func optionsHandler(router *rsip.Router, users rsip.Handler) rsip.Handler {
	return func(ctx context.Context, req *siplib.Request) *siplib.Response {
		if !pager.ToServer(req) {
			return users(ctx, req)
		}
		res := rsip.NewResponse(req, 200, "OK")
		res.AppendHeader(siplib.NewHeader("Allow", router.Allow()))
		res.AppendHeader(siplib.NewHeader("Accept", "application/sdp"))
		return res
	}
}
