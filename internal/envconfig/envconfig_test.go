package envconfig

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Port     int           `env:"PORT" envDefault:"8080"`
	ICEPort  int           `env:"MEDIA_ICE_TCP_PORT" envDefault:"7881"`
	Sessions int           `env:"MEDIA_MAX_SESSIONS" envDefault:"500"`
	Drain    time.Duration `env:"MEDIA_DRAIN_TIMEOUT" envDefault:"30s"`
	Rate     float64       `env:"MEDIA_WS_MESSAGE_RATE" envDefault:"50"`
	TURN     bool          `env:"MEDIA_TURN_ENABLED" envDefault:"true"`
	Unit     unit          `env:"MEDIA_UNIT" envDefault:"ok"`
	untagged int
}

// unit parses only "ok", with its own error.
type unit struct{}

func (u *unit) UnmarshalText(b []byte) error {
	if string(b) != "ok" {
		return errors.New(`want "ok"`)
	}
	return nil
}

// TestParseNamesVariable: a value that does not parse is reported with
// its variable and what was wanted, in words rather than strconv's.
func TestParseNamesVariable(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PORT": "notaport"}, `PORT: "notaport" is not a port number (0-65535)`},
		{map[string]string{"MEDIA_ICE_TCP_PORT": "tcp"}, `MEDIA_ICE_TCP_PORT: "tcp" is not a port number (0-65535)`},
		{map[string]string{"MEDIA_MAX_SESSIONS": "1.5"}, `MEDIA_MAX_SESSIONS: "1.5" is not a whole number`},
		{map[string]string{"MEDIA_MAX_SESSIONS": "99999999999999999999"}, `MEDIA_MAX_SESSIONS: "99999999999999999999" is out of range`},
		{map[string]string{"MEDIA_DRAIN_TIMEOUT": "30"}, `MEDIA_DRAIN_TIMEOUT: "30" is not a duration (such as 500ms, 30s or 2m)`},
		{map[string]string{"MEDIA_WS_MESSAGE_RATE": "fast"}, `MEDIA_WS_MESSAGE_RATE: "fast" is not a number`},
		{map[string]string{"MEDIA_TURN_ENABLED": "yes"}, `MEDIA_TURN_ENABLED: "yes" is not true or false`},
		{map[string]string{"MEDIA_UNIT": "no"}, `MEDIA_UNIT: want "ok"`},
		{map[string]string{"PORT": "x", "MEDIA_TURN_ENABLED": "y"}, `PORT: "x" is not a port number (0-65535); MEDIA_TURN_ENABLED: "y" is not true or false`},
	}
	for _, tt := range tests {
		var c testConfig
		err := Parse(&c, tt.env)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%v) = %v; want %s", tt.env, err, tt.want)
		}
	}
	var c testConfig
	if err := Parse(&c, map[string]string{"PORT": "0"}); err != nil || c.Port != 0 || c.Sessions != 500 {
		t.Errorf("Parse(PORT=0) = %v, Port %d, Sessions %d; want nil, 0, 500", err, c.Port, c.Sessions)
	}
}

// TestChecker: each rule names the variable of the field it checks, the
// first failure is kept, and a passing config has no error.
func TestChecker(t *testing.T) {
	tests := []struct {
		edit func(*testConfig)
		want string
	}{
		{func(c *testConfig) {}, ""},
		{func(c *testConfig) { c.Port = 70000 }, "test: PORT must be a port from 0 to 65535, got 70000"},
		{func(c *testConfig) { c.ICEPort = -1 }, ""},
		{func(c *testConfig) { c.ICEPort = -2 }, "test: MEDIA_ICE_TCP_PORT must be -1 (off) or a port from 0 to 65535, got -2"},
		{func(c *testConfig) { c.Sessions = 0 }, "test: MEDIA_MAX_SESSIONS must be at least 1, got 0"},
		{func(c *testConfig) { c.Drain = 0 }, "test: MEDIA_DRAIN_TIMEOUT must be positive, got 0s"},
		{func(c *testConfig) { c.Rate = -1 }, "test: MEDIA_WS_MESSAGE_RATE must not be negative, got -1"},
		{func(c *testConfig) { c.Sessions, c.Drain = 0, 0 }, "test: MEDIA_MAX_SESSIONS must be at least 1, got 0"},
		{func(c *testConfig) { c.Drain = time.Hour }, "test: MEDIA_DRAIN_TIMEOUT must be from 1s to 1m0s, got 1h0m0s"},
		{func(c *testConfig) { c.Port = 80 }, "test: PORT (80) must exceed MEDIA_ICE_TCP_PORT (7881)"},
	}
	for _, tt := range tests {
		c := testConfig{Port: 9000, ICEPort: 7881, Sessions: 500, Drain: 30 * time.Second, Rate: 50}
		tt.edit(&c)
		v := Check("test", &c)
		Port(v, &c.Port, false)
		Port(v, &c.ICEPort, true)
		AtLeast(v, &c.Sessions, 1)
		Positive(v, &c.Drain)
		NotNegative(v, &c.Rate)
		Between(v, &c.Drain, time.Second, time.Minute)
		if c.Port < c.ICEPort {
			v.Failf(&c.Port, "(%d) must exceed %s (%d)", c.Port, v.Var(&c.ICEPort), c.ICEPort)
		}
		got := ""
		if err := v.Err(); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Err() = %q; want %q", got, tt.want)
		}
	}
}

// TestFailfWraps: a format starting with a colon appends a cause that
// errors.Is still finds.
func TestFailfWraps(t *testing.T) {
	var c testConfig
	cause := errors.New("bad prefix")
	v := Check("test", &c)
	v.Failf(&c.Unit, ": %w", cause)
	if err := v.Err(); !errors.Is(err, cause) || err.Error() != "test: MEDIA_UNIT: bad prefix" {
		t.Errorf("Err() = %v; want test: MEDIA_UNIT: bad prefix, wrapping the cause", err)
	}
}

// TestVarMisuse: asking for a field that is not one of the struct's, or
// has no tag, is a programming error and panics with a message naming
// what was passed.
func TestVarMisuse(t *testing.T) {
	var c, other testConfig
	v := Check("test", &c)
	for name, f := range map[string]any{
		"other struct's field": &other.Port,
		"untagged field":       &c.untagged,
		"not a pointer":        c.Port,
		"the struct itself":    &c,
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "envconfig:") {
					t.Errorf("Var(%s) recovered %v; want an envconfig panic", name, r)
				}
			}()
			v.Var(f)
		}()
	}
}

// TestRuleNamesFieldEvenWhenGood: a rule given a field that is not the
// checked struct's panics with a good value too, so a mistake shows in
// any test rather than at an operator's bad value.
func TestRuleNamesFieldEvenWhenGood(t *testing.T) {
	var c, other testConfig
	other.Sessions = 5
	defer func() {
		if r := recover(); r == nil {
			t.Error("AtLeast on another struct's field with a good value did not panic")
		}
	}()
	AtLeast(Check("test", &c), &other.Sessions, 1)
}

// TestName: the variable of a field, outside any Checker.
func TestName(t *testing.T) {
	var c testConfig
	if got := Name(&c, &c.ICEPort); got != "MEDIA_ICE_TCP_PORT" {
		t.Errorf("Name(&c, &c.ICEPort) = %q; want MEDIA_ICE_TCP_PORT", got)
	}
}
