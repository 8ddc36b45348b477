package k8splugin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"
	"k8s.io/kms/pkg/util"
)

// SocketMode is the mode of the plugin's socket file: only its owner (the
// user kube-apiserver runs as, normally root) may connect. Keep the socket
// in a directory only that user can enter as well: the mode is set just
// after the socket is made.
const SocketMode fs.FileMode = 0o600

// stopGrace bounds how long Stop waits for calls in flight.
const stopGrace = 5 * time.Second

// Server serves a Plugin on a unix socket.
type Server struct {
	lis  net.Listener
	gs   *grpc.Server
	path string // the socket file, "" for an abstract socket

	stopOnce sync.Once
}

// Listen makes the socket named by endpoint and a Server for p on it.
// endpoint is what the EncryptionConfiguration names:
// unix:///var/run/raftkms/kms.sock, or unix:///@NAME for a Linux abstract
// socket (no file, so no file permissions: only network namespaces guard
// it). A socket left behind by an earlier run is replaced; a socket another
// plugin still serves, or a file that is not a socket, is an error.
//
// The gRPC translation is k8s.io/kms/pkg/service's GRPCService, registered
// on a server of our own rather than run by its ListenAndServe, which would
// make the socket with the process umask and leave no way to set its mode.
func Listen(endpoint string, p *Plugin) (*Server, error) {
	if p == nil {
		return nil, errors.New("k8splugin: no plugin to serve")
	}
	addr, err := util.ParseEndpoint(endpoint)
	if err != nil {
		return nil, fmt.Errorf("k8splugin: --listen: %w", err)
	}
	if addr == "" {
		return nil, fmt.Errorf("k8splugin: --listen %q names no socket path", endpoint)
	}
	abstract := strings.HasPrefix(addr, "@")
	if !abstract {
		if err := removeStale(addr); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("k8splugin: listen on %s: %w", addr, err)
	}
	s := &Server{lis: lis, gs: grpc.NewServer()}
	if !abstract {
		s.path = addr
		if err := os.Chmod(addr, SocketMode); err != nil {
			lis.Close()
			return nil, fmt.Errorf("k8splugin: socket permissions: %w", err)
		}
	}
	kmsapi.RegisterKeyManagementServiceServer(s.gs, service.NewGRPCService(addr, 0, p))
	return s, nil
}

// removeStale removes a socket file no process serves any more.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("k8splugin: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("k8splugin: %s exists and is not a socket; refusing to replace it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("k8splugin: %s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("k8splugin: remove stale socket: %w", err)
	}
	return nil
}

// Addr is the socket's address: its path, or @NAME for an abstract socket.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve serves calls until Stop; it returns nil after Stop.
func (s *Server) Serve() error {
	err := s.gs.Serve(s.lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop stops accepting calls, waits a little for calls in flight, and
// removes the socket file.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			s.gs.GracefulStop()
			close(done)
		}()
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			s.gs.Stop()
			<-done
		}
		s.lis.Close()
		if s.path != "" {
			os.Remove(s.path)
		}
	})
}
