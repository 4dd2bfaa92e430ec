package deploy

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// requiredEnv is what each kind of container must be given: the variables
// without a default in services/internal/platform (Config.Validate) and
// cdc-relay/internal/config, plus the listen address the healthcheck and
// ports rely on.
var requiredEnv = map[string][]string{
	"service": {"DATABASE_URL", "AMQP_URL", "HTTP_ADDR"},
	"migrate": {"DATABASE_URL", "AMQP_URL"},
	"relay":   {"CDC_RELAY_DATABASE_URL", "CDC_RELAY_AMQP_URL", "CDC_RELAY_SLOT", "CDC_RELAY_HTTP_ADDR"},
}

// kind tells a compose service's role from its build target and command.
func kind(s obj) string {
	target := s.str("build", "target")
	switch {
	case target == "cdc-relay":
		return "relay"
	case target == "order" || target == "stock" || target == "payment":
		if s.str("command", 0) == "migrate" {
			return "migrate"
		}
		return "service"
	case strings.HasPrefix(s.str("image"), "postgres:"):
		return "postgres"
	}
	return "other"
}

func loadCompose(t *testing.T) (root string, services map[string]obj) {
	t.Helper()
	root = repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "deploy", "compose", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := decodeAll(data)
	if err != nil || len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents, %v", len(docs), err)
	}
	services = map[string]obj{}
	for _, name := range keys(docs[0].get("services")) {
		m, _ := asMap(docs[0].get("services", name))
		services[name] = obj(m)
	}
	if len(services) == 0 {
		t.Fatal("compose.yaml has no services")
	}
	return root, services
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

// envMap reads environment as a mapping or a list of NAME=value.
func envMap(s obj) map[string]string {
	if m := s.strMap("environment"); m != nil {
		return m
	}
	out := map[string]string{}
	for _, v := range s.list("environment") {
		k, val, _ := strings.Cut(fmt.Sprint(v), "=")
		out[k] = val
	}
	return out
}

