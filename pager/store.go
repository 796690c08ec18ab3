package pager

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"rcsd/registrar"
	"rcsd/storage"
)

// RegistrationChanged implements registrar.Observer: a recipient that
// gains a way in — a new binding, or a binding whose flow changed (the
// handset reconnected, or registered again through another node after
// its node died) — gets its stored messages now, whatever their back-off
// said. A refresh over the same flow changes nothing reachable.
func (p *Pager) RegistrationChanged(c registrar.Change) {
	if gainsFlow(c) {
		p.kickSubscriber(c.AOR)
	}
}

// gainsFlow reports whether c adds a binding or changes one's flow.
func gainsFlow(c registrar.Change) bool {
	known := make(map[string]*storage.Binding, len(c.Before))
	for i := range c.Before {
		known[c.Before[i].Key()] = &c.Before[i]
	}
	for i := range c.After {
		if old := known[c.After[i].Key()]; old == nil || !sameFlow(old, &c.After[i]) {
			return true
		}
	}
	return false
}

func sameFlow(a, b *storage.Binding) bool {
	return a.Transport == b.Transport && a.Source == b.Source && a.Local == b.Local && a.Node == b.Node &&
		slices.Equal(a.Path, b.Path)
}

// kickSubscriber drains the queues of aor and of the subscriber's other
// public identities (messages are stored under the identity addressed).
// A message stored while the registration was being written (its sender's
// node saw no binding yet, and this drain may read the queue before the
// message is in it) is caught by a second look a sweep later: one read,
// kept by this node (were it to die meanwhile, the rescan finds it).
func (p *Pager) kickSubscriber(aor string) {
	ids := []string{aor}
	if sub, err := p.store.SubscriberByIMPU(p.ctx, aor); err == nil {
		for _, u := range sub.IMPUs {
			if u != aor {
				ids = append(ids, u)
			}
		}
	}
	for _, u := range ids {
		p.kick(u, true)
	}
	at := p.now().Add(p.opts.SweepInterval)
	p.mu.Lock()
	for _, u := range ids {
		switch old, ok := p.later[u]; {
		case !ok || old.recheck:
			p.later[u] = later{at: at, recheck: true}
		case at.Before(old.at):
			p.later[u] = later{at: at} // a retry waits: it comes sooner
		}
	}
	p.mu.Unlock()
}

// kick starts a drain of recipient's stored messages in the background,
// or asks the running one to go round again. force ignores back-off.
func (p *Pager) kick(recipient string, force bool) { p.startDrain(recipient, force, false) }

// startDrain is kick; with recheck it first reads whether anything is
// stored at all, and leaves it there when not (no lease taken).
func (p *Pager) startDrain(recipient string, force, recheck bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if p.draining[recipient] {
		p.again[recipient] = p.again[recipient] || force
		p.mu.Unlock()
		return
	}
	p.draining[recipient] = true
	p.wg.Add(1) // under mu: Close cannot be waiting yet
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		select {
		case p.slots <- struct{}{}:
		case <-p.ctx.Done():
			p.finishDrain(recipient)
			return
		}
		defer func() { <-p.slots }()
		if recheck {
			ms, err := p.store.PendingMessages(p.ctx, recipient, 1)
			if err == nil && len(ms) == 0 {
				p.finishDrain(recipient)
				return
			}
		}
		if !p.lease(recipient) {
			// Another node drains it (it reads until nothing is due), or
			// the store is down. Look again once that node's lease would
			// have lapsed: it may have died holding it.
			p.scheduleRetry(p.ctx, recipient, p.now().Add(p.opts.LeaseTTL))
			p.finishDrain(recipient)
			return
		}
		ctx, lost := p.holdLease(recipient)
		defer func() {
			lost()
			if err := p.store.Release(context.WithoutCancel(p.ctx), drainKey(recipient), p.opts.Node); err != nil {
				p.log.Debug("drain lease not released", zap.String("to", recipient), zap.Error(err))
			}
		}()
		for {
			p.drain(ctx, recipient, force)
			p.mu.Lock()
			f, again := p.again[recipient]
			delete(p.again, recipient)
			if !again && !f || ctx.Err() != nil {
				delete(p.draining, recipient)
				p.mu.Unlock()
				return
			}
			force = f
			p.mu.Unlock()
		}
	}()
}

