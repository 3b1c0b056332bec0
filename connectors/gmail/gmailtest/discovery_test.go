package gmailtest

import (
	"encoding/json"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// discovery is the part of a Google discovery document the check reads.
type discovery struct {
	Revision   string              `json:"revision"`
	RootURL    string              `json:"rootUrl"`
	Parameters map[string]param    `json:"parameters"`
	Resources  map[string]resource `json:"resources"`
	Schemas    map[string]schema   `json:"schemas"`
	Auth       struct {
		OAuth2 struct{ Scopes map[string]any }
	} `json:"auth"`
}

type resource struct {
	Methods   map[string]method   `json:"methods"`
	Resources map[string]resource `json:"resources"`
}

type method struct {
	ID          string           `json:"id"`
	HTTPMethod  string           `json:"httpMethod"`
	Path        string           `json:"path"`
	Parameters  map[string]param `json:"parameters"`
	Scopes      []string         `json:"scopes"`
	MediaUpload *struct {
		Accept    []string `json:"accept"`
		MaxSize   string   `json:"maxSize"`
		Protocols map[string]struct {
			Multipart bool   `json:"multipart"`
			Path      string `json:"path"`
		} `json:"protocols"`
	} `json:"mediaUpload"`
	Request *struct {
		Ref string `json:"$ref"`
	} `json:"request"`
	Response *struct {
		Ref string `json:"$ref"`
	} `json:"response"`
}

type param struct {
	Type     string   `json:"type"`
	Format   string   `json:"format"`
	Location string   `json:"location"`
	Enum     []string `json:"enum"`
	Repeated bool     `json:"repeated"`
	Required bool     `json:"required"`
}

type schema struct {
	Properties map[string]struct {
		Annotations struct {
			Required []string `json:"required"`
		} `json:"annotations"`
	} `json:"properties"`
}

func loadDiscovery(t *testing.T) *discovery {
	t.Helper()
	b, err := os.ReadFile("testdata/gmail-api.json")
	if err != nil {
		t.Fatal(err)
	}
	var d discovery
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// find is the method with id in the resource tree.
func (d *discovery) find(id string) *method {
	var walk func(map[string]resource) *method
	walk = func(rs map[string]resource) *method {
		for _, r := range rs {
			for _, m := range r.Methods {
				if m.ID == id {
					return &m
				}
			}
			if m := walk(r.Resources); m != nil {
				return m
			}
		}
		return nil
	}
	return walk(d.Resources)
}

// typeOf is the fake's name for a discovery parameter's type.
func typeOf(p param) string {
	switch {
	case len(p.Enum) > 0:
		return "enum:" + strings.Join(p.Enum, "|")
	case p.Type == "integer" && p.Format == "uint32":
		return "uint32"
	}
	return p.Type
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// The fake's routes are Google's: each method it serves has the discovery
// document's HTTP method, path and scopes, takes every query parameter the
// document gives it and no other, each of the document's type (and enum),
// repeated only where the document says so; the import's upload paths,
// protocols and accepted media type are the document's.
func TestRoutesMatchTheDiscoveryDocument(t *testing.T) {
	d := loadDiscovery(t)
	if d.RootURL != "https://gmail.googleapis.com/" {
		t.Fatalf("rootUrl %q", d.RootURL)
	}
	for _, rt := range routes {
		t.Run(rt.op, func(t *testing.T) {
			m := d.find("gmail.users." + rt.op)
			if m == nil {
				t.Fatalf("the document has no gmail.users.%s", rt.op)
			}
			if m.HTTPMethod != rt.httpMethod || m.Path != rt.path {
				t.Errorf("document: %s %s; fake: %s %s", m.HTTPMethod, m.Path, rt.httpMethod, rt.path)
			}
			if !slices.Equal(sorted(m.Scopes), sorted(rt.scopes)) {
				t.Errorf("scopes: document %v, fake %v", m.Scopes, rt.scopes)
			}
			for name, p := range m.Parameters {
				if p.Location == "path" {
					if name != "userId" || !p.Required || !strings.Contains(rt.path, "{userId}") {
						t.Errorf("path parameter %s", name)
					}
					continue
				}
				typ, ok := rt.params[name]
				switch {
				case !ok:
					t.Errorf("the fake refuses %s, which the document has", name)
				case typ != typeOf(p):
					t.Errorf("%s: the fake takes %s, the document says %s", name, typ, typeOf(p))
				case p.Repeated != slices.Contains(rt.repeated, name):
					t.Errorf("%s: repeated is %v in the document", name, p.Repeated)
				}
			}
			for name := range rt.params {
				if p, ok := m.Parameters[name]; !ok || p.Location != "query" {
					t.Errorf("the fake takes %s, which the document does not have", name)
				}
			}
			if rt.uploads == nil {
				if m.MediaUpload != nil {
					t.Error("the document has uploads the fake does not serve")
				}
				return
			}
			mu := m.MediaUpload
			if mu == nil {
				t.Fatal("the document has no media upload for it")
			}
			if !slices.Equal(mu.Accept, []string{rt.accept}) {
				t.Errorf("accept: document %v, fake %s", mu.Accept, rt.accept)
			}
			if len(mu.Protocols) != len(rt.uploads) {
				t.Errorf("protocols: document %v, fake %v", mu.Protocols, rt.uploads)
			}
			for proto, p := range mu.Protocols {
				if rt.uploads[proto] != p.Path {
					t.Errorf("%s upload: document %s, fake %s", proto, p.Path, rt.uploads[proto])
				}
				// multipart: true says the metadata may come with the
				// media (uploadType=multipart; the resumable session's
				// first request): the fake takes both.
				if !p.Multipart {
					t.Errorf("%s upload is not multipart in the document", proto)
				}
			}
			// This revision says 50 MiB; Google's reference now says 150
			// MB (testdata/README.md). The fake takes at least what the
			// document says.
			max, _ := strconv.ParseInt(mu.MaxSize, 10, 64)
			if max <= 0 || MaxImportSize < max {
				t.Errorf("maxSize %s, fake %d", mu.MaxSize, MaxImportSize)
			}
			t.Logf("document revision %s: maxSize %s; the fake takes %d (the reference's 150 MB)", d.Revision, mu.MaxSize, MaxImportSize)
		})
	}
	for name, typ := range globalParams {
		p, ok := d.Parameters[name]
		if !ok || p.Location != "query" {
			t.Errorf("global parameter %s is not the document's", name)
			continue
		}
		if strings.HasPrefix(typ, "enum:") {
			for _, v := range strings.Split(typ[5:], "|") {
				if !slices.Contains(p.Enum, v) {
					t.Errorf("%s=%s is not in the document's enum %v", name, v, p.Enum)
				}
			}
		} else if typ != typeOf(p) {
			t.Errorf("%s: the fake takes %s, the document says %s", name, typ, typeOf(p))
		}
	}
	if _, ok := d.Parameters["uploadType"]; !ok {
		t.Error("the document has no uploadType parameter")
	}
	for _, s := range []string{ScopeFull, ScopeInsert, ScopeLabels, ScopeMetadata, ScopeModify, ScopeReadonly} {
		if _, ok := d.Auth.OAuth2.Scopes[s]; !ok {
			t.Errorf("scope %s is not the document's", s)
		}
	}
}

// What the fake reads and writes are the document's schemas: the
// metadata of an upload and a label are Message and Label fields; a
// label's fields that the document requires for create are required.
func TestBodiesMatchTheDiscoverySchemas(t *testing.T) {
	d := loadDiscovery(t)
	has := func(schemaName string, fields ...string) {
		t.Helper()
		s, ok := d.Schemas[schemaName]
		if !ok {
			t.Fatalf("no schema %s", schemaName)
		}
		for _, f := range fields {
			if _, ok := s.Properties[f]; !ok {
				t.Errorf("%s has no field %s", schemaName, f)
			}
		}
	}
	imp := d.find("gmail.users.messages.import")
	if imp.Request == nil || imp.Request.Ref != "Message" || imp.Response.Ref != "Message" {
		t.Fatal("import does not take and give a Message")
	}
	for _, f := range jsonFields(metadata{}) {
		has("Message", f)
	}
	has("Message", "id", "threadId", "labelIds") // the import's reply (Message.resource)
	has("Label", jsonFields(Label{})...)
	has("ListLabelsResponse", "labels")
	has("ListMessagesResponse", "messages", "resultSizeEstimate")
	var required []string
	for f, p := range d.Schemas["Label"].Properties {
		if slices.Contains(p.Annotations.Required, "gmail.users.labels.create") {
			required = append(required, f)
		}
	}
	if want := []string{"labelListVisibility", "messageListVisibility", "name"}; !slices.Equal(sorted(required), want) {
		t.Fatalf("the document requires %v for labels.create; the fake requires %v", required, want)
	}
}

// jsonFields are the JSON names of a struct's fields.
func jsonFields(v any) []string {
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
