// Package docs_test holds the documentation to the code: every default
// and bound that README.md, SECURITY.md, docs/*.md, edge/PROTOCOL.md,
// telemetry/RUNBOOK.md and the Config field comments state must be the
// one the configuration structs' envDefault tags (or, for fixed bounds,
// the constants) give, so the two cannot drift apart again (SECURITY.md
// once said 2,000 TURN allocations while the code allowed 4,000).
package docs_test

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/media-service/media-service/edge"
	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/fleet"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/webhook"
	"github.com/media-service/media-service/telemetry"
	"github.com/media-service/media-service/turn"
)

// configs are the configuration structs of every package the service
// reads its environment into. A package with a new Config belongs here.
var configs = []any{edge.Config{}, sfu.Config{}, turn.Config{}, telemetry.Config{}, fleet.Config{}, webhook.Config{}}

// defaults maps each environment variable of configs to its envDefault
// tag ("" when it has none).
func defaults(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range configs {
		typ := reflect.TypeOf(c)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, ok := f.Tag.Lookup("env")
			if !ok {
				continue
			}
			def := f.Tag.Get("envDefault")
			if prev, seen := out[name]; seen && prev != def {
				t.Errorf("%s has default %q in one config and %q in another", name, prev, def)
			}
			out[name] = def
		}
	}
	return out
}

// docFiles are the documents whose numbers are checked, relative to the
// repository root.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "SECURITY.md", "edge/PROTOCOL.md", "telemetry/RUNBOOK.md"}
	more, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range more {
		files = append(files, "docs/"+m)
	}
	return files
}

// readDoc returns a document with its line breaks as spaces, so a phrase
// wrapped over two lines still matches.
func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// quantity is a number as the docs write it, with its unit made uniform:
// durations in nanoseconds, sizes in bytes, counts as they are.
type quantity struct {
	v        float64
	duration bool
}

var quantityRE = regexp.MustCompile(`^([0-9][0-9,]*(?:\.[0-9]+)?) ?(ms|s|seconds|min|m|h|KiB)?\b`)

