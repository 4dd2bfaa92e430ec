package deploy

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// requiredEnv is what each kind of container must be given: the variables
// without a default in services/internal/platform (Config.Validate) and
// cdc-relay/internal/config, plus the listen address the healthcheck and
// ports rely on.
var requiredEnv = map[string][]string{
	"service": {"DATABASE_URL", "AMQP_URL", "HTTP_ADDR"},
	"migrate": {"DATABASE_URL", "AMQP_URL"},
	"grant":   {"CDC_RELAY_DATABASE_URL"},
	"relay":   {"CDC_RELAY_DATABASE_URL", "CDC_RELAY_AMQP_URL", "CDC_RELAY_SLOT", "CDC_RELAY_HTTP_ADDR"},
}

// kind tells a compose service's role from its build target and command.
func kind(s types.ServiceConfig) string {
	var target string
	if s.Build != nil {
		target = s.Build.Target
	}
	switch {
	case target == "cdc-relay" && len(s.Command) > 0 && s.Command[0] == "role":
		return "grant"
	case target == "cdc-relay":
		return "relay"
	case target == "order" || target == "stock" || target == "payment":
		if len(s.Command) > 0 && s.Command[0] == "migrate" {
			return "migrate"
		}
		return "service"
	case strings.HasPrefix(s.Image, "postgres:"):
		return "postgres"
	}
	return "other"
}

// loadCompose loads compose.yaml with every profile on (see loadProject).
func loadCompose(t *testing.T) (root string, services types.Services) {
	t.Helper()
	return repoRoot(t), loadProject(t, "*").Services
}

// loadProject loads compose.yaml with compose-go, the library docker
// compose uses (schema, anchors, merges, interpolation, paths resolved
// against deploy/compose), with the given profiles on.
func loadProject(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "compose")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithName("saga"), cli.WithWorkingDirectory(dir), cli.WithOsEnv, cli.WithInterpolation(true),
		cli.WithResolvedPaths(true), cli.WithProfiles(profiles))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose-go refuses deploy/compose/compose.yaml with profiles %v: %v", profiles, err)
	}
	if len(project.Services) == 0 {
		t.Fatal("compose.yaml has no services")
	}
	return project
}

