package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// pathCall is the prefix of unary calls: POST /raft/call/<name>.
const pathCall = PathPrefix + "call/"

// maxCallBody bounds the body of a unary call and of its answer.
const maxCallBody = 4 << 20

// CallHandler answers one unary call from member from. A returned error is
// sent back as text; the caller gets it as a *RemoteError.
type CallHandler func(ctx context.Context, from uint64, req []byte) ([]byte, error)

// RemoteError is a call that reached the peer and failed there.
type RemoteError struct {
	Peer uint64
	Msg  string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("member %s: %s", hexID(e.Peer), e.Msg) }

// Call sends a small request to the handler named name on member to and
// returns its answer. It tries the peer's URLs in order until one answers.
// Calls are independent of the raft streams: they are meant for requests a
// member forwards to another (such as lease keep-alives to the leader).
func (t *Transport) Call(ctx context.Context, to uint64, name string, req []byte) ([]byte, error) {
	t.mu.RLock()
	p := t.peers[to]
	t.mu.RUnlock()
	if p == nil {
		return nil, fmt.Errorf("transport: call %s: unknown member %s", name, hexID(to))
	}
	p.mu.Lock()
	urls := slices.Clone(p.urls)
	p.mu.Unlock()
	var errs []error
	for _, u := range urls {
		resp, err := t.callURL(ctx, to, u+pathCall+name, req)
		var remote *RemoteError
		if err == nil || errors.As(err, &remote) || ctx.Err() != nil {
			return resp, err
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("transport: call %s on member %s: %w", name, hexID(to), errors.Join(errs...))
}

func (t *Transport) callURL(ctx context.Context, to uint64, url string, body []byte) ([]byte, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	r.Header.Set(headerClusterID, hexID(t.cfg.ClusterID))
	r.Header.Set(headerFrom, hexID(t.cfg.LocalID))
	r.Header.Set(headerTo, hexID(to))
	r.Header.Set("Content-Type", "application/octet-stream")
	resp, err := t.client.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxCallBody+1))
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusOK && len(out) <= maxCallBody:
		return out, nil
	case resp.StatusCode == http.StatusUnprocessableEntity:
		return nil, &RemoteError{Peer: to, Msg: strings.TrimSpace(string(out))}
	default:
		return nil, fmt.Errorf("%s answered %s: %s", url, resp.Status, strings.TrimSpace(string(out)))
	}
}

// serveCall runs the handler a unary call names.
func (t *Transport) serveCall(w http.ResponseWriter, r *http.Request) {
	from, ok := t.checkPeerRequest(w, r)
	if !ok {
		return
	}
	h := t.cfg.Calls[strings.TrimPrefix(r.URL.Path, pathCall)]
	if h == nil {
		http.Error(w, "no such call", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallBody))
	if err != nil {
		http.Error(w, "reading call body: "+err.Error(), http.StatusBadRequest)
		return
	}
	out, err := h(r.Context(), from, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(out)
}