func drainKey(recipient string) string { return "drain:" + recipient }

// lease takes or renews this node's lease on draining recipient: nodes
// sharing a store must not deliver one recipient's messages twice at once.
func (p *Pager) lease(recipient string) bool {
	ok, err := p.store.Lease(p.ctx, drainKey(recipient), p.opts.Node, p.now(), p.opts.LeaseTTL)
	if err != nil {
		p.log.Warn("drain lease", zap.String("to", recipient), zap.Error(err))
	}
	return err == nil && ok
}

// holdLease renews the lease every LeaseTTL/3 while the drain runs — the
// lease is short so that a node dying mid-drain blocks the recipient's
// messages for one TTL only — and cancels the returned context if the
// lease is lost. release stops the renewal.
func (p *Pager) holdLease(recipient string) (ctx context.Context, release func()) {
	ctx, cancel := context.WithCancel(p.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(p.opts.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !p.lease(recipient) {
					p.log.Warn("drain lease lost: stopping the drain", zap.String("to", recipient))
					cancel()
					return
				}
			}
		}
	}()
	return ctx, func() { cancel(); <-done }
}

func (p *Pager) finishDrain(recipient string) {
	p.mu.Lock()
	delete(p.draining, recipient)
	delete(p.again, recipient)
	p.mu.Unlock()
}

// drainBatch is how many stored messages one read takes.
const drainBatch = 64

// drainWindow is how many stored messages are in flight to one recipient
// at once: waiting for each answer before sending the next would bound a
// drain by the handset's answer time (a few ms: a few hundred a second).
const drainWindow = 32

