package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
	"github.com/klauspost/compress/flate"

	"github.com/liveroom/liveroom/internal/protocol"
)

// Defaults of Dialer.
const (
	// DefaultDialTimeout bounds the TCP connect plus the WebSocket handshake.
	// A gateway answers a handshake within milliseconds; one that hangs
	// (its kernel still accepts connections) is left for the next candidate
	// after this long.
	DefaultDialTimeout = 3 * time.Second
	// DefaultWelcomeTimeout bounds the wait for the welcome frame after the
	// handshake: a gateway starting a room may need a few seconds when NATS
	// is in trouble, and then answers with an error and a retry hint.
	DefaultWelcomeTimeout = 8 * time.Second
	// DefaultReadTimeout is how long a connection may stay silent (no frame,
	// not even a ping) before it is considered dead. It must exceed the
	// gateway's ping interval.
	DefaultReadTimeout = 90 * time.Second
	// DefaultMaxMessageSize bounds one server message (a batch frame).
	DefaultMaxMessageSize = 4 << 20
)

// writeTimeout bounds a pong or close write: the client sends nothing else,
// and a server that does not read them is gone.
const writeTimeout = 5 * time.Second

// aLongTimeAgo is a non-zero past deadline that interrupts a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// Dialer opens gateway connections. The zero value is ready to use; a Dialer
// is safe for concurrent use as long as it is not modified.
type Dialer struct {
	// WS is the underlying WebSocket dialer: use it for TLS settings, a
	// custom NetDial, buffer sizes or extra handshake headers. WS.Timeout
	// bounds connect plus handshake; zero means DefaultDialTimeout. Its
	// OnStatusError is replaced: a refused upgrade is returned as *APIError.
	WS ws.Dialer
	// ReadTimeout is how long a connection may stay silent before ReadFrame
	// fails; zero means DefaultReadTimeout, negative disables it.
	ReadTimeout time.Duration
	// MaxMessageSize bounds one server message in bytes (as sent, and once
	// decompressed); zero means DefaultMaxMessageSize, negative disables the
	// bound.
	MaxMessageSize int64
	// NoCompression stops the Dialer from offering permessage-deflate. By
	// default it offers the extension with no context takeover either way,
	// and a gateway that accepts it sends its larger room frames
	// compressed (a third of the bytes or less); ReadFrame decompresses
	// them.
	NoCompression bool
}

// Frame is one server→client text frame: its type, its exact bytes, and the
// decoded payload for the types this package knows (exactly one of Welcome,
// Batch, History, Reconnect and Error is set for them; none for unknown
// types, which newer servers may send and clients must ignore).
type Frame struct {
	// Type is the frame's "type" field.
	Type string
	// Raw holds the frame's bytes as received; it is not reused.
	Raw       []byte
	Welcome   *Welcome
	Batch     *Batch
	History   *History
	Reconnect *ReconnectFrame
	Error     *ErrorFrame
}

// DecodeFrame decodes raw, a server→client frame.
func DecodeFrame(raw []byte) (Frame, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return Frame{}, fmt.Errorf("cannot decode frame: %w", err)
	}
	f := Frame{Type: head.Type, Raw: raw}
	var err error
	switch head.Type {
	case "":
		return Frame{}, errors.New("cannot decode frame: no type")
	case protocol.FrameWelcome:
		f.Welcome = new(Welcome)
		err = json.Unmarshal(raw, f.Welcome)
	case protocol.FrameBatch:
		f.Batch = new(Batch)
		err = json.Unmarshal(raw, f.Batch)
	case protocol.FrameHistory:
		f.History = new(History)
		err = json.Unmarshal(raw, f.History)
	case protocol.FrameReconnect:
		f.Reconnect = new(ReconnectFrame)
		err = json.Unmarshal(raw, f.Reconnect)
	case protocol.FrameError:
		f.Error = new(ErrorFrame)
		err = json.Unmarshal(raw, f.Error)
	}
	if err != nil {
		return Frame{}, fmt.Errorf("cannot decode %s frame: %w", head.Type, err)
	}
	return f, nil
}

// DialGateway opens a WebSocket to the gateway at gatewayURL for room with
// token, using a zero Dialer. since > 0 asks the gateway to replay the
// reliable messages after that sequence; since == 0 asks for no replay (use
// Dialer.Dial with GatewayURL to send since=0 explicitly). A refused upgrade
// is returned as *APIError.
func DialGateway(ctx context.Context, gatewayURL, room, token string, since uint64) (*GatewayConn, error) {
	var d Dialer
	return d.DialGateway(ctx, gatewayURL, room, token, since)
}

