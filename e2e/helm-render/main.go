// hotswap-helm-render renders a Helm chart as `helm template` does, for tests on machines where
// Helm itself cannot be installed. It uses the template engine Helm uses, Go's text/template with
// the Sprig functions, and adds what charts use of Helm's own: the values (values.yaml, then each
// -f file, then --set, deep-merged), .Release, .Chart, .Files.Get, .Template, and the functions
// include, tpl, required, toYaml, fromYaml, toJson, fromJson and lookup (which, as in
// `helm template`, finds nothing).
//
//	hotswap-helm-render --chart DIR [--release NAME] [--namespace NS] [-f values.yaml]...
//	                    [--set a.b=c,d=e]... [--include-crds]
//
// It prints the manifests as one multi-document YAML stream, each document headed by
// "# Source: CHART/templates/FILE" as Helm's are, and exits 1 with the template's error (a
// `required` value that is missing, a bad values file) when rendering fails.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	sprig "github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// Files gives templates the chart's other files, as Helm's .Files does.
type Files struct{ root string }

// Get returns a file's content relative to the chart, or "" when it cannot be read (as Helm).
func (f Files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.root, filepath.FromSlash(name)))
	if err != nil {
		return ""
	}
	return string(b)
}

func main() {
	var valueFiles, sets listFlag
	chart := flag.String("chart", "", "the chart's directory")
	release := flag.String("release", "hotswap", "the release name")
	namespace := flag.String("namespace", "default", "the release namespace")
	includeCRDs := flag.Bool("include-crds", false, "print the chart's crds/ first, as helm template --include-crds")
	flag.Var(&valueFiles, "f", "a values file (repeatable; later ones win)")
	flag.Var(&sets, "set", "key.path=value pairs, comma-separated (repeatable; win over -f)")
	flag.Parse()
	if *chart == "" {
		fail(errors.New("--chart is required"))
	}
	out, err := render(*chart, *release, *namespace, valueFiles, sets, *includeCRDs)
	if err != nil {
		fail(err)
	}
	os.Stdout.WriteString(out)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "hotswap-helm-render: %v\n", err)
	os.Exit(1)
}

func render(chartDir, release, namespace string, valueFiles, sets []string, includeCRDs bool) (string, error) {
	meta, err := readYAMLFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	name, _ := meta["name"].(string)
	if name == "" {
		return "", fmt.Errorf("%s: Chart.yaml has no name", chartDir)
	}
	values, err := readYAMLFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil && !os.IsNotExist(errors.Unwrap(err)) {
		return "", err
	}
	if values == nil {
		values = map[string]interface{}{}
	}
	for _, f := range valueFiles {
		extra, err := readYAMLFile(f)
		if err != nil {
			return "", err
		}
		mergeInto(values, extra)
	}
	for _, s := range sets {
		if err := applySet(values, s); err != nil {
			return "", err
		}
	}

	top := map[string]interface{}{
		"Values": values,
		"Chart":  chartObject(meta),
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false,
			"Revision": 1,
		},
		"Files": Files{root: chartDir},
	}

	tmplDir := filepath.Join(chartDir, "templates")
	entries, err := os.ReadDir(tmplDir)
	if err != nil {
		return "", err
	}
	root := template.New(name)
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(string, string, string, string) map[string]interface{} { return map[string]interface{}{} }
	funcs["include"] = func(tname string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	root.Funcs(funcs).Option("missingkey=default")

	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		n := e.Name()
		if !strings.HasSuffix(n, ".yaml") && !strings.HasSuffix(n, ".yml") && !strings.HasSuffix(n, ".tpl") &&
			!strings.HasSuffix(n, ".txt") {
			continue
		}
		text, err := os.ReadFile(filepath.Join(tmplDir, n))
		if err != nil {
			return "", err
		}
		full := name + "/templates/" + n
		if _, err := root.New(full).Parse(string(text)); err != nil {
			return "", err
		}
		names = append(names, n)
	}
	sort.Strings(names)

	var out strings.Builder
	if includeCRDs {
		crds, _ := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
		sort.Strings(crds)
		for _, c := range crds {
			b, err := os.ReadFile(c)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&out, "---\n# Source: %s/crds/%s\n%s", name, filepath.Base(c), ensureNewline(string(b)))
		}
	}
	for _, n := range names {
		// Partials (_*.tpl) define templates; NOTES.txt is shown after an install, not applied.
		if strings.HasPrefix(n, "_") || n == "NOTES.txt" {
			continue
		}
		full := name + "/templates/" + n
		data := copyMap(top)
		data["Template"] = map[string]interface{}{"Name": full, "BasePath": name + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, full, data); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		for _, doc := range splitDocuments(text) {
			fmt.Fprintf(&out, "---\n# Source: %s\n%s", full, ensureNewline(doc))
		}
	}
	return out.String(), nil
}

// splitDocuments cuts a rendered file at its "---" lines and drops the documents that hold only
// blank lines and comments, as Helm does.
func splitDocuments(text string) []string {
	var docs []string
	var cur []string
	flush := func() {
		body := strings.Join(cur, "\n")
		for _, line := range cur {
			t := strings.TrimSpace(line)
			if t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, strings.TrimLeft(body, "\n"))
				break
			}
		}
		cur = nil
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimRight(line, " ") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func chartObject(meta map[string]interface{}) map[string]interface{} {
	c := map[string]interface{}{}
	for k, v := range meta {
		if k == "" {
			continue
		}
		c[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return c
}

func copyMap(m map[string]interface{}) map[string]interface{} {
	c := make(map[string]interface{}, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func readYAMLFile(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return m, nil
}

// mergeInto merges src into dst: maps merge key by key, anything else replaces (as Helm's values).
// A null in src deletes the key, as in Helm.
func mergeInto(dst, src map[string]interface{}) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				mergeInto(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// applySet applies "a.b=c,d=e" (Helm's --set for maps and scalars; a value of true, false,
// null or an integer is typed as Helm types it).
func applySet(values map[string]interface{}, s string) error {
	for _, pair := range strings.Split(s, ",") {
		eq := strings.Index(pair, "=")
		if eq <= 0 {
			return fmt.Errorf("--set %q: want key.path=value", pair)
		}
		path := strings.Split(pair[:eq], ".")
		raw := pair[eq+1:]
		var v interface{} = raw
		switch {
		case raw == "true":
			v = true
		case raw == "false":
			v = false
		case raw == "null":
			v = nil
		default:
			if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
				v = n
			}
		}
		m := values
		for _, key := range path[:len(path)-1] {
			next, ok := m[key].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[key] = next
			}
			m = next
		}
		last := path[len(path)-1]
		if v == nil {
			delete(m, last)
		} else {
			m[last] = v
		}
	}
	return nil
}

// toYAML is Helm's toYaml: the value as YAML, two-space indented, without the final newline,
// or "" when it cannot be encoded.
func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	enc.Close()
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}
