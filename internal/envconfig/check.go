package envconfig

import (
	"cmp"
	"fmt"
	"reflect"
	"strings"
)

// Checker checks the fields of one configuration struct and keeps the
// first failure, as "pkg: VARIABLE must ...". Checks after a failure do
// nothing, so a Validate method reads as a list of rules.
type Checker struct {
	pkg string
	cfg reflect.Value // the struct, addressable
	err error
}

// Check starts checking *cfg, a struct whose fields carry env tags; pkg
// prefixes the error ("edge", "turn"). Pass the fields to check as
// pointers into *cfg.
func Check(pkg string, cfg any) *Checker {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("envconfig: Check(%T): want a pointer to a struct", cfg))
	}
	return &Checker{pkg: pkg, cfg: v.Elem()}
}

// Var is the environment variable of field, a pointer to a field of the
// struct being checked (see Name).
func (v *Checker) Var(field any) string { return name(v.cfg, field) }

// Name is the environment variable of field, a pointer to a field of
// *cfg, for errors outside validation (a port that cannot be bound). It
// panics if field is not one, or has no env tag: that is a mistake in
// the caller's code, not in a configuration.
func Name(cfg, field any) string {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("envconfig: Name(%T): want a pointer to a struct", cfg))
	}
	return name(v.Elem(), field)
}

// name is the variable of field, a pointer into the addressable struct
// cfg.
func name(cfg reflect.Value, field any) string {
	p := reflect.ValueOf(field)
	if p.Kind() != reflect.Pointer {
		panic(fmt.Sprintf("envconfig: %T: want a pointer to a field", field))
	}
	t := cfg.Type()
	for i := range t.NumField() {
		f := cfg.Field(i)
		if f.Type() == p.Type().Elem() && f.Addr().Pointer() == p.Pointer() {
			if name := tagName(t.Field(i)); name != "" {
				return name
			}
			panic(fmt.Sprintf("envconfig: field %s.%s has no env tag", t, t.Field(i).Name))
		}
	}
	panic(fmt.Sprintf("envconfig: %T: not a field of the %s", field, t))
}

// Failf records that field's value is bad, unless a check failed before.
// The message follows the variable's name: start format with what the
// value must be ("must be at least %d, got %d"), with a colon to append
// a cause (": %w"), or with "=" to quote the value ("=%q is not ...").
func (v *Checker) Failf(field any, format string, args ...any) {
	if v.err != nil {
		return
	}
	sep := " "
	if strings.HasPrefix(format, ":") || strings.HasPrefix(format, "=") {
		sep = ""
	}
	prefix := v.pkg + ": " + strings.ReplaceAll(v.Var(field), "%", "%%") + sep
	v.err = fmt.Errorf(prefix+format, args...)
}

// rule records a failure of field unless ok. It looks the variable up
// even when ok, so any run of a Validate with good values (every test's)
// proves each rule's field has a name: a mistake there panics in tests,
// not at an operator's bad value.
func (v *Checker) rule(field any, ok bool, format string, args ...any) {
	v.Var(field)
	if !ok {
		v.Failf(field, format, args...)
	}
}

// Err is the first failure, or nil when every check passed.
func (v *Checker) Err() error { return v.err }

// number is what the sign rules compare: counts, sizes, rates and
// durations (whose underlying type is int64).
type number interface {
	~int | ~int64 | ~float64
}

// AtLeast checks *field >= min.
func AtLeast[T number](v *Checker, field *T, min T) {
	v.rule(field, *field >= min, "must be at least %v, got %v", min, *field)
}

// Positive checks *field > 0.
func Positive[T number](v *Checker, field *T) {
	v.rule(field, *field > 0, "must be positive, got %v", *field)
}

// NotNegative checks *field >= 0.
func NotNegative[T number](v *Checker, field *T) {
	v.rule(field, *field >= 0, "must not be negative, got %v", *field)
}

// OffOrMore checks *field >= 0 for a bound that 0 turns off.
func OffOrMore(v *Checker, field *int) {
	v.rule(field, *field >= 0, "must be 0 (off) or more, got %d", *field)
}

// Between checks lo <= *field <= hi.
func Between[T cmp.Ordered](v *Checker, field *T, lo, hi T) {
	v.rule(field, *field >= lo && *field <= hi, "must be from %v to %v, got %v", lo, hi, *field)
}

// Port checks that *field is a port number, 0 included (the system picks
// a free port); with offOK, -1 (off) too.
func Port(v *Checker, field *int, offOK bool) {
	p, or := *field, ""
	if offOK {
		or = "-1 (off) or "
	}
	v.rule(field, p >= 0 && p <= 65535 || offOK && p == -1, "must be %sa port from 0 to 65535, got %d", or, p)
}
