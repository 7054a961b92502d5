package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
)

// RequestIDHeader carries the request id both ways: a caller may send one
// (its own correlation id), and every answer names the id the node used.
const RequestIDHeader = "X-Request-Id"

// requestIDExtension is the OperationOutcome extension that carries the
// request id, so that a partner's support desk can quote it.
const requestIDExtension = "https://schakel.dev/fhir/StructureDefinition/request-id"

// maxRequestID bounds an incoming request id; longer ones are replaced.
const maxRequestID = 64

// maxDecoratedBody bounds what is held back to add the request id to an
// error answer; larger answers (none of the node's errors) pass unchanged.
const maxDecoratedBody = 64 << 10

// edgeKey holds a request's *edgeState.
type edgeKey struct{}

// edgeState is what the edge keeps of a request in its context, in one
// value: its id, and the route the routes' mux matched (for the metrics).
type edgeState struct {
	id    string
	route string
}

// RequestID is the id of the request ctx belongs to; "" outside a request.
func RequestID(ctx context.Context) string {
	if st, ok := ctx.Value(edgeKey{}).(*edgeState); ok {
		return st.id
	}
	return ""
}

// validRequestID admits an incoming id that is short and of a safe
// charset: it goes into log lines and answers as it is.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// withRequestID gives every request an id: the caller's when it sent a
// valid one, a fresh one otherwise. The id goes into the context (the log
// lines of the request carry it), the response header and every error
// answer: OperationOutcome (an extension), RFC 6749 error JSON and
// problem+json (a "request_id" member; RFC 6749 §5.2 and RFC 9457 §3.2
// have clients ignore members they do not know).
func withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		rw := &requestIDWriter{ResponseWriter: w, id: id}
		st := &edgeState{id: id, route: unmatchedRoute}
		h.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), edgeKey{}, st)))
		rw.finish()
	})
}

// requestIDWriter holds back a JSON error answer to add the request id.
type requestIDWriter struct {
	http.ResponseWriter
	id      string
	status  int  // set when the header is held back
	holding bool // the answer is an error being held back
	wrote   bool // WriteHeader passed on
	buf     bytes.Buffer
}

func (w *requestIDWriter) WriteHeader(code int) {
	if w.wrote || w.holding {
		return
	}
	// The handler may have cleared the header (the panic answer does).
	w.Header().Set(RequestIDHeader, w.id)
	if code >= 400 && decoratable(w.Header().Get("Content-Type")) {
		w.status, w.holding = code, true
		return
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *requestIDWriter) Write(b []byte) (int, error) {
	if !w.wrote && !w.holding {
		w.WriteHeader(http.StatusOK)
	}
	if !w.holding {
		return w.ResponseWriter.Write(b)
	}
	if w.buf.Len()+len(b) > maxDecoratedBody {
		// Too large to be one of ours: send it as it is.
		w.release(w.buf.Bytes())
		return w.ResponseWriter.Write(b)
	}
	return w.buf.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *requestIDWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// release sends the held-back header and body.
func (w *requestIDWriter) release(body []byte) {
	w.holding, w.wrote = false, true
	if w.Header().Get("Content-Length") != "" {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(body)
	w.buf.Reset()
}

func (w *requestIDWriter) finish() {
	if w.holding {
		w.release(withID(w.buf.Bytes(), w.id))
	}
}

func decoratable(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch mt {
	case "application/fhir+json", "application/json", "application/problem+json", "application/json+fhir":
		return true
	}
	return false
}

// withID adds the request id to a JSON error body: an extension on an
// OperationOutcome, a "request_id" member on an OAuth error or problem
// details object. Anything else, or a body that has one already, is
// returned as it is.
func withID(body []byte, id string) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil || len(obj) == 0 {
		return body
	}
	var member string
	var value any
	var rt string
	_ = json.Unmarshal(obj["resourceType"], &rt)
	switch {
	case rt == "OperationOutcome":
		if _, ok := obj["extension"]; ok {
			return body
		}
		member = "extension"
		value = []map[string]string{{"url": requestIDExtension, "valueString": id}}
	case rt == "":
		if _, ok := obj["request_id"]; ok {
			return body
		}
		_, oauthErr := obj["error"]
		_, problem := obj["type"]
		_, detail := obj["detail"]
		if !oauthErr && !problem && !detail {
			return body
		}
		member, value = "request_id", id
	default:
		return body
	}
	// Appended before the closing brace, so that the members keep their order.
	trimmed := bytes.TrimRight(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[len(trimmed)-1] != '}' {
		return body
	}
	v, _ := json.Marshal(value)
	out := make([]byte, 0, len(body)+len(member)+len(v)+8)
	out = append(out, trimmed[:len(trimmed)-1]...)
	out = append(out, `,"`+member+`":`...)
	out = append(out, v...)
	out = append(out, '}', '\n')
	return out
}

// contextHandler adds the request id and, under tracing, the trace and
// span ids of the context to every log record logged with one.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	addTraceAttrs(ctx, &r)
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
