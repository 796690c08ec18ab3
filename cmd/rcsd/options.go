package main

import (
	"context"

	siplib "github.com/emiago/sipgo/sip"

	rsip "rcsd/sip"
)

// optionsHandler answers OPTIONS addressed to the server itself (keepalive
// and monitoring probes: a Request-URI without user part) with 200 and its
// capabilities. OPTIONS to a user is capability discovery, a later issue's
// job; until then it gets 404, never a silent drop.
func optionsHandler(router *rsip.Router) rsip.Handler {
	return func(_ context.Context, req *siplib.Request) *siplib.Response {
		if req.Recipient.User != "" {
			return rsip.NewResponse(req, 404, "Not Found")
		}
		res := rsip.NewResponse(req, 200, "OK")
		res.AppendHeader(siplib.NewHeader("Allow", router.Allow()))
		res.AppendHeader(siplib.NewHeader("Accept", "application/sdp"))
		return res
	}
}
