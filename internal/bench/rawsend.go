package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// rawConn is a minimal HTTP/1.1 keep-alive client for the uplink, one
// request at a time. With --sender raw the bench measures the uplink rather
// than its own HTTP client: net/http's client spent about as much CPU per
// request as the uplink itself, on the same two cores, so the bench
// saturated the machine long before the uplink did. It speaks exactly what
// the send API needs: a POST with a small JSON body, an answer with
// Content-Length or chunked encoding.
type rawConn struct {
	host string // host:port, dialled and sent as Host
	c    net.Conn
	br   *bufio.Reader
	req  []byte
}

func newRawConn(base string) (*rawConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("--sender raw needs an http:// uplink URL, not %q", base)
	}
	return &rawConn{host: u.Host}, nil
}

// post sends one request and returns the status and body of the answer.
func (r *rawConn) post(path, token, idemKey string, body []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		fresh := r.c == nil
		if fresh {
			c, err := net.DialTimeout("tcp", r.host, 10*time.Second)
			if err != nil {
				return 0, nil, err
			}
			r.c, r.br = c, bufio.NewReaderSize(c, 4096)
		}
		status, resp, err := r.roundTrip(path, token, idemKey, body)
		if err == nil {
			return status, resp, nil
		}
		r.c.Close()
		r.c = nil
		// A kept-alive connection the server closed meanwhile: retry once on
		// a fresh one (the request was not answered, so not processed twice
		// for a danmaku that never arrived; gifts carry their key anyway).
		if fresh || attempt > 0 {
			return 0, nil, err
		}
	}
}

func (r *rawConn) roundTrip(path, token, idemKey string, body []byte) (int, []byte, error) {
	b := r.req[:0]
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.host...)
	b = append(b, "\r\nUser-Agent: liveroom-bench\r\nContent-Type: application/json\r\nAuthorization: Bearer "...)
	b = append(b, token...)
	if idemKey != "" {
		b = append(b, "\r\nIdempotency-Key: "...)
		b = append(b, idemKey...)
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	r.req = b
	_ = r.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.c.Write(b); err != nil {
		return 0, nil, err
	}
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, errors.New("bad status line")
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, errors.New("bad status line")
	}
	clen, chunked, closing := -1, false, false
	for {
		h, err := r.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			clen, _ = strconv.Atoi(string(v))
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	var resp []byte
	switch {
	case chunked:
		for {
			l, err := r.br.ReadSlice('\n')
			if err != nil {
				return 0, nil, err
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(l, []byte(";"), 2)[0])), 16, 32)
			if err != nil {
				return 0, nil, errors.New("bad chunk")
			}
			chunk := make([]byte, n+2)
			if _, err := io.ReadFull(r.br, chunk); err != nil {
				return 0, nil, err
			}
			if n == 0 {
				break
			}
			resp = append(resp, chunk[:n]...)
		}
	case clen >= 0:
		resp = make([]byte, clen)
		if _, err := io.ReadFull(r.br, resp); err != nil {
			return 0, nil, err
		}
	default:
		closing = true
	}
	if closing {
		r.c.Close()
		r.c = nil
	}
	return status, resp, nil
}

func (r *rawConn) close() {
	if r.c != nil {
		r.c.Close()
		r.c = nil
	}
}
