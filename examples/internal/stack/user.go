package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// User is a signed-in browser without JavaScript: its token is in the
// tg_token cookie (auth.jwt.cookie), it follows no redirect by itself, and
// it submits the forms of the pages it was given, as a browser would.
type User struct {
	t      testing.TB
	s      *Stack
	ID     string
	client *http.Client
}

// User signs id in: the token cookie is set for tollgate's origin.
func (s *Stack) User(id string) *User {
	s.t.Helper()
	jar, _ := cookiejar.New(nil)
	base, _ := url.Parse(s.URL)
	jar.SetCookies(base, []*http.Cookie{{Name: "tg_token", Value: s.Token(id), Path: "/"}})
	return &User{t: s.t, s: s, ID: id, client: &http.Client{Jar: jar, Timeout: requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// Page is one answer.
type Page struct {
	URL     string // the request's
	Status  int
	Header  http.Header
	Trailer http.Header
	Body    string
}

// Get requests path (or a full URL) through tollgate, with headers.
func (u *User) Get(path string, headers ...string) *Page {
	u.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u.abs(path), nil)
	if err != nil {
		u.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return u.do(req)
}

// Follow gets a redirect's target, which must be on tollgate's origin.
func (u *User) Follow(p *Page) *Page {
	u.t.Helper()
	loc := p.Header.Get("Location")
	if p.Status != http.StatusSeeOther && p.Status != http.StatusFound || loc == "" {
		u.t.Fatalf("%s = %d (Location %q); want a redirect\n%s", p.URL, p.Status, loc, p.Body)
	}
	target := u.abs(resolve(p.URL, loc))
	if !strings.HasPrefix(target, u.s.URL+"/") {
		u.t.Fatalf("%s redirects off the site, to %s", p.URL, target)
	}
	return u.Get(target)
}

// API calls tollgate's billing API with the user's cookie and decodes the
// JSON answer.
func (u *User) API(path string) map[string]any {
	u.t.Helper()
	p := u.Get("/_tollgate/billing/" + path)
	var m map[string]any
	if p.Status != http.StatusOK || json.Unmarshal([]byte(p.Body), &m) != nil {
		u.t.Fatalf("GET billing %s = %d %s", path, p.Status, p.Body)
	}
	return m
}

// Submit submits the form that holds the element with data-testid=testid,
// with every field the form carries (hidden inputs included), the way a
// browser without JavaScript does. set (name, value pairs) fills in fields
// as the user would; each must be one of the form's.
func (u *User) Submit(p *Page, testid string, set ...string) *Page {
	u.t.Helper()
	f, ok := findForm(p.Body, testid)
	if !ok {
		u.t.Fatalf("%s has no form with data-testid=%q:\n%s", p.URL, testid, p.Body)
	}
	for i := 0; i+1 < len(set); i += 2 {
		if !f.fields.Has(set[i]) {
			u.t.Fatalf("%s: the form of %q has no field %q:\n%s", p.URL, testid, set[i], p.Body)
		}
		f.fields.Set(set[i], set[i+1])
	}
	action := resolve(p.URL, f.action)
	if f.method == http.MethodGet {
		return u.Get(action + "?" + f.fields.Encode())
	}
	var body bytes.Buffer
	ctype := "application/x-www-form-urlencoded"
	if f.multipart {
		w := multipart.NewWriter(&body)
		for k, vs := range f.fields {
			for _, v := range vs {
				w.WriteField(k, v)
			}
		}
		w.Close()
		ctype = w.FormDataContentType()
	} else {
		body.WriteString(f.fields.Encode())
	}
	req, err := http.NewRequest(http.MethodPost, u.abs(action), &body)
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Origin", u.s.URL) // as every browser sends with a POST
	return u.do(req)
}

func (u *User) do(req *http.Request) *Page {
	u.t.Helper()
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		u.t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return &Page{URL: req.URL.String(), Status: resp.StatusCode, Header: resp.Header, Trailer: resp.Trailer, Body: string(b)}
}

func (u *User) abs(path string) string {
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		return path
	}
	return u.s.URL + path
}

func resolve(base, ref string) string {
	b, err := url.Parse(base)
	if err != nil {
		return ref
	}
	r, err := b.Parse(ref)
	if err != nil {
		return ref
	}
	return r.String()
}

// Text is the text of the element with data-testid=testid ("" when there
// is none): tags and React's <!-- --> text separators removed, entities
// decoded, white space collapsed.
func (p *Page) Text(testid string) string {
	all := p.All(testid)
	if len(all) == 0 {
		return ""
	}
	return all[0]
}

// Has reports whether an element with data-testid=testid is on the page.
func (p *Page) Has(testid string) bool {
	return strings.Contains(p.Body, `data-testid="`+testid+`"`)
}

// All is the text of every element with data-testid=testid: from its
// opening tag to the first closing tag of the same name (the pages nest no
// element inside one of its own kind).
func (p *Page) All(testid string) []string {
	var out []string
	open := regexp.MustCompile(`<([a-zA-Z0-9]+)\b[^>]*\bdata-testid="` + regexp.QuoteMeta(testid) + `"[^>]*>`)
	for _, m := range open.FindAllStringSubmatchIndex(p.Body, -1) {
		name := p.Body[m[2]:m[3]]
		rest := p.Body[m[1]:]
		end := strings.Index(rest, "</"+name+">")
		if end < 0 {
			end = len(rest)
		}
		out = append(out, text(rest[:end]))
	}
	return out
}

// Field is the value of the field name in the form that holds the
// element with data-testid=testid ("" when there is none).
func (p *Page) Field(testid, name string) string {
	f, _ := findForm(p.Body, testid)
	return f.fields.Get(name)
}

// Link is the href of the <a> with data-testid=testid.
func (p *Page) Link(testid string) string {
	m := regexp.MustCompile(`<a\b[^>]*\bdata-testid="` + regexp.QuoteMeta(testid) + `"[^>]*>`).FindString(p.Body)
	return attrs(m)["href"]
}

func (p *Page) String() string { return fmt.Sprintf("%s = %d\n%s", p.URL, p.Status, p.Body) }

var (
	tagRE     = regexp.MustCompile(`(?s)<!--.*?-->|<[^>]*>`)
	spaceRE   = regexp.MustCompile(`\s+`)
	formRE    = regexp.MustCompile(`(?s)<form\b([^>]*)>(.*?)</form>`)
	inputRE   = regexp.MustCompile(`<(?:input|button)\b[^>]*>`)
	attrRE    = regexp.MustCompile(`([a-zA-Z_:$][-a-zA-Z0-9_:$.]*)(?:="([^"]*)")?`)
	tagNameRE = regexp.MustCompile(`^<[a-zA-Z]+`)
)

func text(s string) string {
	return strings.TrimSpace(spaceRE.ReplaceAllString(html.UnescapeString(tagRE.ReplaceAllString(s, " ")), " "))
}

type form struct {
	method, action string
	multipart      bool
	fields         url.Values
}

// findForm parses the form around data-testid=testid: its method, action,
// encoding and the named inputs (a named button counts as clicked only when
// it is the one with the test id).
func findForm(body, testid string) (form, bool) {
	for _, m := range formRE.FindAllStringSubmatch(body, -1) {
		if !strings.Contains(m[0], `data-testid="`+testid+`"`) {
			continue
		}
		a := attrs("<form" + m[1] + ">")
		f := form{method: strings.ToUpper(a["method"]), action: a["action"], fields: url.Values{},
			multipart: strings.EqualFold(a["enctype"], "multipart/form-data")}
		if f.method == "" {
			f.method = http.MethodGet
		}
		for _, tag := range inputRE.FindAllString(m[2], -1) {
			ia := attrs(tag)
			if ia["name"] == "" || strings.HasPrefix(tag, "<button") && ia["data-testid"] != testid {
				continue
			}
			f.fields.Add(ia["name"], ia["value"])
		}
		return f, true
	}
	return form{}, false
}

// attrs reads a tag's double-quoted attributes, names lowercased.
func attrs(tag string) map[string]string {
	out := map[string]string{}
	tag = tagNameRE.ReplaceAllString(tag, "")
	for _, m := range attrRE.FindAllStringSubmatch(tag, -1) {
		out[strings.ToLower(m[1])] = html.UnescapeString(m[2])
	}
	return out
}
