package validation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Exchange is one request and its answer as the report shows it: bodies
// truncated, tokens, assertions and authorization bases redacted.
type Exchange struct {
	// Direction is "kit → node" for what the kit sent, "node → kit" for
	// what the node under test sent to the kit's counterpart.
	Direction      string            `json:"direction"`
	Method         string            `json:"method"`
	URL            string            `json:"url"`
	RequestHeaders map[string]string `json:"requestHeaders,omitempty"`
	RequestBody    string            `json:"requestBody,omitempty"`
	Status         int               `json:"status,omitempty"`
	ResponseBody   string            `json:"responseBody,omitempty"`
	// Error is why no answer came (e.g. the TLS handshake was refused).
	Error string `json:"error,omitempty"`
}

// Directions of an Exchange.
const (
	KitToNode = "kit → node"
	NodeToKit = "node → kit"
)

// maxShown bounds each body in the report.
const maxShown = 4 << 10

// jwtPattern finds compact JWS/JWT values: access tokens and assertions are
// credentials and never appear in a report.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)

// secretFields are form fields whose values are credentials.
var secretFields = map[string]bool{"client_assertion": true, "assertion": true, "authorization_base": true, "token": true}

// redactor removes secrets from what the report shows.
type redactor struct{ secrets []string }

func (r *redactor) add(s string) {
	if len(s) >= 6 {
		r.secrets = append(r.secrets, s)
	}
}

func (r *redactor) text(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "[redacted]")
	}
	return jwtPattern.ReplaceAllString(s, "[JWT redacted]")
}

// body renders a request or response body for the report.
func (r *redactor) body(contentType string, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if binaryBody(contentType) {
		// Images and other binary answers are evidence by their size and
		// type; their bytes would make the report unreadable.
		return fmt.Sprintf("[%d bytes of %s]", len(b), contentType)
	}
	s := string(b)
	if strings.HasPrefix(contentType, "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(s); err == nil {
			keys := make([]string, 0, len(form))
			for k := range form {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var lines []string
			for _, k := range keys {
				v := strings.Join(form[k], ",")
				if secretFields[k] {
					v = fmt.Sprintf("[redacted, %d characters]", len(v))
				}
				lines = append(lines, k+"="+v)
			}
			s = strings.Join(lines, "\n")
		}
	} else if json.Valid(b) {
		var buf bytes.Buffer
		if json.Indent(&buf, b, "", "  ") == nil {
			s = buf.String()
		}
	}
	s = r.text(s)
	if len(s) > maxShown {
		s = s[:maxShown] + fmt.Sprintf("\n… (%d bytes in all)", len(b))
	}
	return s
}

// binaryBody reports whether a body of contentType is not text: DICOM,
// multipart (WADO-RS), images, octet streams.
func binaryBody(contentType string) bool {
	mt, _, _ := strings.Cut(strings.ToLower(contentType), ";")
	mt = strings.TrimSpace(mt)
	return mt == "application/dicom" || mt == "application/octet-stream" || strings.HasPrefix(mt, "multipart/") ||
		strings.HasPrefix(mt, "image/") || strings.HasPrefix(mt, "video/")
}

func (r *redactor) headers(h http.Header) map[string]string {
	out := map[string]string{}
	for _, k := range []string{"Authorization", "Content-Type", "Accept", "WWW-Authenticate", "Location"} {
		v := h.Get(k)
		if v == "" {
			continue
		}
		if k == "Authorization" {
			scheme, _, _ := strings.Cut(v, " ")
			v = scheme + " [redacted]"
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Response is a node's answer to the kit.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r *Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// IsOutcome reports whether the body is a FHIR OperationOutcome.
func (r *Response) IsOutcome() bool {
	var oo struct{ ResourceType string }
	return r != nil && json.Unmarshal(r.Body, &oo) == nil && oo.ResourceType == "OperationOutcome"
}

// OAuthError is the RFC 6749 §5.2 error code of the body, or "".
func (r *Response) OAuthError() string {
	var e struct {
		Error string `json:"error"`
	}
	if r == nil || json.Unmarshal(r.Body, &e) != nil {
		return ""
	}
	return e.Error
}

// maxAnswer bounds what the kit reads of one answer.
const maxAnswer = 16 << 20

// Do sends req with client and records the exchange on the probe.
func (p *Probe) Do(client *http.Client, req *http.Request) (*Response, error) {
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	ex := Exchange{Direction: KitToNode, Method: req.Method, URL: p.env.red.text(req.URL.String()),
		RequestHeaders: p.env.red.headers(req.Header), RequestBody: p.env.red.body(req.Header.Get("Content-Type"), reqBody)}
	resp, err := client.Do(req)
	if err != nil {
		ex.Error = p.env.red.text(err.Error())
		p.Record(ex)
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	ex.Status = resp.StatusCode
	ex.ResponseBody = p.env.red.body(resp.Header.Get("Content-Type"), b)
	if err != nil {
		ex.Error = err.Error()
	}
	p.Record(ex)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// Get is a GET for FHIR JSON with an optional bearer token.
func (p *Probe) Get(client *http.Client, u, token string) (*Response, error) {
	req, err := http.NewRequestWithContext(p.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return p.Do(client, req)
}

// Send sends body with a content type and an optional bearer token.
func (p *Probe) Send(client *http.Client, method, u, contentType, token string, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(p.ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/fhir+json, application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return p.Do(client, req)
}

// PostForm posts a token-endpoint form.
func (p *Probe) PostForm(client *http.Client, u string, form url.Values) (*Response, error) {
	return p.Send(client, http.MethodPost, u, "application/x-www-form-urlencoded", "", []byte(form.Encode()))
}
