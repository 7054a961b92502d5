package beeld

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Archive holds the studies a PACS stand-in serves.
type Archive struct {
	mu      sync.RWMutex
	studies []*Study
	byUID   map[string]*Study
}

// NewArchive returns an archive holding studies.
func NewArchive(studies ...*Study) *Archive {
	a := &Archive{byUID: map[string]*Study{}}
	a.Add(studies...)
	return a
}

// Add stores studies; a study with a UID already held replaces it.
func (a *Archive) Add(studies ...*Study) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, st := range studies {
		if old, ok := a.byUID[st.UID]; ok {
			for i, s := range a.studies {
				if s == old {
					a.studies[i] = st
				}
			}
		} else {
			a.studies = append(a.studies, st)
		}
		a.byUID[st.UID] = st
	}
}

// Studies returns the studies held, in the order they were added.
func (a *Archive) Studies() []*Study {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return append([]*Study(nil), a.studies...)
}

// Study returns the study with uid.
func (a *Archive) Study(uid string) (*Study, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	st, ok := a.byUID[uid]
	return st, ok
}

// PACS serves an Archive over DICOMweb (DICOM PS3.18): QIDO-RS searches as
// application/dicom+json, WADO-RS retrieval of studies, series and
// instances as multipart/related; type="application/dicom", their metadata,
// and the pixel data as bulk data. It is the demo network's stand-in for a
// hospital's PACS; the node only ever speaks the standard shapes to it.
type PACS struct {
	Archive *Archive
	// Prefix is the path the service is mounted under (e.g. "/dicomweb"),
	// for the URLs in its answers; empty at the root.
	Prefix string
}

// Handler routes the DICOMweb resources.
func (p *PACS) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /studies", p.searchStudies)
	mux.HandleFunc("GET /series", p.searchSeries)
	mux.HandleFunc("GET /instances", p.searchInstances)
	mux.HandleFunc("GET /studies/{study}", p.retrieve)
	mux.HandleFunc("GET /studies/{study}/metadata", p.metadata)
	mux.HandleFunc("GET /studies/{study}/series", p.searchSeries)
	mux.HandleFunc("GET /studies/{study}/instances", p.searchInstances)
	mux.HandleFunc("GET /studies/{study}/series/{series}", p.retrieve)
	mux.HandleFunc("GET /studies/{study}/series/{series}/metadata", p.metadata)
	mux.HandleFunc("GET /studies/{study}/series/{series}/instances", p.searchInstances)
	mux.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}", p.retrieve)
	mux.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}/metadata", p.metadata)
	mux.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}", p.bulkdata)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeDICOMwebProblem(w, http.StatusMethodNotAllowed, "DICOMweb QIDO-RS and WADO-RS take GET")
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			writeDICOMwebProblem(w, http.StatusNotFound, "no DICOMweb resource at "+r.URL.Path)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// base is the service's own URL as the request reached it.
func (p *PACS) base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + strings.TrimSuffix(p.Prefix, "/")
}

// item is one study, series or instance with its QIDO-RS attributes.
type item struct {
	st *Study
	se *Series
	in *Instance
	d  Dataset
}

// scope returns the study and series a path names; ok is false (and the
// answer written) when one does not exist.
func (p *PACS) scope(w http.ResponseWriter, r *http.Request) (*Study, *Series, *Instance, bool) {
	var st *Study
	var se *Series
	var in *Instance
	if uid := r.PathValue("study"); uid != "" {
		var ok bool
		if st, ok = p.Archive.Study(uid); !ok {
			writeDICOMwebProblem(w, http.StatusNotFound, "no study "+uid)
			return nil, nil, nil, false
		}
	}
	if uid := r.PathValue("series"); uid != "" {
		for _, s := range st.Series {
			if s.UID == uid {
				se = s
			}
		}
		if se == nil {
			writeDICOMwebProblem(w, http.StatusNotFound, "no series "+uid+" in study "+st.UID)
			return nil, nil, nil, false
		}
	}
	if uid := r.PathValue("instance"); uid != "" {
		for _, i := range se.Instances {
			if i.SOPInstanceUID == uid {
				in = i
			}
		}
		if in == nil {
			writeDICOMwebProblem(w, http.StatusNotFound, "no instance "+uid+" in series "+se.UID)
			return nil, nil, nil, false
		}
	}
	return st, se, in, true
}

func (p *PACS) searchStudies(w http.ResponseWriter, r *http.Request) {
	base := p.base(r)
	var items []item
	for _, st := range p.Archive.Studies() {
		items = append(items, item{st: st, d: studyDataset(st, base)})
	}
	p.answerSearch(w, r, items, nil)
}

func (p *PACS) searchSeries(w http.ResponseWriter, r *http.Request) {
	st, _, _, ok := p.scope(w, r)
	if !ok {
		return
	}
	base := p.base(r)
	studies := p.Archive.Studies()
	if st != nil {
		studies = []*Study{st}
	}
	var items []item
	for _, s := range studies {
		for _, se := range s.Series {
			items = append(items, item{st: s, se: se, d: seriesDataset(s, se, base)})
		}
	}
	// Study-level attributes may be matched at the series level too.
	p.answerSearch(w, r, items, func(it item) Dataset { return studyDataset(it.st, base) })
}