func keys(v any) []string {
	m, _ := asMap(v)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// secretEnv is a service's environment with every X_FILE variable that
// names one of the service's secrets (/run/secrets/<target>) read into X,
// from the secret's file, as the processes read them.
func secretEnv(t *testing.T, p *types.Project, s types.ServiceConfig) map[string]string {
	t.Helper()
	env := envMap(s)
	for k, v := range envMap(s) {
		name, ok := strings.CutSuffix(k, "_FILE")
		if !ok {
			continue
		}
		file := ""
		for _, ref := range s.Secrets {
			target := ref.Target
			if target == "" {
				target = ref.Source
			}
			if !strings.HasPrefix(target, "/") {
				target = "/run/secrets/" + target
			}
			if target == v {
				file = p.Secrets[ref.Source].File
			}
		}
		if file == "" {
			t.Errorf("%s: %s=%s is none of its secrets", s.Name, k, v)
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %s: %v", s.Name, k, err)
			continue
		}
		env[name] = strings.TrimSpace(string(b))
	}
	return env
}

// envMap is a service's environment after interpolation.
func envMap(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

func healthTest(s types.ServiceConfig) string {
	if s.HealthCheck == nil {
		return ""
	}
	return strings.Join(s.HealthCheck.Test, " ")
}

func TestComposeServicesHaveTheirEnvironmentAndDependencies(t *testing.T) {
	project := loadProject(t, "*")
	services := project.Services
	counts := map[string]int{}
	for _, name := range slices.Sorted(maps.Keys(services)) {
		s := services[name]
		k := kind(s)
		counts[k]++
		env := secretEnv(t, project, s)
		for _, v := range requiredEnv[k] {
			if env[v] == "" {
				t.Errorf("%s (%s): %s is not set", name, k, v)
			}
		}

		// depends_on: every target exists, and the condition is one its
		// target can meet.
		for dep, d := range s.DependsOn {
			target, ok := services[dep]
			if !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if healthTest(target) == "" {
					t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if r := target.Restart; r != "no" && r != "" {
					t.Errorf("%s waits for %s to complete, which restarts (%s)", name, dep, r)
				}
			case types.ServiceConditionStarted:
			default:
				t.Errorf("%s depends on %s with condition %q", name, dep, d.Condition)
			}
		}

		// Build: the Dockerfile and its target stage exist.
		if s.Build != nil && s.Build.Dockerfile != "" {
			df := s.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			b, err := os.ReadFile(df)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if target := s.Build.Target; target != "" &&
				!regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+`+regexp.QuoteMeta(target)+`\s*$`).Match(b) {
				t.Errorf("%s: %s has no stage %q", name, df, target)
			}
		}
		// Bind mounts exist.
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", name, v.Source, err)
			}
		}

		switch k {
		case "postgres":
			if cmd := strings.Join(s.Command, " "); !strings.Contains(cmd, "wal_level=logical") {
				t.Errorf("%s: command %s lacks wal_level=logical", name, cmd)
			}
			if healthTest(s) == "" {
				t.Errorf("%s has no healthcheck", name)
			}
		case "service", "migrate":
			checkDatabaseURL(t, project, name, env["DATABASE_URL"], "OWNER")
			checkDep(t, s, name, hostOf(env["DATABASE_URL"]), types.ServiceConditionHealthy)
			if k == "service" {
				checkDep(t, s, name, "rabbitmq", types.ServiceConditionHealthy)
				checkDep(t, s, name, name+"-migrate", types.ServiceConditionCompletedSuccessfully)
				checkListen(t, s, name, env["HTTP_ADDR"])
			}
		case "grant":
			// As the owner, after the migrations made the outbox, for the
			// relay's role.
			checkDatabaseURL(t, project, name, env["CDC_RELAY_DATABASE_URL"], "OWNER")
			svc := strings.TrimSuffix(name, "-relay-grant")
			checkDep(t, s, name, svc+"-migrate", types.ServiceConditionCompletedSuccessfully)
			db := secretEnv(t, project, services[hostOf(env["CDC_RELAY_DATABASE_URL"])])
			if want := []string{"role", "create", "--role", db["SAGA_RELAY_ROLE"]}; !slices.Equal(s.Command, want) {
				t.Errorf("%s: command %v, want %v", name, s.Command, want)
			}
		case "relay":
			checkDatabaseURL(t, project, name, env["CDC_RELAY_DATABASE_URL"], "RELAY")
			checkDep(t, s, name, hostOf(env["CDC_RELAY_DATABASE_URL"]), types.ServiceConditionHealthy)
			checkDep(t, s, name, name+"-grant", types.ServiceConditionCompletedSuccessfully)
			checkDep(t, s, name, "rabbitmq", types.ServiceConditionHealthy)
			checkListen(t, s, name, env["CDC_RELAY_HTTP_ADDR"])
		}
	}
	want := map[string]int{"postgres": 3, "migrate": 3, "grant": 3, "service": 3, "relay": 3}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%d %s containers, want %d", counts[k], k, n)
		}
	}
	if !strings.Contains(services["rabbitmq"].Image, "management") {
		t.Errorf("rabbitmq image %q is not a management image", services["rabbitmq"].Image)
	}
	if envMap(services["kong"])["KONG_DATABASE"] != "off" {
		t.Error("kong is not DB-less (KONG_DATABASE=off)")
	}

	// Each relay has its own database, and the relays' slots differ.
	seen := map[string]string{}
	for name, s := range services {
		if kind(s) != "relay" {
			continue
		}
		env := secretEnv(t, project, s)
		key := hostOf(env["CDC_RELAY_DATABASE_URL"]) + "/" + env["CDC_RELAY_SLOT"]
		if other, dup := seen[key]; dup {
			t.Errorf("%s and %s use the same database and slot %s", name, other, key)
		}
		seen[key] = name
	}
}

// toAny turns the services map into a map[string]any for keys.
func toAny(m map[string]obj) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// checkDatabaseURL: the URL names a Postgres service of this file, its
// database, and the role (SAGA_OWNER_ROLE or SAGA_RELAY_ROLE, as who says)
// its first start makes, with that role's password file.
func checkDatabaseURL(t *testing.T, p *types.Project, name, raw, who string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Errorf("%s: database URL: %v", name, err)
		return
	}
	db, ok := p.Services[u.Hostname()]
	if !ok || kind(db) != "postgres" {
		t.Errorf("%s: database host %q is not a Postgres service", name, u.Hostname())
		return
	}
	env := secretEnv(t, p, db)
	pass, _ := u.User.Password()
	if u.User.Username() != env["SAGA_"+who+"_ROLE"] || pass != env["SAGA_"+who+"_PASSWORD"] || strings.TrimPrefix(u.Path, "/") != env["POSTGRES_DB"] {
		t.Errorf("%s: database URL (user %s) does not match %s's SAGA_%s_ROLE/PASSWORD and POSTGRES_DB", name, u.User.Username(), u.Hostname(), who)
	}
	if u.User.Username() == env["POSTGRES_USER"] {
		t.Errorf("%s connects as %s's superuser %s", name, u.Hostname(), env["POSTGRES_USER"])
	}
}

func checkDep(t *testing.T, s types.ServiceConfig, name, dep, cond string) {
	t.Helper()
	if got := s.DependsOn[dep].Condition; got != cond {
		t.Errorf("%s: depends_on %s condition = %q, want %s", name, dep, got, cond)
	}
}

// checkListen: the healthcheck probes the port the process listens on, and
// a published port maps to it.
func checkListen(t *testing.T, s types.ServiceConfig, name, addr string) {
	t.Helper()
	_, port, ok := strings.Cut(addr, ":")
	if !ok || port == "" {
		t.Errorf("%s: listen address %q has no port", name, addr)
		return
	}
	if test := healthTest(s); !strings.Contains(test, ":"+port+"/readyz") {
		t.Errorf("%s: healthcheck %s does not probe :%s/readyz", name, test, port)
	}
	published := false
	for _, p := range s.Ports {
		if fmt.Sprint(p.Target) == port && p.Published != "" {
			published = true
		}
	}
	if !published {
		t.Errorf("%s: no published port maps to container port %s", name, port)
	}
}

// TestKongConfigMatchesCompose: every Kong upstream is a compose service
// listening on that port, the routes and CORS plugin of the HTTP contract are
// there, and the demo's gateway offers the same paths.
func TestKongConfigMatchesCompose(t *testing.T) {
	root, services := loadCompose(t)
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kong", "kong.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := decodeAll(data)
	if err != nil || len(docs) != 1 {
		t.Fatalf("kong.yaml: %v", err)
	}
	kong := docs[0]
	paths := map[string]string{}
	for _, ks := range kong.objs("services") {
		u, err := url.Parse(ks.str("url"))
		if err != nil {
			t.Errorf("kong service %s: %v", ks.str("name"), err)
			continue
		}
		target, ok := services[u.Hostname()]
		if !ok {
			t.Errorf("kong service %s: upstream host %s is not a compose service", ks.str("name"), u.Hostname())
			continue
		}
		env := envMap(target)
		addr := env["HTTP_ADDR"] + env["CDC_RELAY_HTTP_ADDR"] + env["DASHBOARD_ADDR"]
		if strings.HasPrefix(target.Image, "jaegertracing/all-in-one:") {
			addr = ":16686" // the image's UI port
		}
		if !strings.HasSuffix(addr, ":"+u.Port()) {
			t.Errorf("kong service %s: upstream port %s, but %s listens on %q", ks.str("name"), u.Port(), u.Hostname(), addr)
		}
		for _, r := range ks.objs("routes") {
			for _, p := range r.list("paths") {
				paths[fmt.Sprint(p)] = u.Hostname()
			}
		}
	}
	for _, p := range []string{"/order", "/stock", "/payment", "/relays/order/status", "/relays/stock/status", "/relays/payment/status",
		"/dashboard", "~^/$", "/jaeger"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("kong.yaml has no route %s", p)
		}
	}
	plugins := kong.objs("plugins")
	if len(plugins) != 1 || plugins[0].str("name") != "cors" || plugins[0].str("config", "credentials") != "true" ||
		plugins[0].str("config", "max_age") != "3600" || fmt.Sprint(plugins[0].get("config", "methods")) != "[GET POST]" {
		t.Errorf("kong.yaml plugins = %v, want the global cors plugin", kong.get("plugins"))
	}
	// A browser may send the order API's Idempotency-Key and read its
	// Idempotent-Replayed answer (docs/contracts.md, "HTTP contract").
	if len(plugins) == 1 {
		if h := fmt.Sprint(plugins[0].get("config", "headers")); !strings.Contains(h, "Idempotency-Key") {
			t.Errorf("kong.yaml cors headers %s lack Idempotency-Key", h)
		}
		if h := fmt.Sprint(plugins[0].get("config", "exposed_headers")); !strings.Contains(h, "Idempotent-Replayed") {
			t.Errorf("kong.yaml cors exposed_headers %s lack Idempotent-Replayed", h)
		}
	}
	mounted := false
	for _, v := range services["kong"].Volumes {
		if v.Source == filepath.Join(root, "deploy", "kong", "kong.yaml") && v.Target == "/opt/kong/kong.yaml" && v.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("kong does not mount deploy/kong/kong.yaml read-only: %+v", services["kong"].Volumes)
	}
}

// TestComposeDashboard: the dashboard container listens where its
// healthcheck probes and Kong waits for it.
func TestComposeDashboard(t *testing.T) {
	_, services := loadCompose(t)
	d, ok := services["dashboard"]
	if !ok {
		t.Fatal("compose.yaml has no dashboard service")
	}
	if d.Build == nil || d.Build.Target != "dashboard" {
		t.Errorf("dashboard builds %+v, want target dashboard", d.Build)
	}
	_, port, _ := strings.Cut(envMap(d)["DASHBOARD_ADDR"], ":")
	if port == "" || !strings.Contains(healthTest(d), "127.0.0.1:"+port+"/") {
		t.Errorf("dashboard: DASHBOARD_ADDR port %q, healthcheck %s", port, healthTest(d))
	}
	checkDep(t, services["kong"], "kong", "dashboard", "service_healthy")
}

// Tracing in compose: every service and relay sends its spans to the
// compose Jaeger over OTLP/HTTP, whose UI is served under the path Kong
// routes to it.
func TestComposeTracing(t *testing.T) {
	_, services := loadCompose(t)
	jaeger, ok := services["jaeger"]
	if !ok {
		t.Fatal("no jaeger service")
	}
	jenv := envMap(jaeger)
	if jenv["COLLECTOR_OTLP_ENABLED"] != "true" || jenv["QUERY_BASE_PATH"] != "/jaeger" {
		t.Errorf("jaeger: COLLECTOR_OTLP_ENABLED=%q QUERY_BASE_PATH=%q, want true and /jaeger", jenv["COLLECTOR_OTLP_ENABLED"], jenv["QUERY_BASE_PATH"])
	}
	n := 0
	for name, s := range services {
		if k := kind(s); k != "service" && k != "relay" {
			continue
		}
		n++
		if got := envMap(s)["OTEL_EXPORTER_OTLP_ENDPOINT"]; got != "http://jaeger:4318" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT = %q, want http://jaeger:4318", name, got)
		}
	}
	if n != 6 {
		t.Errorf("%d services and relays, want 6", n)
	}
}
