package edge

import "testing"

// TestCapacityDerivation: the session capacity and MEDIA_MAX_SESSIONS's
// default follow the measured figures and GOMAXPROCS; unmeasured, the
// instance advertises no capacity and keeps the fixed default.
func TestCapacityDerivation(t *testing.T) {
	m := capacity{one: 40, two: 70}
	tests := []struct {
		c                 capacity
		procs             int
		sessions, maxSess int
	}{
		{m, 1, 40, 32},
		{m, 2, 70, 56},
		{m, 4, 140, 112}, // the two-core figure per core
		{m, 0, 40, 32},   // GOMAXPROCS is at least 1; read 0 as 1
		{capacity{one: 1, two: 1}, 1, 1, 1},
		{capacity{}, 1, 0, unmeasuredMaxSessions},
		{capacity{}, 2, 0, unmeasuredMaxSessions},
		{capacity{one: 40}, 2, 0, unmeasuredMaxSessions}, // half measured is unmeasured
	}
	for _, tt := range tests {
		if got := tt.c.sessions(tt.procs); got != tt.sessions {
			t.Errorf("%+v.sessions(%d) = %d; want %d", tt.c, tt.procs, got, tt.sessions)
		}
		if got := tt.c.maxSessions(tt.procs); got != tt.maxSess {
			t.Errorf("%+v.maxSessions(%d) = %d; want %d", tt.c, tt.procs, got, tt.maxSess)
		}
	}
}

// TestDeriveDefaults: an unset MEDIA_MAX_SESSIONS becomes the derived
// default for the GOMAXPROCS given (1 and 2 differ), below MEDIA_MAX_CONNS,
// and validates; a configured one stays.
func TestDeriveDefaults(t *testing.T) {
	m := capacity{one: 40, two: 70}
	tests := []struct {
		name     string
		set      int // MEDIA_MAX_SESSIONS; 0 unset
		maxConns int
		procs    int
		want     int
	}{
		{"one core", 0, 4096, 1, 32},
		{"two cores", 0, 4096, 2, 56},
		{"configured", 7, 4096, 2, 7},
		{"kept below MEDIA_MAX_CONNS", 0, 50, 2, 49},
		{"MEDIA_MAX_CONNS off", 0, 0, 2, 56},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaultConfig(t)
			c.MaxSessions, c.MaxConns = tt.set, tt.maxConns
			c.deriveDefaults(m, tt.procs)
			if c.MaxSessions != tt.want {
				t.Errorf("deriveDefaults(%d procs) MaxSessions = %d; want %d", tt.procs, c.MaxSessions, tt.want)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate(derived) = %v; want nil", err)
			}
		})
	}
	// The build's own figures, whatever they are, give a valid default.
	for procs := 1; procs <= 64; procs *= 2 {
		c := defaultConfig(t)
		c.DeriveDefaults(procs)
		if err := c.Validate(); err != nil || c.MaxSessions < 1 || c.MaxSessions != min(fanoutCapacity().maxSessions(procs), c.MaxConns-1) {
			t.Errorf("DeriveDefaults(%d) = MaxSessions %d, Validate %v; want the measured default, valid", procs, c.MaxSessions, err)
		}
	}
}