func TestComposeServicesHaveTheirEnvironmentAndDependencies(t *testing.T) {
	root, services := loadCompose(t)
	counts := map[string]int{}
	for _, name := range keys(map[string]any(toAny(services))) {
		s := services[name]
		k := kind(s)
		counts[k]++
		env := envMap(s)
		for _, v := range requiredEnv[k] {
			if env[v] == "" {
				t.Errorf("%s (%s): %s is not set", name, k, v)
			}
		}

		// depends_on: every target exists, and the condition is one its
		// target can meet.
		deps, _ := asMap(s.get("depends_on"))
		if deps == nil && len(s.list("depends_on")) > 0 {
			t.Errorf("%s: depends_on is a list; use the long form with conditions", name)
		}
		for dep := range deps {
			target, ok := services[dep]
			if !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
				continue
			}
			cond := s.str("depends_on", dep, "condition")
			switch cond {
			case "service_healthy":
				if target.get("healthcheck", "test") == nil {
					t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
				}
			case "service_completed_successfully":
				if r := target.str("restart"); r != "no" && r != "" {
					t.Errorf("%s waits for %s to complete, which restarts (%s)", name, dep, r)
				}
			case "service_started":
			default:
				t.Errorf("%s depends on %s with condition %q", name, dep, cond)
			}
		}

		// Build: the Dockerfile and its target stage exist.
		if df := s.str("build", "dockerfile"); df != "" {
			ctx := filepath.Join(root, "deploy", "compose", s.str("build", "context"))
			b, err := os.ReadFile(filepath.Join(ctx, df))
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if target := s.str("build", "target"); target != "" &&
				!regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+`+regexp.QuoteMeta(target)+`\s*$`).Match(b) {
				t.Errorf("%s: %s has no stage %q", name, df, target)
			}
		}
		// Bind mounts exist.
		for _, v := range s.list("volumes") {
			src, _, _ := strings.Cut(fmt.Sprint(v), ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(root, "deploy", "compose", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}

		switch k {
		case "postgres":
			if cmd := fmt.Sprint(s.get("command")); !strings.Contains(cmd, "wal_level=logical") {
				t.Errorf("%s: command %s lacks wal_level=logical", name, cmd)
			}
			if s.get("healthcheck", "test") == nil {
				t.Errorf("%s has no healthcheck", name)
			}
		case "service", "migrate":
			checkDatabaseURL(t, services, name, env["DATABASE_URL"])
			checkDep(t, s, name, hostOf(env["DATABASE_URL"]), "service_healthy")
			if k == "service" {
				checkDep(t, s, name, "rabbitmq", "service_healthy")
				checkDep(t, s, name, name+"-migrate", "service_completed_successfully")
				checkListen(t, s, name, env["HTTP_ADDR"])
			}
		case "relay":
			checkDatabaseURL(t, services, name, env["CDC_RELAY_DATABASE_URL"])
			checkDep(t, s, name, hostOf(env["CDC_RELAY_DATABASE_URL"]), "service_healthy")
			checkDep(t, s, name, "rabbitmq", "service_healthy")
			checkListen(t, s, name, env["CDC_RELAY_HTTP_ADDR"])
		}
	}
	want := map[string]int{"postgres": 3, "migrate": 3, "service": 3, "relay": 3}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%d %s containers, want %d", counts[k], k, n)
		}
	}
	if !strings.Contains(services["rabbitmq"].str("image"), "management") {
		t.Errorf("rabbitmq image %q is not a management image", services["rabbitmq"].str("image"))
	}
	if services["kong"].str("environment", "KONG_DATABASE") != "off" {
		t.Error("kong is not DB-less (KONG_DATABASE=off)")
	}

	// Each relay has its own database, and the relays' slots differ.
	seen := map[string]string{}
	for name, s := range services {
		if kind(s) != "relay" {
			continue
		}
		env := envMap(s)
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

// checkDatabaseURL: the URL names a Postgres service of this file with the
// same database, user and password.
func checkDatabaseURL(t *testing.T, services map[string]obj, name, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Errorf("%s: database URL %q: %v", name, raw, err)
		return
	}
	db, ok := services[u.Hostname()]
	if !ok || kind(db) != "postgres" {
		t.Errorf("%s: database host %q is not a Postgres service", name, u.Hostname())
		return
	}
	env := envMap(db)
	pass, _ := u.User.Password()
	if u.User.Username() != env["POSTGRES_USER"] || pass != env["POSTGRES_PASSWORD"] || strings.TrimPrefix(u.Path, "/") != env["POSTGRES_DB"] {
		t.Errorf("%s: database URL %q does not match %s's POSTGRES_USER/PASSWORD/DB", name, raw, u.Hostname())
	}
}

func checkDep(t *testing.T, s obj, name, dep, cond string) {
	t.Helper()
	if got := s.str("depends_on", dep, "condition"); got != cond {
		t.Errorf("%s: depends_on %s condition = %q, want %s", name, dep, got, cond)
	}
}

// checkListen: the healthcheck probes the port the process listens on, and
// a published port maps to it.
func checkListen(t *testing.T, s obj, name, addr string) {
	t.Helper()
	_, port, ok := strings.Cut(addr, ":")
	if !ok || port == "" {
		t.Errorf("%s: listen address %q has no port", name, addr)
		return
	}
	test := fmt.Sprint(s.get("healthcheck", "test"))
	if !strings.Contains(test, ":"+port+"/readyz") {
		t.Errorf("%s: healthcheck %s does not probe :%s/readyz", name, test, port)
	}
	published := false
	for _, p := range s.list("ports") {
		if strings.HasSuffix(fmt.Sprint(p), ":"+port) {
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
		"/dashboard", "~^/$"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("kong.yaml has no route %s", p)
		}
	}
	plugins := kong.objs("plugins")
	if len(plugins) != 1 || plugins[0].str("name") != "cors" || plugins[0].str("config", "credentials") != "true" ||
		plugins[0].str("config", "max_age") != "3600" || fmt.Sprint(plugins[0].get("config", "methods")) != "[GET POST]" {
		t.Errorf("kong.yaml plugins = %v, want the global cors plugin", kong.get("plugins"))
	}
	if !slices.Contains(services["kong"].list("volumes"), any("../kong/kong.yaml:/opt/kong/kong.yaml:ro")) {
		t.Errorf("kong does not mount deploy/kong/kong.yaml: %v", services["kong"].list("volumes"))
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
	if d.str("build", "target") != "dashboard" {
		t.Errorf("dashboard builds target %q", d.str("build", "target"))
	}
	_, port, _ := strings.Cut(envMap(d)["DASHBOARD_ADDR"], ":")
	if port == "" || !strings.Contains(fmt.Sprint(d.get("healthcheck", "test")), "127.0.0.1:"+port+"/") {
		t.Errorf("dashboard: DASHBOARD_ADDR port %q, healthcheck %v", port, d.get("healthcheck", "test"))
	}
	checkDep(t, services["kong"], "kong", "dashboard", "service_healthy")
}
