// Package backends opens a storage backend from the URL in rcsd's
// configuration. It is the only package that knows every backend, so the
// rest of rcsd depends on the storage interfaces alone.
//
// Supported URLs:
//
//	memory:                 in-process, nothing persisted (tests, trials)
//	file:PATH               embedded bbolt database in directory PATH
//	                        (file:./data, file:/var/lib/rcsd,
//	                        file:///var/lib/rcsd)
//	redis://[user:pass@]host:port[,host2:port2…][/db][?master=NAME&cluster=1]
//	rediss://…              Redis (single, Sentinel or Cluster; TLS with
//	                        rediss), see storage/redis
package backends

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"rcsd/storage"
	"rcsd/storage/bolt"
	"rcsd/storage/memory"
	"rcsd/storage/redis"
)

// ErrUnsupported means the URL names a backend this build does not have.
var ErrUnsupported = errors.New("storage backend not supported")

// Open opens the backend url names. ctx bounds the opening only; it is not
// kept. Opening a file: database can take up to a second when another
// process holds it (the error then wraps bolt.ErrLocked). Errors name the
// backend but leave naming the URL to the caller, except for URLs Open
// cannot make sense of; passwords in URLs are never repeated.
func Open(ctx context.Context, rawURL string) (storage.Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	scheme, rest, ok := strings.Cut(rawURL, ":")
	if !ok || scheme == "" {
		return nil, fmt.Errorf("storage URL %q: want memory:, file:PATH or redis://host:port/db", Redact(rawURL))
	}
	switch strings.ToLower(scheme) {
	case "memory":
		if rest != "" && rest != "//" {
			return nil, fmt.Errorf("storage URL %q: memory: takes no path or options", Redact(rawURL))
		}
		return memory.New(), nil
	case "file":
		dir, err := filePath(rest)
		if err != nil {
			return nil, fmt.Errorf("storage URL %q: %w", Redact(rawURL), err)
		}
		s, err := bolt.Open(dir, bolt.Options{})
		if err != nil {
			return nil, err
		}
		return s, nil
	case "redis", "rediss":
		opts, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("storage URL %q: %w", Redact(rawURL), err)
		}
		s, err := redis.Open(ctx, opts)
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("storage URL %q: unknown backend %q; want memory:, file:PATH or redis://host:port/db", Redact(rawURL), scheme)
	}
}

// filePath extracts the directory of a file: URL. Besides the opaque form
// (file:./data, file:/var/lib/rcsd), taken verbatim, it accepts RFC 8089
// URLs with an empty or localhost authority (file:///var/lib/rcsd), since
// people paste those; their path is percent-decoded.
func filePath(rest string) (string, error) {
	after, isURL := strings.CutPrefix(rest, "//")
	if !isURL {
		if rest == "" {
			return "", errNoDir
		}
		return rest, nil
	}
	host, path, _ := strings.Cut(after, "/")
	if host != "" && host != "localhost" {
		return "", fmt.Errorf("file URL with host %q; write file:PATH (file:./data, file:/var/lib/rcsd)", host)
	}
	if path == "" {
		return "", errNoDir
	}
	path, err := url.PathUnescape(path)
	if err != nil {
		return "", fmt.Errorf("file URL path: %w", err)
	}
	return "/" + path, nil
}

var errNoDir = errors.New("file: needs a directory (file:./data, file:/var/lib/rcsd)")

// Redact hides a password in a storage URL that may carry one
// (redis://:pw@host), for logs and errors.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		if u.User == nil {
			return raw
		}
		return u.Redacted()
	}
	// Unparseable: hide whatever could be user information.
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			return scheme + "://xxxxx@" + rest[i+1:]
		}
	}
	return raw
}
