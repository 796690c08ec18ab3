package registrar

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the registrar's Prometheus series.
type Metrics struct {
	Registers    *prometheus.CounterVec
	AuthFailures *prometheus.CounterVec

	// resolved children: looking a label up hashes it on every call, and
	// this runs twice per registration.
	byResult map[string]prometheus.Counter
}

// results are the values of rcsd_register_total's result label.
var results = []string{"ok", "challenge", "stale", "forbidden", "bad_request", "interval_too_brief",
	"rate_limited", "query", "deregistered", "error"}

func (m *Metrics) register(result string) {
	if c, ok := m.byResult[result]; ok {
		c.Inc()
		return
	}
	m.Registers.WithLabelValues(result).Inc()
}

// NewMetrics registers the registrar's series on reg; count reports the
// number of active bindings at scrape time.
func NewMetrics(reg prometheus.Registerer, count func() float64) *Metrics {
	m := &Metrics{
		Registers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rcsd_register_total",
			Help: "REGISTER requests by result.",
		}, []string{"result"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rcsd_auth_failures_total",
			Help: "Failed authentications by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.Registers, m.AuthFailures)
	m.byResult = make(map[string]prometheus.Counter, len(results))
	for _, r := range results {
		m.byResult[r] = m.Registers.WithLabelValues(r)
	}
	if count != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rcsd_registrations_active",
			Help: "Registered contacts (bindings) currently stored.",
		}, count))
	}
	return m
}
