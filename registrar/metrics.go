package registrar

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the registrar's Prometheus series.
type Metrics struct {
	Registers    *prometheus.CounterVec
	AuthFailures *prometheus.CounterVec
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
	if count != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rcsd_registrations_active",
			Help: "Registered contacts (bindings) currently stored.",
		}, count))
	}
	return m
}
