package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/client"
	"github.com/raftkms/raftkms/k8splugin"
	"github.com/raftkms/raftkms/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// k8sPluginFlags are the flags of kmsd k8s-plugin.
type k8sPluginFlags struct {
	listen    string
	keyID     string
	endpoints string
	tls       pki.Files
	logLevel  string
}

func (f *k8sPluginFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "", "the unix socket kube-apiserver calls, as its EncryptionConfiguration names it: unix:///var/run/raftkms/kms.sock")
	fs.StringVar(&f.keyID, "key-id", "", "the key that wraps DEKs: key ID, key ARN or alias/NAME")
	fs.StringVar(&f.endpoints, "endpoints", "127.0.0.1:7001", "gRPC addresses of cluster nodes, comma-separated")
	fs.StringVar(&f.tls.CA, "ca", "", "the cluster CA (PEM)")
	fs.StringVar(&f.tls.Cert, "cert", "", "the plugin's client certificate (PEM), e.g. from kmsd gen-certs --clients kube-apiserver")
	fs.StringVar(&f.tls.Key, "key", "", "the private key of --cert (PEM)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
}

// clientConfig checks the flags and makes the cluster client's Config.
// Without TLS the plugin talks only to loopback endpoints, as an insecure
// node binds only loopback (kmsd dev); it says so loudly (warned).
func (f *k8sPluginFlags) clientConfig() (cfg client.Config, warned bool, err error) {
	if f.listen == "" {
		return cfg, false, errors.New("--listen unix:///PATH.sock is required")
	}
	if f.keyID == "" {
		return cfg, false, errors.New("--key-id (key ID, ARN or alias/NAME) is required")
	}
	eps := splitList(f.endpoints)
	if len(eps) == 0 {
		return cfg, false, errors.New("--endpoints names no node")
	}
	cfg.Endpoints = eps
	if !f.tls.Set() {
		for _, e := range eps {
			if !isLoopback(e) {
				return cfg, false, fmt.Errorf("no TLS configured for %s: give --ca, --cert and --key (without TLS the plugin talks only to loopback endpoints)", e)
			}
		}
		return cfg, true, nil
	}
	if err := f.tls.Check(); err != nil {
		return cfg, false, errors.New("TLS needs --ca, --cert and --key together")
	}
	cert, ca, err := f.tls.Load()
	if err != nil {
		return cfg, false, err
	}
	cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientConfig(cert, ca)))}
	return cfg, false, nil
}

// runK8sPlugin serves the Kubernetes KMS v2 API for one key (docs/kubernetes.md).
func runK8sPlugin(args []string) int {
	fs := flag.NewFlagSet("kmsd k8s-plugin", flag.ContinueOnError)
	var f k8sPluginFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return usageErr(err)
	}
	cfg, insecure, err := f.clientConfig()
	if err != nil {
		return usageErr(err)
	}
	c := commonFlags{logLevel: f.logLevel}
	log := c.logger("k8s-plugin")
	if insecure {
		log.Warn("no TLS configured: the plugin reaches the cluster without a client certificate (loopback only, kmsd dev); " +
			"give --ca, --cert and --key for a real cluster")
	}
	cl, err := client.New(cfg)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	plugin, err := k8splugin.New(k8splugin.Config{KMS: cl.KMS(), KeyID: f.keyID, Logger: log})
	if err != nil {
		return fail(err)
	}
	srv, err := k8splugin.Listen(f.listen, plugin)
	if err != nil {
		return fail(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	log.Info("serving the Kubernetes KMS v2 API", "socket", srv.Addr(), "key", f.keyID, "endpoints", cfg.Endpoints, "tls", !insecure)
	go probe(log, plugin)

	stop := make(chan struct{})
	go func() { waitForSignal(); close(stop) }()
	select {
	case err := <-served:
		return fail(fmt.Errorf("serving %s: %w", srv.Addr(), err))
	case <-stop:
	}
	log.Info("shutting down")
	srv.Stop()
	<-served
	return 0
}

// probe logs the first Status, so an operator sees at start-up whether the
// key is reachable; the plugin serves either way (the apiserver retries).
func probe(log hclog.Logger, p *k8splugin.Plugin) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := p.Status(ctx)
	switch {
	case err != nil:
		log.Error("the key is not reachable yet", "error", err)
	case st.Healthz != k8splugin.HealthzOK:
		log.Error("the key is not usable", "healthz", st.Healthz)
	default:
		log.Info("the key is reachable", "key_id", st.KeyID)
	}
}
