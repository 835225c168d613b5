// Package envconfig parses configuration structs from environment
// variables with env/v11 and checks their values, naming every bad value
// by its variable. The names come from the fields' env tags, the one
// place each is written, so no package restates them in its checks.
//
// A package's Config validates itself with a Checker:
//
//	func (c Config) Validate() error {
//		v := envconfig.Check("edge", &c)
//		envconfig.AtLeast(v, &c.MaxRooms, 1)
//		if c.IdleTimeout <= c.PingInterval {
//			v.Failf(&c.IdleTimeout, "must exceed %s", v.Var(&c.PingInterval))
//		}
//		return v.Err()
//	}
//
// It reads no environment itself: Parse is given the variables.
package envconfig

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Parse fills cfg, a pointer to a struct with env tags, from environ
// (variable name to value), defaults from envDefault tags. A value that
// does not parse is an error that names its variable and says what was
// expected, in the user's words rather than strconv's; every bad value is
// reported, separated by "; ".
func Parse(cfg any, environ map[string]string) error {
	err := env.ParseWithOptions(cfg, env.Options{Environment: environ})
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	t := reflect.TypeOf(cfg).Elem()
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			msgs = append(msgs, e.Error())
			continue
		}
		name := pe.Name
		if f, ok := t.FieldByName(pe.Name); ok {
			name = tagName(f)
		}
		msgs = append(msgs, fmt.Sprintf("%s: %s", name, notParsed(name, environ[name], pe)))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// notParsed says what is wrong with raw, the value of variable name that
// did not parse as pe.Type.
func notParsed(name, raw string, pe env.ParseError) string {
	if errors.Is(pe.Err, strconv.ErrRange) {
		return fmt.Sprintf("%q is out of range", raw)
	}
	switch k := pe.Type.Kind(); {
	case pe.Type == reflect.TypeFor[time.Duration]():
		return fmt.Sprintf("%q is not a duration (such as 500ms, 30s or 2m)", raw)
	case isInt(k) && (name == "PORT" || strings.HasSuffix(name, "_PORT")):
		return fmt.Sprintf("%q is not a port number (0-65535)", raw)
	case isInt(k):
		return fmt.Sprintf("%q is not a whole number", raw)
	case k == reflect.Float32 || k == reflect.Float64:
		return fmt.Sprintf("%q is not a number", raw)
	case k == reflect.Bool:
		return fmt.Sprintf("%q is not true or false", raw)
	}
	return pe.Err.Error() // a type's own parser (encoding.TextUnmarshaler) speaks for itself
}

func isInt(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Uint64
}

// tagName is the variable named by f's env tag, "" when it has none.
func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	return name
}