// DialGateway is like the package-level DialGateway, with d's settings.
func (d *Dialer) DialGateway(ctx context.Context, gatewayURL, room, token string, since uint64) (*GatewayConn, error) {
	u, err := GatewayURL("", gatewayURL, room, token, since, since > 0)
	if err != nil {
		return nil, err
	}
	return d.Dial(ctx, u)
}

// Dial opens a WebSocket to wsURL, a complete gateway URL with its query (see
// GatewayURL). It returns once the upgrade succeeded; the welcome frame is
// the first thing ReadFrame returns. A refused upgrade is returned as
// *APIError.
func (d *Dialer) Dial(ctx context.Context, wsURL string) (*GatewayConn, error) {
	wd := d.WS
	if wd.Timeout == 0 {
		wd.Timeout = DefaultDialTimeout
	}
	var refused *APIError
	wd.OnStatusError = func(status int, _ []byte, resp io.Reader) {
		refused = readHandshakeError(status, resp)
	}
	if !d.NoCompression {
		wd.Extensions = append(wd.Extensions[:len(wd.Extensions):len(wd.Extensions)], wsflate.DefaultParameters.Option())
	}
	conn, br, hs, err := wd.Dial(ctx, wsURL)
	if err != nil {
		if refused != nil {
			return nil, refused
		}
		var se ws.StatusError
		if errors.As(err, &se) {
			return nil, &APIError{Status: int(se), Body: ErrorBody{Message: http.StatusText(int(se))}}
		}
		return nil, fmt.Errorf("cannot dial gateway %s: %w", redactURL(wsURL), err)
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 4096)
	}
	g := &GatewayConn{conn: conn, url: wsURL, readTimeout: d.ReadTimeout}
	if g.readTimeout == 0 {
		g.readTimeout = DefaultReadTimeout
	}
	maxMsg := d.MaxMessageSize
	if maxMsg == 0 {
		maxMsg = DefaultMaxMessageSize
	}
	if maxMsg < 0 {
		maxMsg = 0
	}
	g.maxMsg = maxMsg
	g.ctl = wsutil.ControlFrameHandler(lockedWriter{g}, ws.StateClientSide)
	g.rd = wsutil.Reader{
		Source:         br,
		State:          ws.StateClientSide,
		CheckUTF8:      true,
		MaxMessageSize: maxMsg,
		OnIntermediate: g.ctl,
	}
	if !d.NoCompression && deflateAccepted(hs.Extensions) {
		// The compressed payload is not UTF-8: ReadFrame checks the text
		// once it is decompressed.
		g.deflate = true
		g.rd.State |= ws.StateExtended
		g.rd.CheckUTF8 = false
		g.rd.Extensions = []wsutil.RecvExtension{&g.msg}
	}
	return g, nil
}

// deflateAccepted reports whether the server's answer accepted
// permessage-deflate on the terms offered: no context takeover on its side,
// so that each message decompresses on its own.
func deflateAccepted(exts []httphead.Option) bool {
	for _, o := range exts {
		if string(o.Name) != wsflate.ExtensionName {
			continue
		}
		var p wsflate.Parameters
		return p.Parse(o) == nil && p.ServerNoContextTakeover
	}
	return false
}

