package server

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/pgdb"
	"github.com/cairn-es/cairn/projection"
)

// The operations endpoints need no authentication.
const (
	HealthPath = "/healthz"
	ReadyPath  = "/readyz"
)

func (s *Server) mountOps() {
	s.echo.GET(HealthPath, func(c echo.Context) error {
		c.Set(quietKey, true)
		return c.JSONBlob(http.StatusOK, []byte(`{"status":"ok"}`))
	})
	s.echo.GET(ReadyPath, func(c echo.Context) error {
		c.Set(quietKey, true)
		rep := s.Readiness(c.Request().Context())
		status := http.StatusOK
		if rep.Status != "ready" {
			status = http.StatusServiceUnavailable
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return writeJSON(c, status, rep)
	})
	s.addPath(HealthPath)
	s.addPath(ReadyPath)
	s.mountMetrics()
}

// ReadinessReport is the body of /readyz. Status is "ready" (200) or
// "unready" or "shutting_down" (503). It names what was checked and never
// includes error messages: the reasons are logged.
type ReadinessReport struct {
	Status      string             `json:"status"`
	Database    *CheckResult       `json:"database,omitempty"`
	Migrations  *MigrationsCheck   `json:"migrations,omitempty"`
	Projections *ProjectionsReport `json:"projections,omitempty"`
}

// CheckResult is one check's outcome: "ok", or what is wrong.
type CheckResult struct {
	Status string `json:"status"`
}

// MigrationsCheck reports the event store schema's migration state:
// "ok", "pending" or "unknown".
type MigrationsCheck struct {
	Status  string `json:"status"`
	Schema  string `json:"schema"`
	Current int32  `json:"current"`
	Latest  int32  `json:"latest"`
}

// ProjectionsReport lists the registered projections; Status is "ok",
// "unhealthy" (some failed or lag too much) or "unknown" (their status
// could not be read).
type ProjectionsReport struct {
	Status string             `json:"status"`
	MaxLag int64              `json:"max_lag_events"`
	Items  []ProjectionHealth `json:"items"`
}

// ProjectionHealth is one projection's part of the readiness report:
// Status is "ok", "failed" or "lagging".
type ProjectionHealth struct {
	Name        string           `json:"name"`
	Status      string           `json:"status"`
	State       projection.State `json:"state"`
	Lag         int64            `json:"lag_events"`
	DeadLetters int64            `json:"dead_letters"`
}

// Readiness checks what /readyz reports: the database answers (with
// Config.Health), its schema is fully migrated, and every registered
// projection (with Config.Projections) is not failed and lags by at most
// Config.ReadyMaxLag events. A paused projection is ready while its lag
// allows. While the server shuts down it is not ready.
func (s *Server) Readiness(ctx context.Context) ReadinessReport {
	if s.draining.Load() {
		return ReadinessReport{Status: "shutting_down"}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
	defer cancel()
	rep := ReadinessReport{Status: "ready"}
	fail := func() { rep.Status = "unready" }
	dbOK := true
	if h := s.health; h != nil {
		rep.Database = &CheckResult{Status: "ok"}
		rep.Migrations = &MigrationsCheck{Status: "ok", Schema: h.db.Schema}
		if err := h.db.Pool.Ping(ctx); err != nil {
			s.log.Warn("cairn: readiness: database unreachable", "error", err)
			rep.Database.Status, rep.Migrations.Status, dbOK = "unavailable", "unknown", false
			fail()
		} else if st, err := h.migrationStatus(ctx); err != nil {
			s.log.Warn("cairn: readiness: reading the migration status failed", "error", err)
			rep.Migrations.Status = "unknown"
			fail()
		} else {
			rep.Migrations.Current, rep.Migrations.Latest = st.Current, st.Latest
			if !st.UpToDate() {
				rep.Migrations.Status = "pending"
				fail()
			}
		}
	}
	if s.manager != nil {
		pr := &ProjectionsReport{Status: "ok", MaxLag: s.cfg.ReadyMaxLag, Items: []ProjectionHealth{}}
		rep.Projections = pr
		var all []projection.Status
		var err error
		if dbOK {
			all, err = s.manager.StatusAll(ctx)
		}
		if !dbOK || err != nil {
			if err != nil {
				s.log.Warn("cairn: readiness: reading projection status failed", "error", err)
			}
			pr.Status = "unknown"
			fail()
			return rep
		}
		for _, st := range all {
			if !st.Registered {
				continue // another application's, or a removed one
			}
			h := ProjectionHealth{Name: st.Name, Status: "ok", State: st.State, Lag: st.Lag, DeadLetters: st.DeadLetters}
			switch {
			case st.State == projection.Failed:
				h.Status = "failed"
			case st.Lag > s.cfg.ReadyMaxLag:
				h.Status = "lagging"
			}
			if h.Status != "ok" {
				pr.Status = "unhealthy"
				fail()
			}
			pr.Items = append(pr.Items, h)
		}
	}
	return rep
}

// health is the database /readyz checks (Config.Health).
type health struct {
	db   pgdb.DB
	sets []migrations.Set
}

func (h *health) migrationStatus(ctx context.Context) (migrations.Status, error) {
	conn, err := h.db.Pool.Acquire(ctx)
	if err != nil {
		return migrations.Status{}, err
	}
	defer conn.Release()
	return migrations.CurrentStatus(ctx, conn.Conn(), h.db.Schema, h.sets...)
}
