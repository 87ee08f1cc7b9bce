package member

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	etcdtransport "go.etcd.io/etcd/client/pkg/v3/transport"
)

// handshakeTimeout bounds one TLS handshake on a client URL.
const handshakeTimeout = 10 * time.Second

// tlsSplit is the listener of a TLS client URL that serves gRPC and HTTP on
// one port. It does each connection's TLS handshake and checks (with
// etcd's TLSInfo: certificate files re-read per handshake, client CA,
// allowed names, CRL) and then hands the connection to one of two
// listeners by the protocol negotiated with ALPN:
//
//   - a client that offers only "h2" (every gRPC client) gets h2 and goes
//     to GRPC, served by grpc-go's own HTTP/2 transport;
//   - a client that also offers "http/1.1" (curl, browsers, probes) gets
//     http/1.1 and goes to HTTP, as does one that offers nothing.
//
// etcd instead serves gRPC on this port through grpc.Server.ServeHTTP,
// which serves small requests at less than half the rate; the split
// keeps the native transport. Refused handshakes are logged with the
// remote address and the reason.
type tlsSplit struct {
	net.Listener // the plain listener
	GRPC, HTTP   *connQueue
	cfg          *tls.Config
	lg           *slog.Logger
	wg           sync.WaitGroup
}

// newTLSSplit starts splitting ln; Close stops it and both queues.
func newTLSSplit(ln net.Listener, info *etcdtransport.TLSInfo, lg *slog.Logger) (*tlsSplit, error) {
	cfg, err := info.ServerConfig()
	if err != nil {
		return nil, err
	}
	info.ConfigureCRLVerification(cfg)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	http1 := cfg.Clone()
	http1.NextProtos = []string{"http/1.1"}
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(hello.SupportedProtos, "http/1.1") {
			return http1, nil
		}
		return nil, nil
	}
	s := &tlsSplit{Listener: ln, GRPC: newConnQueue(ln.Addr()), HTTP: newConnQueue(ln.Addr()), cfg: cfg, lg: lg}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *tlsSplit) acceptLoop() {
	defer s.wg.Done()
	var handshakes sync.WaitGroup
	defer func() {
		// Closing the queues first ends handshakes waiting to hand over
		// a connection nobody will accept.
		s.GRPC.Close()
		s.HTTP.Close()
		handshakes.Wait()
	}()
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return
		}
		handshakes.Add(1)
		go func() {
			defer handshakes.Done()
			s.handshake(c)
		}()
	}
}

func (s *tlsSplit) handshake(c net.Conn) {
	tc := tls.Server(c, s.cfg)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		s.lg.Warn("rejected connection", "plane", string(clientPlane), "remote-addr", c.RemoteAddr().String(),
			"server-name", tc.ConnectionState().ServerName, "error", err.Error())
		tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	q := s.HTTP
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		q = s.GRPC
	}
	if !q.put(tc) {
		tc.Close()
	}
}

// Close stops accepting and waits until the handshakes in progress ended.
func (s *tlsSplit) Close() error {
	err := s.Listener.Close()
	s.wg.Wait()
	return err
}

// connQueue is a net.Listener fed with connections by tlsSplit.
type connQueue struct {
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.conns <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, fmt.Errorf("accept on %s: %w", q.addr, net.ErrClosed)
	}
}

func (q *connQueue) Close() error {
	q.closeOnce.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