func (p *PACS) searchInstances(w http.ResponseWriter, r *http.Request) {
	st, se, _, ok := p.scope(w, r)
	if !ok {
		return
	}
	base := p.base(r)
	studies := p.Archive.Studies()
	if st != nil {
		studies = []*Study{st}
	}
	var items []item
	for _, s := range studies {
		for _, ss := range s.Series {
			if se != nil && ss != se {
				continue
			}
			for _, in := range ss.Instances {
				items = append(items, item{st: s, se: ss, in: in, d: instanceDataset(s, ss, in, base)})
			}
		}
	}
	p.answerSearch(w, r, items, func(it item) Dataset { return studyDataset(it.st, base) })
}

// answerSearch filters items by the query's matching attributes (PS3.18
// 8.3.4: single value, UID list, wildcard and date range matching), pages
// them (limit, offset) and answers application/dicom+json.
func (p *PACS) answerSearch(w http.ResponseWriter, r *http.Request, items []item, outer func(item) Dataset) {
	if !acceptable(r, MediaDICOMJSON, "application/json") {
		writeDICOMwebProblem(w, http.StatusNotAcceptable, "QIDO-RS answers application/dicom+json")
		return
	}
	q := r.URL.Query()
	limit, offset := -1, 0
	type match struct{ tag, value string }
	var matches []match
	for name, vals := range q {
		switch name {
		case "limit", "offset":
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 0 {
				writeDICOMwebProblem(w, http.StatusBadRequest, name+" must be a non-negative number")
				return
			}
			if name == "limit" {
				limit = n
			} else {
				offset = n
			}
		case "includefield", "fuzzymatching":
			// Every answer carries all attributes this archive knows.
		default:
			t := TagOf(name)
			if t == "" {
				writeDICOMwebProblem(w, http.StatusBadRequest, "unknown query attribute "+name)
				return
			}
			for _, v := range vals {
				matches = append(matches, match{t, v})
			}
		}
	}
	out := []Dataset{}
	for _, it := range items {
		keep := true
		for _, m := range matches {
			d := it.d
			if _, ok := d[m.tag]; !ok && outer != nil {
				d = outer(it)
			}
			if !matchAttribute(d, m.tag, m.value) {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, it.d)
		}
	}
	if offset > len(out) {
		offset = len(out)
	}
	out = out[offset:]
	if limit >= 0 && limit < len(out) {
		out = out[:limit]
	}
	w.Header().Set("Content-Type", MediaDICOMJSON)
	_ = json.NewEncoder(w).Encode(out)
}

// matchAttribute applies one QIDO-RS matching key to a dataset.
func matchAttribute(d Dataset, tag, want string) bool {
	if want == "" {
		return true // universal matching
	}
	vals := d.Strings(tag)
	vr := d[tag].VR
	for _, have := range vals {
		switch {
		case vr == "UI":
			for _, u := range strings.Split(want, ",") {
				if u == have {
					return true
				}
			}
		case (vr == "DA" || vr == "TM") && strings.Contains(want, "-"):
			from, to, _ := strings.Cut(want, "-")
			if (from == "" || have >= from) && (to == "" || have <= to) {
				return true
			}
		case strings.ContainsAny(want, "*?"):
			if wildcard(want, have) {
				return true
			}
		case have == want:
			return true
		}
	}
	return false
}

// wildcard matches s against a pattern of * (any run) and ? (one character).
func wildcard(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if wildcard(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && wildcard(pattern[1:], s[1:])
	}
	return s != "" && s[0] == pattern[0] && wildcard(pattern[1:], s[1:])
}

// instancesOf lists the instances a retrieval names, in study order.
func instancesOf(st *Study, se *Series, in *Instance) []*Instance {
	if in != nil {
		return []*Instance{in}
	}
	var out []*Instance
	for _, s := range st.Series {
		if se == nil || s == se {
			out = append(out, s.Instances...)
		}
	}
	return out
}

// retrieve answers WADO-RS: the instances as DICOM Part 10 files in a
// multipart/related body.
func (p *PACS) retrieve(w http.ResponseWriter, r *http.Request) {
	if !acceptsDICOM(r) {
		writeDICOMwebProblem(w, http.StatusNotAcceptable, `WADO-RS answers multipart/related; type="application/dicom" (transfer syntax `+TransferSyntaxExplicitLE+`)`)
		return
	}
	st, se, in, ok := p.scope(w, r)
	if !ok {
		return
	}
	files := instancesOf(st, se, in)
	// The body's length is known before it is written: a first pass over
	// the same parts counts it, so the answer carries a Content-Length
	// rather than chunked framing, as a PACS serving stored files does.
	var n byteCounter
	boundary := writeParts(&n, "", files)
	w.Header().Set("Content-Type", fmt.Sprintf(`%s; boundary=%s`, MediaStudy, boundary))
	w.Header().Set("Content-Length", strconv.FormatInt(int64(n), 10))
	writeParts(w, boundary, files)
}

