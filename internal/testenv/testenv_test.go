package testenv

import (
	"testing"
)

// recorder is a testing.TB that remembers how Missing ended the test
// instead of ending the real one. Skip and Fatal stop at runtime.Goexit in
// a real test; here they only record, which is all Missing relies on.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skip(...any)           { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

// TestMissing: a missing capability skips locally and fails under CI=true.
func TestMissing(t *testing.T) {
	for _, tt := range []struct {
		ci                    string
		wantSkipped, wantFail bool
	}{
		{"", true, false},
		{"false", true, false},
		{"true", false, true},
	} {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			Missing(r, "no %s", "thing")
			if r.skipped != tt.wantSkipped || r.failed != tt.wantFail {
				t.Errorf("Missing() with CI=%q: skipped %v, failed %v; want %v, %v",
					tt.ci, r.skipped, r.failed, tt.wantSkipped, tt.wantFail)
			}
		})
	}
}

func TestParseLoad(t *testing.T) {
	for _, tt := range []struct {
		in     string
		want   float64
		wantOK bool
	}{
		{"24.07 21.55 12.75 9/1234 5678\n", 24.07, true},
		{"0.00 0.01 0.05 1/80 1", 0, true},
		{"", 0, false},
		{"busy 1 2", 0, false},
	} {
		if got, ok := parseLoad(tt.in); got != tt.want || ok != tt.wantOK {
			t.Errorf("parseLoad(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
