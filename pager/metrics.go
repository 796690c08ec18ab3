package pager

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the messaging function's Prometheus metrics.
type Metrics struct {
	Received    prometheus.Counter
	Delivered   *prometheus.CounterVec // by path: direct, stored
	Stored      prometheus.Counter
	Duplicates  prometheus.Counter
	Expired     prometheus.Counter
	Failed      *prometheus.CounterVec // by reason
	Refused     *prometheus.CounterVec // by status
	Latency     prometheus.Histogram   // arrival to delivery
	SpamReports prometheus.Counter
	PAUplink    prometheus.Counter
	PADownlink  prometheus.Counter
	Retries     prometheus.Counter // recipients a sweep took off the retry schedule
	Rescans     prometheus.Counter // completed reads of every queue
}

// NewMetrics registers the metrics; depth reports the stored messages
// (nil: not exported).
func NewMetrics(reg prometheus.Registerer, depth func() float64) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_messages_received_total",
			Help: "MESSAGE requests received by the messaging function."}),
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcsd_messages_delivered_total",
			Help: "Messages a recipient's contact took (2xx), directly or from the store."}, []string{"path"}),
		Stored: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_messages_stored_total",
			Help: "Messages stored for a recipient who could not take them (answered 202)."}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_messages_duplicate_total",
			Help: "Messages recognised as duplicates of a stored or delivered one and not stored again."}),
		Expired: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_messages_expired_total",
			Help: "Stored messages dropped undelivered at the end of their lifetime."}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcsd_messages_failed_total",
			Help: "Messages the recipient refused for good."}, []string{"reason"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcsd_messages_refused_total",
			Help: "MESSAGE requests refused, by status."}, []string{"status"}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rcsd_message_delivery_seconds",
			Help:    "Time from a message's arrival to its delivery.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, 1, 5, 30, 300, 3600, 86400}}),
		SpamReports: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_spam_reports_total",
			Help: "Spam reports received (seed 001 §5.1.3.8)."}),
		PAUplink: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_public_account_uplink_total",
			Help: "User messages handed to the public account platform."}),
		PADownlink: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_public_account_downlink_total",
			Help: "Public account messages accepted for users (one per recipient)."}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_message_retries_total",
			Help: "Recipients whose stored messages a sweep tried again (taken off the retry schedule)."}),
		Rescans: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcsd_message_rescans_total",
			Help: "Completed reads of every recipient's stored messages (pager.rescan_interval, one node at a time)."}),
	}
	reg.MustRegister(m.Retries, m.Rescans, m.PAUplink, m.PADownlink, m.SpamReports, m.Received, m.Delivered, m.Stored, m.Duplicates, m.Expired, m.Failed, m.Refused, m.Latency)
	if depth != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rcsd_messages_stored",
			Help: "Messages stored now, waiting for their recipients."}, depth))
	}
	return m
}