// drain delivers recipient's stored messages in ID (arrival) order, up to
// drainWindow in flight, each sent only after the one before it was sent.
// It stops at the first message the recipient does not take: that one and
// those after it that were not taken stay stored and keep their order for
// the retry (the back-off, or the next registration). Delivered messages
// are removed a batch at a time in one write: a crash in between delivers
// them again (at-least-once; handsets de-duplicate by imdn.Message-ID).
func (p *Pager) drain(ctx context.Context, recipient string, force bool) {
	for ctx.Err() == nil {
		if !p.reachable(ctx, recipient) {
			return // its next registration drains it
		}
		ms, err := p.store.PendingMessages(ctx, recipient, drainBatch)
		if err != nil {
			p.log.Warn("reading stored messages failed", zap.String("to", recipient), zap.Error(err))
			p.scheduleRetry(ctx, recipient, p.now().Add(p.opts.SweepInterval))
			return
		}
		now := p.now()
		var due []storage.Message
		for _, m := range ms {
			if !m.Expires.After(now) {
				continue // the sweeper expires it
			}
			if !force && m.NextAttempt.After(now) {
				if len(due) == 0 {
					p.scheduleRetry(ctx, recipient, m.NextAttempt)
				}
				break
			}
			due = append(due, m)
		}
		if len(due) == 0 {
			return
		}
		// Each message is sent (in order) before the next is started;
		// the answers are awaited concurrently, drainWindow at a time.
		outs := make([]outcome, len(due))
		slots := make(chan struct{}, drainWindow)
		var wg sync.WaitGroup
		for i := range due {
			slots <- struct{}{}
			dctx, cancel := context.WithTimeout(ctx, p.opts.DeliveryTimeout)
			wait := p.start(dctx, due[i])
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				defer cancel()
				outs[i] = wait()
			}()
		}
		wg.Wait()
		var done []string
		var retry time.Time // the earliest failed attempt's next
		stopped := false
		for i, m := range due {
			out := outs[i]
			switch {
			case out.class == delivered:
				p.metrics.Delivered.WithLabelValues("stored").Inc()
				p.metrics.Latency.Observe(p.now().Sub(m.Received).Seconds())
				done = append(done, m.ID)
			case out.class == rejected:
				p.metrics.Failed.WithLabelValues("rejected").Inc()
				p.log.Info("stored message refused by the recipient", zap.String("to", m.Recipient), zap.String("why", out.why))
				done = append(done, m.ID)
				p.failed(m, "refused: "+out.why)
			case out.why == noContact:
				stopped = true
			default:
				stopped = true
				m.Attempts++
				m.NextAttempt = p.now().Add(p.backoff(m.Attempts))
				if err := p.store.UpdateMessage(ctx, m); err != nil {
					p.log.Warn("recording a failed attempt", zap.String("id", m.ID), zap.Error(err))
				}
				if retry.IsZero() || m.NextAttempt.Before(retry) {
					retry = m.NextAttempt
				}
				p.log.Debug("stored message not taken, will retry", zap.String("to", m.Recipient),
					zap.String("why", out.why), zap.Time("next", m.NextAttempt))
			}
		}
		if !retry.IsZero() {
			p.scheduleRetry(ctx, recipient, retry)
		}
		if len(done) > 0 {
			if err := p.store.DeleteMessages(context.WithoutCancel(ctx), recipient, done); err != nil {
				p.log.Warn("delivered messages not removed", zap.String("to", recipient), zap.Error(err))
				// The next batch would repeat them; a later drain removes
				// them (after delivering them again: at-least-once).
				p.scheduleRetry(ctx, recipient, p.now().Add(p.opts.SweepInterval))
				return
			}
		}
		if stopped {
			return
		}
		force = false // later messages follow the first ones' fate
	}
}

// maxQueuedDrains bounds the drains started or waiting for a slot that a
// sweep lets pile up.
const maxQueuedDrains = 8192

// backoff doubles from RetryMin up to RetryMax.
func (p *Pager) backoff(attempts int) time.Duration {
	d := p.opts.RetryMin
	for i := 1; i < attempts && d < p.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, p.opts.RetryMax)
}

// Run expires stored messages and retries those whose back-off has passed
// until ctx ends.
func (p *Pager) Run(ctx context.Context) {
	t := time.NewTicker(p.opts.SweepInterval)
	defer t.Stop()
	p.lastRescan = p.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.sweep(ctx)
		}
	}
}