// readHandshakeError turns the HTTP answer of a refused upgrade into an
// *APIError, reading at most maxErrorBody of its body.
func readHandshakeError(status int, r io.Reader) *APIError {
	resp, err := http.ReadResponse(bufio.NewReader(r), nil)
	if err != nil {
		return newAPIError(status, nil, nil)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return newAPIError(status, resp.Header, raw)
}

// redactURL hides the token of a gateway URL, for errors and logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	q := u.Query()
	if q.Has("token") {
		q.Set("token", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// GatewayConn is one WebSocket connection to one gateway. ReadFrame must be
// called from one goroutine at a time; Close may be called concurrently with
// it and from any goroutine. Pings are answered inside ReadFrame, so a
// connection nobody reads from is eventually dropped by the server.
type GatewayConn struct {
	conn        net.Conn
	url         string
	readTimeout time.Duration
	rd          wsutil.Reader
	ctl         wsutil.FrameHandlerFunc
	maxMsg      int64

	// Compression (permessage-deflate), when the gateway accepted it.
	deflate bool
	msg     wsflate.MessageState // whether the message being read is compressed
	inflate *wsflate.Reader

	wmu       sync.Mutex // serialises pongs and the close frame
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// lockedWriter writes whole frames to the connection under its write lock,
// with a deadline.
type lockedWriter struct{ g *GatewayConn }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.g.wmu.Lock()
	defer w.g.wmu.Unlock()
	_ = w.g.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return w.g.conn.Write(p)
}

// URL returns the URL the connection was opened with, token redacted.
func (g *GatewayConn) URL() string { return redactURL(g.url) }

// ReadFrame returns the next text frame, answering pings and skipping binary
// frames on the way. It fails when ctx is done, when the connection stays
// silent longer than the read timeout, when the server closes the
// connection (a wsutil.ClosedError is wrapped) or sends a frame that does not
// decode. After an error the connection must be closed: it may be in the
// middle of a frame.
func (g *GatewayConn) ReadFrame(ctx context.Context) (Frame, error) {
	if g.closed.Load() {
		return Frame{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Frame{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = g.conn.SetReadDeadline(aLongTimeAgo) })
	defer stop()
	for {
		var deadline time.Time
		if g.readTimeout > 0 {
			deadline = time.Now().Add(g.readTimeout)
		}
		_ = g.conn.SetReadDeadline(deadline)
		// ctx is marked done before its AfterFunc runs: if the deadline above
		// overwrote the interrupt, this check catches it.
		if err := ctx.Err(); err != nil {
			return Frame{}, err
		}
		hdr, err := g.rd.NextFrame()
		if err != nil {
			return Frame{}, g.readErr(ctx, err)
		}
		if hdr.OpCode.IsControl() {
			if err := g.ctl(hdr, &g.rd); err != nil {
				return Frame{}, g.readErr(ctx, err)
			}
			continue
		}
		if hdr.OpCode != ws.OpText {
			if err := g.rd.Discard(); err != nil {
				return Frame{}, g.readErr(ctx, err)
			}
			continue
		}
		// The declared length is trusted for allocation only up to 32 KiB;
		// beyond that the buffer grows as bytes actually arrive.
		var buf bytes.Buffer
		buf.Grow(int(min(hdr.Length, 32<<10)))
		if !g.msg.IsCompressed() {
			if _, err := buf.ReadFrom(&g.rd); err != nil {
				return Frame{}, g.readErr(ctx, err)
			}
		} else if err := g.decompress(&buf); err != nil {
			return Frame{}, g.readErr(ctx, err)
		}
		if g.deflate && !utf8.Valid(buf.Bytes()) {
			return Frame{}, g.readErr(ctx, wsutil.ErrInvalidUTF8)
		}
		return DecodeFrame(buf.Bytes())
	}
}

// errTooLarge is a message that decompresses to more than MaxMessageSize.
var errTooLarge = errors.New("message too large once decompressed")

// decompress reads the compressed message g.rd is at into buf.
func (g *GatewayConn) decompress(buf *bytes.Buffer) error {
	if g.inflate == nil {
		g.inflate = wsflate.NewReader(&g.rd, func(r io.Reader) wsflate.Decompressor { return flate.NewReader(r) })
	} else {
		g.inflate.Reset(&g.rd)
	}
	src := io.Reader(g.inflate)
	if g.maxMsg > 0 {
		src = io.LimitReader(src, g.maxMsg+1)
	}
	if _, err := buf.ReadFrom(src); err != nil {
		return fmt.Errorf("cannot decompress message: %w", err)
	}
	if g.maxMsg > 0 && int64(buf.Len()) > g.maxMsg {
		return errTooLarge
	}
	// The compressed payload ends with the message: consume what the
	// decompressor did not need to read (nothing, from a sound server).
	return g.rd.Discard()
}

// Compressed reports whether the gateway accepted permessage-deflate: its
// larger room frames then arrive compressed.
func (g *GatewayConn) Compressed() bool { return g.deflate }

// SetReadTimeout changes how long the connection may stay silent before
// ReadFrame fails with ErrSilent (negative: never). Call it between reads,
// from the reading goroutine.
func (g *GatewayConn) SetReadTimeout(d time.Duration) { g.readTimeout = d }

func (g *GatewayConn) readErr(ctx context.Context, err error) error {
	if g.closed.Load() {
		return ErrClosed
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("cannot read from gateway: silent for %v: %w (%w)", g.readTimeout, ErrSilent, err)
	}
	return fmt.Errorf("cannot read from gateway: %w", err)
}

// Close sends a normal-closure frame (best effort) and closes the
// connection. It is idempotent and safe to call concurrently with ReadFrame,
// which then returns ErrClosed.
func (g *GatewayConn) Close() error {
	g.closeOnce.Do(func() {
		g.closed.Store(true)
		g.wmu.Lock()
		_ = g.conn.SetWriteDeadline(time.Now().Add(time.Second))
		f := ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
		_ = ws.WriteFrame(g.conn, f)
		g.wmu.Unlock()
		g.closeErr = g.conn.Close()
	})
	return g.closeErr
}
