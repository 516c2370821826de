package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownTimeout bounds how long a scrape in progress may delay the end
// of Serve.
const shutdownTimeout = 5 * time.Second

// Handler serves the metrics in Prometheus' formats. A scrape-time source
// that fails (the queue cannot be read) leaves its metrics out of that
// scrape, logs to Options.Log and counts in
// promhttp_metric_handler_errors_total; the other metrics are served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{m.opts.Log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Warn("metrics: " + fmt.Sprint(v...))
}

// CheckAddr checks that addr has the form HOST:PORT, for flag validation
// before anything is opened.
func CheckAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("metrics address %q: want HOST:PORT, e.g. 127.0.0.1:9101 (--metrics-listen)", addr)
	}
	return nil
}

// Listen opens addr (HOST:PORT) for Serve. Its errors say what to change.
func Listen(addr string) (net.Listener, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	fix := "give --metrics-listen another address"
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		fix = "another program (another nixpushd?) already listens there; stop it or give --metrics-listen another port"
	case errors.Is(err, syscall.EACCES):
		fix = "ports below 1024 need root or CAP_NET_BIND_SERVICE; give --metrics-listen a port above 1023"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		fix = "no network interface of this machine has that address; use 127.0.0.1 or one of its addresses"
	}
	return nil, fmt.Errorf("metrics: cannot listen on %s: %s (%w)", addr, fix, err)
}

// Serve serves /metrics on addr until ctx ends. It returns at once if addr
// cannot be opened (see Listen).
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	ln, err := Listen(addr)
	if err != nil {
		return err
	}
	return m.ServeListener(ctx, ln)
}

// ServeListener serves /metrics on ln until ctx ends, then lets scrapes in
// progress finish (for up to 5s) and returns nil; no goroutine it started
// outlives it. It closes ln. An error means ln failed.
func (m *Metrics) ServeListener(ctx context.Context, ln net.Listener) error {
	// handlers counts scrapes in progress; once closed, none starts.
	var (
		mu       sync.Mutex
		closed   bool
		handlers sync.WaitGroup
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "nixpushd: metrics at /metrics")
	})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if closed {
				mu.Unlock()
				http.Error(w, "nixpushd is stopping", http.StatusServiceUnavailable)
				return
			}
			handlers.Add(1)
			mu.Unlock()
			defer handlers.Done()
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.opts.Log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-served:
		err = fmt.Errorf("metrics on %s: %w", ln.Addr(), err)
		srv.Close()
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		if srv.Shutdown(sctx) != nil {
			srv.Close() // a scrape overran: cut it off
		}
		cancel()
		<-served // http.ErrServerClosed
	}
	// Close does not wait for handlers; a cut-off scrape ends on its own
	// once its connection is gone.
	mu.Lock()
	closed = true
	mu.Unlock()
	handlers.Wait()
	return err
}