// parseQuantity reads the quantity at the start of s: "4,096", "10 s",
// "2m", "500 ms", "64 KiB", "1h".
func parseQuantity(s string) (quantity, bool) {
	m := quantityRE.FindStringSubmatch(s)
	if m == nil {
		return quantity{}, false
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
	if err != nil {
		return quantity{}, false
	}
	unit := map[string]float64{"ms": float64(time.Millisecond), "s": float64(time.Second),
		"seconds": float64(time.Second), "min": float64(time.Minute), "m": float64(time.Minute),
		"h": float64(time.Hour)}
	switch u := m[2]; {
	case u == "KiB":
		return quantity{v: v * 1024}, true
	case u != "":
		return quantity{v: v * unit[u], duration: true}, true
	}
	return quantity{v: v}, true
}

// defaultQuantity is a variable's envDefault as a quantity.
func defaultQuantity(def string) (quantity, bool) {
	if d, err := time.ParseDuration(def); err == nil && strings.ContainsAny(def, "hms") {
		return quantity{v: float64(d), duration: true}, true
	}
	if v, err := strconv.ParseFloat(def, 64); err == nil {
		return quantity{v: v}, true
	}
	return quantity{}, false
}

// checkClaim reports a stated value that is not the variable's default.
func checkClaim(t *testing.T, where, name, stated string, defs map[string]string) {
	t.Helper()
	def, ok := defs[name]
	if !ok {
		t.Errorf("%s: %s is no configuration variable", where, name)
		return
	}
	want, ok := defaultQuantity(def)
	if !ok {
		t.Errorf("%s: states %q for %s, whose default %q is not a number", where, stated, name, def)
		return
	}
	checkQuantity(t, where, name, stated, want)
}

// checkQuantity reports a stated value that is not want.
func checkQuantity(t *testing.T, where, what, stated string, want quantity) {
	t.Helper()
	if got, ok := parseQuantity(stated); !ok || got != want {
		t.Errorf("%s: states %q for %s; the code's value is %v", where, stated, what, want)
	}
}

// String writes a quantity as the code would.
func (q quantity) String() string {
	if q.duration {
		return time.Duration(q.v).String()
	}
	return strconv.FormatFloat(q.v, 'f', -1, 64)
}

// tableRow is a row of README's configuration tables:
// | `VARIABLE` | `default` or — | meaning |.
var tableRow = regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\| (?:`([^`]*)`|—) \\| (.*) \\|$")

// firstDefault is the value after the first "(default " in a meaning.
var firstDefault = regexp.MustCompile(`\(default "?([^\s;,:)"]+)`)

// TestREADMEConfigurationTables: README's tables list exactly the
// variables the code reads, each with the code's default, and a meaning
// that says "(default X" says the same X.
func TestREADMEConfigurationTables(t *testing.T) {
	defs := defaults(t)
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range tableRow.FindAllStringSubmatch(string(b), -1) {
		name, def, meaning := m[1], m[2], m[3]
		listed[name] = true
		want, ok := defs[name]
		if !ok {
			t.Errorf("README lists %s, which no configuration reads", name)
			continue
		}
		if def != want {
			t.Errorf("README: default of %s = %q; the code's is %q", name, def, want)
		}
		if d := firstDefault.FindStringSubmatch(meaning); d != nil && want != "" {
			if d[1] != want {
				t.Errorf("README: %s's meaning says (default %s; the code's is %q", name, d[1], want)
			}
		}
	}
	for name := range defs {
		if !listed[name] {
			t.Errorf("README's configuration tables leave out %s", name)
		}
	}
}

// fieldDefault matches a field comment's "(VAR, default X".
var fieldDefault = regexp.MustCompile(`([A-Z][A-Z0-9_]+), default "?([^\s;,:)"]+)`)

// TestFieldCommentsStateTheDefaults: the Config field comments, where
// README's meanings come from, state each default as its tag has it.
func TestFieldCommentsStateTheDefaults(t *testing.T) {
	defs := defaults(t)
	stated := map[string]bool{}
	for _, c := range configs {
		dir := strings.TrimPrefix(reflect.TypeOf(c).PkgPath(), "github.com/media-service/media-service/")
		files, err := filepath.Glob(filepath.Join("..", dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(strings.Fields(strings.ReplaceAll(string(b), "//", " ")), " ")
			for _, m := range fieldDefault.FindAllStringSubmatch(text, -1) {
				want, ok := defs[m[1]]
				if !ok || want == "" {
					continue // not a variable, or one whose default the code computes
				}
				stated[m[1]] = true
				if m[2] != want {
					t.Errorf("%s: comment says %s, default %s; its tag says %q", f, m[1], m[2], want)
				}
			}
		}
	}
	for name, def := range defs {
		if def != "" && !stated[name] {
			t.Errorf("no field comment says (%s, default %s)", name, def)
		}
	}
}

// varAfter matches a variable followed by its value: "`VAR` (10 s" or
// "`VAR`, 50" (RUNBOOK's and PROTOCOL's way).
var varAfter = regexp.MustCompile("`([A-Z][A-Z0-9_]*)`(?: \\(|, )([0-9][^ ;,)]*(?: [A-Za-z]+)?)")

// varBefore matches a value followed by its one variable in parentheses,
// a few words apart: "64 KiB (`VAR`)", "1 s to enqueue (`VAR`)"
// (SECURITY.md's way).
var varBefore = regexp.MustCompile("([0-9][0-9,.]*(?: ?[A-Za-z]+)?)(?: [a-z]+){0,4} \\(`([A-Z][A-Z0-9_]*)`\\)")

// portRow matches a row of README's port table: "| 7882/udp | `VAR` |".
var portRow = regexp.MustCompile("\\| ([0-9]+)/(?:tcp|udp) \\| `([A-Z][A-Z0-9_]*)` \\|")

// TestDocsStateTheDefaults: wherever a document puts a number beside a
// variable, it is the variable's default.
func TestDocsStateTheDefaults(t *testing.T) {
	defs := defaults(t)
	checked := 0
	for _, name := range docFiles(t) {
		doc := readDoc(t, name)
		for _, m := range varAfter.FindAllStringSubmatch(doc, -1) {
			if _, known := defs[m[1]]; known || strings.HasPrefix(m[1], "MEDIA_") {
				checkClaim(t, name, m[1], m[2], defs)
				checked++
			}
		}
		for _, m := range varBefore.FindAllStringSubmatch(doc, -1) {
			checkClaim(t, name, m[2], m[1], defs)
			checked++
		}
		for _, m := range portRow.FindAllStringSubmatch(doc, -1) {
			checkClaim(t, name, m[2], m[1], defs)
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("found %d numbers beside a variable in the docs; want the 30 or so they state (patterns broken?)", checked)
	}
}

// claims are the numbers the documents state in prose, away from their
// variable's name: each pattern's first group is the value, which must be
// the variable's default or, for a bound that is not configurable, the
// constant's value (an int or a time.Duration).
var claims = []struct {
	file, pattern, variable string
	constant                any
}{
	{"README.md", `drains within ([0-9]+ seconds)`, "MEDIA_DRAIN_TIMEOUT", nil},
	{"README.md", `above the ([0-9]+ s) drain`, "MEDIA_DRAIN_TIMEOUT", nil},
	{"SECURITY.md", `open at once: ([0-9,]+) per address`, "MEDIA_MAX_CONNS_PER_IP", nil},
	{"SECURITY.md", `headers, and any body, within ([0-9]+ s)`, "MEDIA_HTTP_HEADER_TIMEOUT", nil},
	{"SECURITY.md", `kept-alive connection idle ([0-9]+ s)`, "MEDIA_HTTP_IDLE_TIMEOUT", nil},
	{"SECURITY.md", `rooms ([0-9,]+), per room`, "MEDIA_MAX_ROOMS", nil},
	{"SECURITY.md", `rooms [0-9,]+, per room ([0-9,]+)`, "MEDIA_MAX_ROOM_PARTICIPANTS", nil},
	{"SECURITY.md", `burst ([0-9]+), then`, "MEDIA_OFFER_BURST", nil},
	{"SECURITY.md", `ping ([0-9]+ s), closed`, "MEDIA_WS_PING_INTERVAL", nil},
	{"SECURITY.md", `closed after ([0-9]+ s) silent`, "MEDIA_WS_IDLE_TIMEOUT", nil},
	{"SECURITY.md", `ICE disconnected ([0-9]+ s)`, "MEDIA_ICE_DISCONNECTED_TIMEOUT", nil},
	{"SECURITY.md", `\+ failed ([0-9]+ s)`, "MEDIA_ICE_FAILED_TIMEOUT", nil},
	{"SECURITY.md", `keyframe requests throttled \(([0-9]+ ms)\)`, "MEDIA_PLI_INTERVAL", nil},
	{"SECURITY.md", `([0-9,]+) per identity`, "MEDIA_TURN_MAX_ALLOCATIONS_PER_IDENTITY", nil},
	{"SECURITY.md", `([0-9,]+) per instance; credentials`, "MEDIA_TURN_MAX_ALLOCATIONS", nil},
	{"SECURITY.md", `credentials expire \(([0-9]+ h)\)`, "MEDIA_TURN_CREDENTIAL_TTL", nil},
	{"SECURITY.md", `unauthenticated UDP ([0-9]+)/s`, "MEDIA_TURN_UNAUTH_RATE", nil},
	{"SECURITY.md", `TCP ([0-9,]+) per IP`, "MEDIA_TURN_MAX_CONNS_PER_IP", nil},
	{"SECURITY.md", `per IP, ([0-9,]+) total`, "MEDIA_TURN_MAX_CONNS", nil},
	{"SECURITY.md", `total, idle ([0-9]+ min)`, "MEDIA_TURN_CONN_IDLE_TIMEOUT", nil},
	{"SECURITY.md", `([0-9]+ s) leeway`, "auth.Leeway", auth.Leeway},
	{"SECURITY.md", `≤ ([0-9]+ KiB), identity`, "auth.MaxTokenLen", auth.MaxTokenLen},
	{"SECURITY.md", `identity ≤ ([0-9]+) B`, "auth.MaxIdentityLen", auth.MaxIdentityLen},
	{"SECURITY.md", `room .\[A-Za-z0-9_.-\]\{1,([0-9]+)\}`, "auth.MaxRoomLen", auth.MaxRoomLen},
}

// fileClaims are numbers the documents take from files other than the
// Go configuration: each pattern's first group is the value, and the two
// must agree.
var fileClaims = []struct {
	doc, docPattern, src, srcPattern string
}{
	{"README.md", `SIGTERM with a ([0-9]+ s) kill timeout`, "fly.toml", `kill_timeout = "([0-9]+s)"`},
	{"README.md", `terminationGracePeriodSeconds: ([0-9]+)`, "fly.toml", `kill_timeout = "([0-9]+)s"`},
}

// TestDocsStateTheDeployment: what the documents say of fly.toml is what
// it holds.
func TestDocsStateTheDeployment(t *testing.T) {
	for _, c := range fileClaims {
		src := regexp.MustCompile(c.srcPattern).FindStringSubmatch(readDoc(t, c.src))
		if src == nil {
			t.Errorf("%s no longer matches %q: update the claim with the file", c.src, c.srcPattern)
			continue
		}
		want, ok := parseQuantity(src[1])
		if !ok {
			t.Fatalf("%s: %q is not a quantity", c.src, src[1])
		}
		doc := regexp.MustCompile(c.docPattern).FindStringSubmatch(readDoc(t, c.doc))
		if doc == nil {
			t.Errorf("%s no longer says %q: update the claim with the document", c.doc, c.docPattern)
			continue
		}
		checkQuantity(t, c.doc, c.src, doc[1], want)
	}
}

// TestProseStatesTheDefaults: the numbers stated in prose are the
// defaults. A claim whose phrase is gone fails too: reword the pattern
// with the document.
func TestProseStatesTheDefaults(t *testing.T) {
	defs := defaults(t)
	for _, c := range claims {
		doc := readDoc(t, c.file)
		m := regexp.MustCompile(c.pattern).FindAllStringSubmatch(doc, -1)
		if len(m) == 0 {
			t.Errorf("%s no longer says %q: update the claim with the document", c.file, c.pattern)
			continue
		}
		for _, m := range m {
			switch v := c.constant.(type) {
			case nil:
				checkClaim(t, c.file, c.variable, m[1], defs)
			case time.Duration:
				checkQuantity(t, c.file, c.variable, m[1], quantity{v: float64(v), duration: true})
			case int:
				checkQuantity(t, c.file, c.variable, m[1], quantity{v: float64(v)})
			default:
				t.Fatalf("claim %q: constant of type %T", c.pattern, v)
			}
		}
	}
}
