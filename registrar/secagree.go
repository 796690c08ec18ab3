package registrar

import (
	"strings"

	siplib "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"rcsd/secagree"
	rsip "rcsd/sip"
)

// secAgree applies RFC 3329 to a REGISTER (standalone mode, seed 001 §9.1,
// TS 33.203 §7): it returns a response when the request must be refused,
// else the Security-Server the request's 401 carries (nil when the handset
// did not ask for sec-agree).
//
// Refusals are 494 Security Agreement Required with Security-Server — for
// a missing Security-Client, no mechanism in common, and a Security-Verify
// that is missing or differs from what rcsd answers to the same offer (a
// downgrade: someone stripped or altered the headers). 494 rather than 403
// because nothing proves the handset is at fault: the answer keeps it in
// the sec-agree procedure, it starts over, and an attacker who altered the
// headers gets no registration either way. An authenticated REGISTER that
// agreed on tls-3gpp but did not arrive over TLS is refused the same way.
func (r *Registrar) secAgree(req *siplib.Request) (*siplib.Response, string, []secagree.Mechanism) {
	s := r.opts.SecAgree
	clientValues := secagree.Values(req, "Security-Client")
	if !secagree.Required(req) && len(clientValues) == 0 {
		return nil, "", nil
	}
	client, err := secagree.Parse(clientValues)
	if err != nil {
		res, result := r.reject(req, 400, "Malformed Security-Client header", "bad_request", err.Error())
		return res, result, nil
	}
	if len(client) == 0 {
		return r.refuseSecAgree(req, s.Offer(), "Security Agreement Required", "sec-agree required without Security-Client"), "sec_agree", nil
	}
	answer, ok := s.Answer(client)
	if !ok {
		return r.refuseSecAgree(req, s.Offer(), "Security Agreement Required", "no mechanism in common with Security-Client: "+secagree.Format(client)), "sec_agree", nil
	}
	creds, _, err := r.credentials(req)
	if err != nil || creds == nil {
		return nil, "", answer // the initial REGISTER: its 401 carries Security-Server
	}
	verifyValues := secagree.Values(req, "Security-Verify")
	if len(verifyValues) == 0 {
		return r.refuseSecAgree(req, answer, "Security Agreement Required - Security-Verify Missing", "answered challenge without Security-Verify (downgrade?)"), "sec_agree", nil
	}
	verify, err := secagree.Parse(verifyValues)
	if err != nil || !secagree.Equal(verify, answer) {
		return r.refuseSecAgree(req, answer, "Security Agreement Required - Security-Verify Mismatch",
			"Security-Verify "+strings.Join(verifyValues, ", ")+" differs from Security-Server "+secagree.Format(answer)+" (downgrade?)"), "sec_agree", nil
	}
	if answer[0].Name == secagree.TLS3GPP {
		if tp := strings.ToUpper(req.Transport()); tp != "TLS" && tp != "WSS" {
			return r.refuseSecAgree(req, answer, "Security Agreement Required - TLS Required", "tls-3gpp agreed but the REGISTER came over "+tp), "sec_agree", nil
		}
	}
	return nil, "", answer
}

func (r *Registrar) refuseSecAgree(req *siplib.Request, server []secagree.Mechanism, reason, why string) *siplib.Response {
	r.log.Warn("REGISTER refused by the security agreement", zap.String("reason", why),
		zap.String("source", req.Source()), zap.String("transport", req.Transport()), zap.String("call_id", callID(req)))
	res := rsip.NewResponse(req, 494, reason)
	res.AppendHeader(siplib.NewHeader("Security-Server", secagree.Format(server)))
	res.AppendHeader(siplib.NewHeader("Require", secagree.OptionTag))
	return res
}
