package telemetry_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/media-service/media-service/internal/testenv"
)

// lookTool finds an ops tool (promtool, prometheus) on PATH. Without it the
// test is skipped with a note, except under CI=true, where a missing tool
// fails the run: CI must install Debian's prometheus package.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	testenv.Missing(t, "%s not found on PATH: install Debian's prometheus package (apt-get install -y prometheus)", name)
	return ""
}

// TestAlertRules checks alerts.yml with promtool and runs its unit tests in
// alerts_test.yml (every alert fires when it should and not before).
func TestAlertRules(t *testing.T) {
	promtool := lookTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		out, err := exec.CommandContext(t.Context(), promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// alertNames are the alerts alerts.yml defines, in file order.
func alertNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatalf("read alerts.yml: %v", err)
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert:"); ok {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names
}

// TestEveryAlertIsUnitTested reads alerts_test.yml's evaluation blocks and
// requires, for every alert, one block where it fires and one where it must
// stay quiet, so a new rule cannot land untested.
func TestEveryAlertIsUnitTested(t *testing.T) {
	b, err := os.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatalf("read alerts_test.yml: %v", err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, block := range strings.Split(string(b), "- eval_time:")[1:] {
		_, rest, _ := strings.Cut(block, "alertname:")
		name := strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0])
		if strings.Contains(block, "exp_alerts: []") {
			quiet[name] = true
		} else if strings.Contains(block, "exp_labels:") {
			fires[name] = true
		}
	}
	names := alertNames(t)
	if len(names) == 0 {
		t.Fatal("alerts.yml defines no alert")
	}
	for _, name := range names {
		if !fires[name] || !quiet[name] {
			t.Errorf("alerts_test.yml: %s has a firing case %v and a quiet case %v; want both", name, fires[name], quiet[name])
		}
	}
}

// TestEveryAlertHasARunbookSection checks that each alert's runbook_url
// points at a section of RUNBOOK.md that exists, with summary and
// description annotations beside it.
func TestEveryAlertHasARunbookSection(t *testing.T) {
	book, err := os.ReadFile("RUNBOOK.md")
	if err != nil {
		t.Fatalf("read RUNBOOK.md: %v", err)
	}
	anchors := map[string]bool{}
	for line := range strings.Lines(string(book)) {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	rules, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatalf("read alerts.yml: %v", err)
	}
	for _, rule := range strings.Split(string(rules), "- alert:")[1:] {
		name := strings.TrimSpace(strings.SplitN(rule, "\n", 2)[0])
		want := "RUNBOOK.md#" + strings.ToLower(name) + `"`
		if !strings.Contains(rule, want) {
			t.Errorf("%s: runbook_url does not end in %s", name, want)
		}
		if !anchors[strings.ToLower(name)] {
			t.Errorf("%s: RUNBOOK.md has no section \"## %s\"", name, name)
		}
		for _, key := range []string{"summary:", "description:"} {
			if !strings.Contains(rule, key) {
				t.Errorf("%s: no %s annotation", name, strings.TrimSuffix(key, ":"))
			}
		}
	}
}