// writeParts writes files as the parts of a multipart/related body with
// boundary (a new one when empty) and returns the boundary.
func writeParts(w io.Writer, boundary string, files []*Instance) string {
	mw := multipart.NewWriter(w)
	if boundary != "" {
		_ = mw.SetBoundary(boundary)
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", MediaDICOM+"; transfer-syntax="+TransferSyntaxExplicitLE)
		h.Set("Content-Length", strconv.Itoa(len(f.File)))
		part, err := mw.CreatePart(h)
		if err != nil {
			return mw.Boundary()
		}
		if _, err := part.Write(f.File); err != nil {
			return mw.Boundary()
		}
	}
	_ = mw.Close()
	return mw.Boundary()
}

// byteCounter counts what is written to it.
type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}

// metadata answers WADO-RS metadata: per instance its attributes as DICOM
// JSON, the pixel data as a bulk data reference.
func (p *PACS) metadata(w http.ResponseWriter, r *http.Request) {
	if !acceptable(r, MediaDICOMJSON, "application/json") {
		writeDICOMwebProblem(w, http.StatusNotAcceptable, "metadata is answered as application/dicom+json")
		return
	}
	st, se, in, ok := p.scope(w, r)
	if !ok {
		return
	}
	base := p.base(r)
	out := []Dataset{}
	for _, s := range st.Series {
		if se != nil && s != se {
			continue
		}
		for _, i := range s.Instances {
			if in == nil || i == in {
				out = append(out, metadataDataset(st, s, i, base))
			}
		}
	}
	w.Header().Set("Content-Type", MediaDICOMJSON)
	_ = json.NewEncoder(w).Encode(out)
}

// bulkdata answers an instance's pixel data (the only bulk data attribute
// here) as application/octet-stream in a multipart/related body.
func (p *PACS) bulkdata(w http.ResponseWriter, r *http.Request) {
	st, se, in, ok := p.scope(w, r)
	if !ok {
		return
	}
	_, _ = st, se
	if !strings.EqualFold(r.PathValue("tag"), TagPixelData) {
		writeDICOMwebProblem(w, http.StatusNotFound, "no bulk data "+r.PathValue("tag"))
		return
	}
	info, err := ParseInstance(in.File)
	if err != nil || info.PixelDataBytes == 0 {
		writeDICOMwebProblem(w, http.StatusNotFound, "the instance has no pixel data")
		return
	}
	pixels := in.File[len(in.File)-info.PixelDataBytes:]
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", `multipart/related; type="application/octet-stream"; boundary=`+mw.Boundary())
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "application/octet-stream")
	part, err := mw.CreatePart(h)
	if err == nil {
		_, _ = part.Write(pixels)
	}
	_ = mw.Close()
}

// acceptable reports whether the request's Accept header allows one of
// types (an absent header or */* allows anything).
func acceptable(r *http.Request, types ...string) bool {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return true
	}
	for _, a := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(a))
		if err != nil {
			continue
		}
		if mt == "*/*" || mt == "application/*" {
			return true
		}
		for _, t := range types {
			if mt == t {
				return true
			}
		}
	}
	return false
}

// acceptsDICOM reports whether the request accepts DICOM Part 10 files in
// multipart/related, in the transfer syntax the archive holds.
func acceptsDICOM(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return true
	}
	for _, a := range splitAccept(accept) {
		mt, params, err := mime.ParseMediaType(a)
		if err != nil {
			continue
		}
		if mt == "*/*" {
			return true
		}
		if mt != "multipart/related" || (params["type"] != "" && params["type"] != MediaDICOM) {
			continue
		}
		if ts := params["transfer-syntax"]; ts == "" || ts == "*" || ts == TransferSyntaxExplicitLE {
			return true
		}
	}
	return false
}

// splitAccept splits an Accept header at the commas between media ranges,
// not at those inside quoted parameters.
func splitAccept(h string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(h); i++ {
		switch h[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, strings.TrimSpace(h[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(h[start:]))
}

// writeDICOMwebProblem answers an error of the DICOMweb service as RFC 9457
// problem details.
func writeDICOMwebProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}

// ReadMultipart reads a WADO-RS answer part by part, handing each part's
// body to fn; it fails when the answer is not multipart/related of DICOM.
func ReadMultipart(contentType string, body io.Reader, fn func(part io.Reader) error) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		return fmt.Errorf("%w: answer of type %q, not multipart/related", ErrBadQuery, contentType)
	}
	if t := params["type"]; t != "" && t != MediaDICOM {
		return fmt.Errorf("%w: multipart/related of type %q, not %s", ErrBadQuery, t, MediaDICOM)
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read multipart answer: %w", err)
		}
		if err := fn(part); err != nil {
			return err
		}
	}
}

// SortedUIDs returns the SOP instance UIDs of studies, sorted.
func SortedUIDs(studies ...*Study) []string {
	var out []string
	for _, st := range studies {
		for _, se := range st.Series {
			for _, in := range se.Instances {
				out = append(out, in.SOPInstanceUID)
			}
		}
	}
	sort.Strings(out)
	return out
}
