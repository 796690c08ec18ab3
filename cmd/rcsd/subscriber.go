package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"rcsd/admin"
	"rcsd/config"
	"rcsd/identity"
	"rcsd/storage"
	"rcsd/storage/backends"
	"rcsd/storage/bolt"
	"rcsd/subscriber"
)

// provisioner is where subscriber commands act: the store itself when no
// server holds it, else the running server's admin API.
type provisioner interface {
	put(ctx context.Context, specs []subscriber.Spec, csv []byte) (int, error)
	list(ctx context.Context, after string, limit int) ([]admin.View, error)
	show(ctx context.Context, key string) (admin.View, error)
	del(ctx context.Context, key string) (string, error)
	close() error
}

func subscriberCmd(ctx context.Context, a *args, out io.Writer) error {
	cfg, err := loadConfig(a)
	if err != nil {
		return err
	}
	if len(a.pos) == 0 {
		return usageError{"subscriber: want add, import, list, show or delete"}
	}
	sub := a.pos[0]
	pos := a.pos[1:]
	p, err := openProvisioner(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.close()
	switch sub {
	case "add":
		if len(pos) == 0 {
			return usageError{"subscriber add: want <public-uri>"}
		}
		spec := subscriber.Spec{IMPUs: pos}
		spec.Password, _ = a.take("password")
		spec.IMPI, _ = a.take("impi")
		spec.K, _ = a.take("k")
		spec.OP, _ = a.take("op")
		spec.OPc, _ = a.take("opc")
		spec.AMF, _ = a.take("amf")
		if err := noFlagsLeft(a); err != nil {
			return err
		}
		// Validate here too, so mistakes are reported the same either way.
		built, err := subscriber.Build(spec, cfg.RealmOrDomain(), cfg.Domain)
		if err != nil {
			return err
		}
		if _, err := p.put(ctx, []subscriber.Spec{spec}, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "added %s (%s)\n", built.IMPI, strings.Join(built.IMPUs, ", "))
	case "import":
		if len(pos) != 1 {
			return usageError{"subscriber import: want <file.csv>"}
		}
		if err := noFlagsLeft(a); err != nil {
			return err
		}
		data, err := os.ReadFile(pos[0])
		if err != nil {
			return err
		}
		start := time.Now()
		n, err := p.put(ctx, nil, data)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "imported %d subscribers in %s\n", n, time.Since(start).Round(time.Millisecond))
	case "list":
		after, _ := a.take("after")
		limit := 0
		if v, ok := a.take("limit"); ok {
			if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
				return usageError{"subscriber list: --limit wants a positive number"}
			}
		}
		if err := noFlagsLeft(a); err != nil {
			return err
		}
		for remaining := limit; ; {
			page := 1000
			if limit > 0 && remaining < page {
				page = remaining
			}
			views, err := p.list(ctx, after, page)
			if err != nil {
				return err
			}
			for _, v := range views {
				fmt.Fprintf(out, "%s\t%s\tdigest=%t aka=%t\n", v.IMPI, strings.Join(v.IMPUs, ","), v.Digest, v.AKA)
			}
			if len(views) < page {
				break
			}
			after = views[len(views)-1].IMPI
			if limit > 0 {
				if remaining -= len(views); remaining <= 0 {
					break
				}
			}
		}
	case "show", "delete":
		if len(pos) != 1 {
			return usageError{"subscriber " + sub + ": want <impi-or-public-uri>"}
		}
		if err := noFlagsLeft(a); err != nil {
			return err
		}
		if sub == "show" {
			v, err := p.show(ctx, pos[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		impi, err := p.del(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted %s\n", impi)
	default:
		return usageError{fmt.Sprintf("subscriber: unknown command %q", sub)}
	}
	return nil
}

func noFlagsLeft(a *args) error {
	for k := range a.flags {
		return usageError{fmt.Sprintf("unknown flag --%s", k)}
	}
	return nil
}

func openProvisioner(ctx context.Context, cfg config.Config) (provisioner, error) {
	if cfg.Storage != "memory:" {
		store, err := backends.Open(ctx, cfg.Storage)
		if err == nil {
			return &direct{store: store, realm: cfg.RealmOrDomain(), domain: cfg.Domain}, nil
		}
		if !errors.Is(err, bolt.ErrLocked) {
			return nil, fmt.Errorf("storage %s: %w", backends.Redact(cfg.Storage), err)
		}
	}
	if cfg.HTTP.Listen == "" {
		return nil, errors.New("the store is in use by a running rcsd and http.listen is empty: no way to reach it")
	}
	return &remote{base: "http://" + cfg.HTTP.Listen, token: cfg.HTTP.AdminToken, client: &http.Client{Timeout: 5 * time.Minute}}, nil
}

type direct struct {
	store         storage.Store
	realm, domain string
}

func (d *direct) put(ctx context.Context, specs []subscriber.Spec, csv []byte) (int, error) {
	var subs []storage.Subscriber
	if csv != nil {
		var err error
		if subs, err = subscriber.ReadCSV(bytes.NewReader(csv), d.realm, d.domain); err != nil {
			return 0, err
		}
	}
	for _, sp := range specs {
		s, err := subscriber.Build(sp, d.realm, d.domain)
		if err != nil {
			return 0, err
		}
		subs = append(subs, s)
	}
	return len(subs), d.store.PutSubscribers(ctx, subs)
}

func (d *direct) list(ctx context.Context, after string, limit int) ([]admin.View, error) {
	subs, err := d.store.ListSubscribers(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]admin.View, 0, len(subs))
	for i := range subs {
		out = append(out, admin.ViewOf(&subs[i]))
	}
	return out, nil
}

func (d *direct) find(ctx context.Context, key string) (storage.Subscriber, error) {
	if strings.Contains(key, ":") {
		if c, err := identity.Canonical(key); err == nil {
			return d.store.SubscriberByIMPU(ctx, c)
		}
	}
	return d.store.SubscriberByIMPI(ctx, key)
}

func (d *direct) show(ctx context.Context, key string) (admin.View, error) {
	s, err := d.find(ctx, key)
	if err != nil {
		return admin.View{}, fmt.Errorf("%s: %w", key, err)
	}
	return admin.ViewOf(&s), nil
}

func (d *direct) del(ctx context.Context, key string) (string, error) {
	s, err := d.find(ctx, key)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return s.IMPI, d.store.DeleteSubscriber(ctx, s.IMPI)
}

func (d *direct) close() error { return d.store.Close() }

type remote struct {
	base, token string
	client      *http.Client
}

func (r *remote) do(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	res, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", r.base, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API: %s: %s", res.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (r *remote) put(ctx context.Context, specs []subscriber.Spec, csv []byte) (int, error) {
	var out struct {
		Stored int `json:"stored"`
	}
	var err error
	if csv != nil {
		err = r.do(ctx, http.MethodPost, "/admin/subscribers", "text/csv", csv, &out)
	} else {
		body, _ := json.Marshal(specs)
		err = r.do(ctx, http.MethodPost, "/admin/subscribers", "application/json", body, &out)
	}
	return out.Stored, err
}

func (r *remote) list(ctx context.Context, after string, limit int) ([]admin.View, error) {
	var out []admin.View
	q := url.Values{"after": {after}, "limit": {strconv.Itoa(limit)}}
	return out, r.do(ctx, http.MethodGet, "/admin/subscribers?"+q.Encode(), "", nil, &out)
}

func (r *remote) show(ctx context.Context, key string) (admin.View, error) {
	var out admin.View
	return out, r.do(ctx, http.MethodGet, "/admin/subscribers/"+url.PathEscape(key), "", nil, &out)
}

func (r *remote) del(ctx context.Context, key string) (string, error) {
	var out map[string]string
	err := r.do(ctx, http.MethodDelete, "/admin/subscribers/"+url.PathEscape(key), "", nil, &out)
	return out["deleted"], err
}

func (r *remote) close() error { return nil }
