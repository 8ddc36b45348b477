package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/awsapi"
	"github.com/raftkms/raftkms/rpc"
)

// AWS configures a node's AWS-protocol listener (AWS KMS JSON 1.1 with
// SigV4, package awsapi).
type AWS struct {
	// Addr is where it listens (host:port); empty with no Listener: off.
	Addr string
	// Listener is an optional pre-made listener.
	Listener net.Listener
}

// startAWS starts the AWS-protocol listener when one is configured. Under
// TLS it serves HTTPS with the node's certificate; clients authenticate by
// SigV4, so no client certificate is asked for.
func (s *Server) startAWS() error {
	a := s.cfg.AWS
	if a.Addr == "" && a.Listener == nil {
		return nil
	}
	// Requests must be signed for the cluster's region (Config.ARN).
	region := s.cfg.ARN.Region
	if region == "" {
		region = rpc.DefaultRegion
	}
	var observe func(string, string, time.Duration)
	if s.metrics != nil {
		observe = s.metrics.ObserveAWS
	}
	h, err := awsapi.New(awsapi.Config{
		Invoker:     s.api,
		Credentials: s.api,
		Region:      region,
		Logger:      s.log.Named("aws"),
		Now:         s.cfg.Now,
		Observe:     observe,
	})
	if err != nil {
		return err
	}
	lis := a.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", a.Addr); err != nil {
			return fmt.Errorf("server: listen for the AWS protocol: %w", err)
		}
	}
	s.awsLis = lis
	s.awsHTTP = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		// TLS handshake failures and the like go to the node's log, at debug.
		ErrorLog: s.log.Named("aws").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})}
	if s.cfg.TLS != nil {
		tc := s.cfg.TLS.Server.Clone()
		tc.ClientAuth = tls.NoClientCert
		tc.ClientCAs = nil
		tc.NextProtos = []string{"h2", "http/1.1"}
		lis = tls.NewListener(lis, tc)
		s.awsHTTP.TLSConfig = tc
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.awsHTTP.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("AWS-protocol server stopped", "error", err)
		}
	}()
	return nil
}

// AWSAddr is the address of the node's AWS-protocol listener, or "".
func (s *Server) AWSAddr() string {
	if s.awsLis == nil {
		return ""
	}
	return s.awsLis.Addr().String()
}

// AWSURL is the endpoint URL of the node's AWS-protocol listener
// (http:// or https://), or "".
func (s *Server) AWSURL() string {
	if s.awsLis == nil {
		return ""
	}
	if s.cfg.TLS != nil {
		return "https://" + s.AWSAddr()
	}
	return "http://" + s.AWSAddr()
}

// stopAWS closes the AWS-protocol listener; in-flight calls get a short grace.
func (s *Server) stopAWS() {
	if s.awsHTTP == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.awsHTTP.Shutdown(ctx); err != nil {
		s.awsHTTP.Close()
	}
}