// sweep expires stored messages and starts the retries that are due.
// Retries come from the store's schedule, written when a delivery
// attempt fails: recipients that are merely offline are not on it (their
// next registration drains them), so a sweep costs the same with a
// million of them as with none. Every RescanInterval one of the nodes
// sharing the store also reads every recipient, for a schedule that was
// lost.
func (p *Pager) sweep(ctx context.Context) {
	now := p.now()
	gone, err := p.store.ExpireMessages(ctx, now, 10000)
	if err != nil {
		p.log.Warn("expiring stored messages failed", zap.Error(err))
	}
	for _, m := range gone {
		if internal(m.Recipient) {
			continue // a kept report reached its lifetime
		}
		p.metrics.Expired.Inc()
		p.failed(m, "expired undelivered")
	}
	// Each kick is a goroutine until a drain slot frees up: bound how
	// many wait (the rest stay due in the store for the next sweep).
	p.mu.Lock()
	budget := maxQueuedDrains - len(p.draining)
	p.mu.Unlock()
	for ctx.Err() == nil && budget > 0 {
		rs, err := p.store.DueRetries(ctx, now, min(budget, 1000))
		if err != nil {
			p.log.Warn("reading due retries failed", zap.Error(err))
			// Retries scheduled by other nodes while the store was out of
			// reach may be lost with it: rescan once it is back.
			p.lastRescan = time.Time{}
			break
		}
		for _, r := range rs {
			if !internal(r) {
				p.metrics.Retries.Inc()
				p.kick(r, false)
			}
		}
		if len(rs) < min(budget, 1000) {
			break
		}
		budget -= len(rs)
	}
	p.mu.Lock()
	var local []string
	var recheck []bool
	for r, l := range p.later {
		if budget <= 0 {
			break // the rest wait for the next sweep
		}
		if !l.at.After(now) {
			local = append(local, r)
			recheck = append(recheck, l.recheck)
			delete(p.later, r)
			budget--
		}
	}
	p.mu.Unlock()
	for i, r := range local {
		if !recheck[i] {
			p.metrics.Retries.Inc()
		}
		p.startDrain(r, recheck[i], recheck[i])
	}
	if now.Sub(p.lastRescan) >= p.opts.RescanInterval {
		// One node per RescanInterval does it: the lease is not released,
		// it lapses.
		ok, err := p.store.Lease(ctx, "rescan", p.opts.Node, now, p.opts.RescanInterval)
		switch {
		case err != nil:
			p.log.Warn("rescan lease", zap.Error(err))
		case !ok:
			p.lastRescan = now // another node's turn
		case p.rescan(ctx, now):
			p.metrics.Rescans.Inc()
			p.lastRescan = now
		}
	}
}

// rescan kicks every reachable recipient whose first stored message is
// due: two reads per recipient with stored messages. It reports whether
// it went through them all.
func (p *Pager) rescan(ctx context.Context, now time.Time) bool {
	after := ""
	for ctx.Err() == nil {
		rs, err := p.store.PendingRecipients(ctx, after, 1000)
		if err != nil {
			p.log.Warn("listing stored messages failed", zap.Error(err))
			return false
		}
		if len(rs) == 0 {
			return true
		}
		for _, r := range rs {
			if internal(r) {
				continue
			}
			ms, err := p.store.PendingMessages(ctx, r, 1)
			if err == nil && len(ms) == 1 && !ms[0].NextAttempt.After(now) && p.reachable(ctx, r) {
				p.kick(r, false)
			}
		}
		after = rs[len(rs)-1]
	}
	return false
}

// scheduleRetry puts recipient on the store's retry schedule, or, when
// the store cannot take it, on this node's own (lost if the node dies:
// then the rescan finds the messages).
func (p *Pager) scheduleRetry(ctx context.Context, recipient string, at time.Time) {
	err := p.store.ScheduleRetry(context.WithoutCancel(ctx), recipient, at)
	if err == nil {
		return
	}
	p.log.Warn("scheduling a retry in the store failed; kept by this node", zap.String("to", recipient), zap.Error(err))
	p.mu.Lock()
	if old, ok := p.later[recipient]; !ok || old.recheck || at.Before(old.at) {
		p.later[recipient] = later{at: at}
	}
	p.mu.Unlock()
}

// reachable reports whether a retry can go anywhere: the S-CSCF in ims-as
// mode, a binding otherwise.
func (p *Pager) reachable(ctx context.Context, recipient string) bool {
	if p.opts.Route != nil {
		return true
	}
	bs, err := p.recipientBindings(ctx, recipient)
	return err == nil && len(bs) > 0
}

// failed reports a message that will not be delivered. A negative-delivery
// notification to its sender, where one was asked for, is generated by
// the IMDN function; a stored notification never causes another one.
func (p *Pager) failed(m storage.Message, why string) {
	p.log.Info("message not delivered", zap.String("id", m.ID), zap.String("from", m.Sender),
		zap.String("to", m.Recipient), zap.String("why", why))
	p.negativeDelivery(m)
	if p.onFailed != nil {
		p.onFailed(m)
	}
}

var _ registrar.Observer = (*Pager)(nil)
