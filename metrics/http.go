package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ListenerConfig configures the metrics HTTP listener.
type ListenerConfig struct {
	Addr     string       // HOST:PORT to listen on
	Registry *Registry    // what /metrics serves
	PProf    bool         // also serve Go's profiles under /debug/pprof/
	Logger   hclog.Logger // nil: discard
}

// Listener serves /metrics (and /debug/pprof/ when asked) over plain HTTP.
// It carries no key material and no secrets, but profiles reveal the
// process's internals: bind it to a private address.
type Listener struct {
	srv *http.Server
	lis net.Listener
	log hclog.Logger
}

// Listen starts the metrics listener.
func Listen(cfg ListenerConfig) (*Listener, error) {
	if cfg.Registry == nil {
		return nil, errors.New("metrics: a registry is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(cfg.Registry.Gatherer(), promhttp.HandlerOpts{
		ErrorLog: promLogger{cfg.Logger}, ErrorHandling: promhttp.ContinueOnError}))
	if cfg.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	l := &Listener{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		lis: lis,
		log: cfg.Logger,
	}
	go func() {
		if err := l.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("metrics listener stopped", "error", err)
		}
	}()
	return l, nil
}

// Addr is the address the listener is bound to.
func (l *Listener) Addr() string { return l.lis.Addr().String() }

// Close stops the listener, letting scrapes in progress finish for a moment.
func (l *Listener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return l.srv.Shutdown(ctx)
}

// promLogger passes promhttp's errors to hclog.
type promLogger struct{ l hclog.Logger }

func (p promLogger) Println(v ...interface{}) { p.l.Warn("metrics: " + fmt.Sprint(v...)) }
