package deploy

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// helmVersion is installed with `go install` when no helm is found: the
// module proxy is all a fresh CI machine needs (about three minutes).
const helmVersion = "v3.22.0"

// helmBinary finds or builds helm (see toolBinary).
func helmBinary(t *testing.T) string {
	t.Helper()
	return toolBinary(t, "helm", "SAGA_HELM", "helm.sh/helm/v3/cmd/helm", helmVersion)
}

// toolBinary finds the command name: $envVar, then PATH, then
// <repo>/.demo/tools and $(go env GOPATH)/bin; else it builds pkg@version
// into <repo>/.demo/tools with go install (under -short it skips instead).
func toolBinary(t *testing.T, name, envVar, pkg, version string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	root := repoRoot(t)
	tools := filepath.Join(root, ".demo", "tools")
	candidates := []string{filepath.Join(tools, name)}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			candidates = append(candidates, filepath.Join(dir, "bin", name))
		}
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	if testing.Short() {
		t.Skipf("%s not found and -short: not building it", name)
	}
	t.Logf("%s not found: go install %s@%s into %s (a few minutes)", name, pkg, version, tools)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", pkg+"@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+tools, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s %s: %v\n%s", pkg, version, err, out)
	}
	return filepath.Join(tools, name)
}

// render runs helm template for one service's values file and extra --set
// flags and returns the objects by kind and name.
func render(t *testing.T, helm, service string, sets ...string) map[string]obj {
	t.Helper()
	objs, err := renderErr(t, helm, service, sets...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func renderErr(t *testing.T, helm, service string, sets ...string) (map[string]obj, error) {
	t.Helper()
	root := repoRoot(t)
	args := []string{"template", service, filepath.Join(root, "deploy", "helm", "saga"),
		"-f", filepath.Join(root, "deploy", "k8s", "services", service, "values.yaml")}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := exec.Command(helm, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	docs, err := decodeAll(out)
	if err != nil {
		return nil, fmt.Errorf("decode helm output: %v\n%s", err, out)
	}
	objs := map[string]obj{}
	for _, d := range docs {
		key := d.str("kind") + "/" + d.str("metadata", "name")
		if _, dup := objs[key]; dup {
			return nil, fmt.Errorf("%s rendered twice", key)
		}
		objs[key] = d
	}
	return objs, nil
}

var servicePorts = map[string]int{"order": 8000, "stock": 8001, "payment": 8002}

func TestHelmChartBothRelayModes(t *testing.T) {
	helm := helmBinary(t)
	for _, svc := range []string{"order", "stock", "payment"} {
		for _, mode := range []string{"sidecar", "deployment"} {
			t.Run(svc+"/"+mode, func(t *testing.T) {
				objs := render(t, helm, svc, "relay.mode="+mode)
				checkChart(t, objs, svc, mode)
			})
		}
	}
}

func TestHelmChartRejectsUnknownRelayMode(t *testing.T) {
	helm := helmBinary(t)
	_, err := renderErr(t, helm, "order", "relay.mode=daemonset")
	if err == nil || !strings.Contains(err.Error(), "relay.mode") {
		t.Fatalf("relay.mode=daemonset rendered, or failed without naming relay.mode: %v", err)
	}
}

func TestHelmChartExternalDatabase(t *testing.T) {
	helm := helmBinary(t)
	objs := render(t, helm, "order", "postgres.enabled=false",
		"database.url=postgres://app@db.example:5432/orders", "database.relayUrl=postgres://relay@db.example:5432/orders")
	for key := range objs {
		if strings.HasPrefix(key, "Deployment/order-db") || strings.HasPrefix(key, "Service/order-db") {
			t.Errorf("%s rendered with postgres.enabled=false", key)
		}
	}
	if _, err := renderErr(t, helm, "order", "postgres.enabled=false"); err == nil {
		t.Error("postgres.enabled=false without database.url rendered")
	}
}

func checkChart(t *testing.T, objs map[string]obj, svc, mode string) {
	api := mustObj(t, objs, "Deployment/"+svc+"-deployment")
	db := mustObj(t, objs, "Deployment/"+svc+"-db-deployment")
	relayDep, hasRelayDep := objs["Deployment/"+svc+"-relay-deployment"]

	// Containers of each pod.
	apiContainers := containerNames(api)
	switch mode {
	case "sidecar":
		// A native sidecar: an init container that keeps running, so it
		// starts before the service and stops after it.
		if !slices.Equal(apiContainers, []string{svc}) {
			t.Errorf("sidecar: %s-deployment containers = %v, want [%s] (the relay is a native sidecar)", svc, apiContainers, svc)
		}
		if hasRelayDep {
			t.Errorf("sidecar: a relay Deployment was rendered")
		}
	case "deployment":
		if !slices.Equal(apiContainers, []string{svc}) {
			t.Errorf("deployment: %s-deployment containers = %v, want [%s]", svc, apiContainers, svc)
		}
		if !hasRelayDep {
			t.Fatalf("deployment: no Deployment/%s-relay-deployment", svc)
		}
		if got := relayDep.str("spec", "replicas"); got != "1" {
			t.Errorf("relay Deployment replicas = %s, want 1", got)
		}
		if got := relayDep.str("spec", "strategy", "type"); got != "Recreate" {
			t.Errorf("relay Deployment strategy = %q, want Recreate", got)
		}
		if got := containerNames(relayDep); !slices.Equal(got, []string{"cdc-relay"}) {
			t.Errorf("relay Deployment containers = %v", got)
		}
		var initNames []string
		for _, c := range relayDep.objs("spec", "template", "spec", "initContainers") {
			initNames = append(initNames, c.str("name"))
		}
		if !slices.Equal(initNames, []string{"migrate", "relay-grant"}) {
			t.Errorf("relay Deployment init containers = %v, want [migrate relay-grant]", initNames)
		}
	}

	// The service container: port, env, probes, resources.
	app := container(t, api, svc)
	if got := app.str("ports", 0, "containerPort"); got != fmt.Sprint(servicePorts[svc]) {
		t.Errorf("%s containerPort = %s, want %d", svc, got, servicePorts[svc])
	}
	for _, p := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
		if app.str(p, "httpGet", "path") == "" {
			t.Errorf("%s container has no %s", svc, p)
		}
	}
	if app.str("readinessProbe", "httpGet", "path") != "/readyz" || app.str("livenessProbe", "httpGet", "path") != "/livez" {
		t.Errorf("%s probes: readiness %q liveness %q", svc, app.str("readinessProbe", "httpGet", "path"), app.str("livenessProbe", "httpGet", "path"))
	}
	checkResources(t, svc, app)
	env := envOf(t, objs, api, app)
	for _, name := range []string{"DATABASE_URL", "AMQP_URL", "HTTP_ADDR"} {
		if env[name] == "" {
			t.Errorf("%s container lacks %s", svc, name)
		}
	}
	if env["HTTP_ADDR"] != fmt.Sprintf(":%d", servicePorts[svc]) {
		t.Errorf("%s HTTP_ADDR = %q", svc, env["HTTP_ADDR"])
	}
	if !strings.Contains(env["DATABASE_URL"], "@"+svc+"-db-service:5432/") {
		t.Errorf("%s DATABASE_URL = %q, want the chart's database service", svc, env["DATABASE_URL"])
	}
	// The migrations, then the relay role's grant (as the owner), then in
	// sidecar mode the relay.
	init := api.objs("spec", "template", "spec", "initContainers")
	wantInit := []string{"migrate", "relay-grant"}
	if mode == "sidecar" {
		wantInit = append(wantInit, "cdc-relay")
	}
	var initNames []string
	for _, c := range init {
		initNames = append(initNames, c.str("name"))
	}
	if !slices.Equal(initNames, wantInit) || init[0].str("args", 0) != "migrate" {
		t.Errorf("%s: init containers %v, want %v", svc, initNames, wantInit)
	}
	if mode == "sidecar" && (len(init) < 3 || init[2].str("restartPolicy") != "Always") {
		t.Errorf("%s: the relay is not a native sidecar after the migrations (an init container with restartPolicy Always): %v", svc, init)
	}
	if len(init) > 1 {
		grant := init[1]
		if got, want := fmt.Sprint(grant.get("args")), "[role create --role cdc_relay --table public.outbox]"; got != want {
			t.Errorf("relay-grant args = %s, want %s", got, want)
		}
		if genv := envOf(t, objs, api, grant); genv["CDC_RELAY_DATABASE_URL"] != env["DATABASE_URL"] {
			t.Errorf("relay-grant connects as %q, want the service's (owner) URL", genv["CDC_RELAY_DATABASE_URL"])
		}
	}

	// The relay container, wherever it runs.
	relayPod := api
	if mode == "deployment" {
		relayPod = relayDep
	}
	relay := container(t, relayPod, "cdc-relay")
	renv := envOf(t, objs, relayPod, relay)
	want := map[string]string{
		"CDC_RELAY_SLOT":        "saga_" + svc,
		"CDC_RELAY_PUBLICATION": "cdc_relay_outbox",
		"CDC_RELAY_EXCHANGE":    "saga",
		"CDC_RELAY_HTTP_ADDR":   ":9400",
	}
	for k, v := range want {
		if renv[k] != v {
			t.Errorf("relay %s = %q, want %q", k, renv[k], v)
		}
	}
	for _, k := range []string{"CDC_RELAY_DATABASE_URL", "CDC_RELAY_AMQP_URL"} {
		if renv[k] == "" {
			t.Errorf("relay lacks %s", k)
		}
	}
	// Each container mounts only its own credentials: the relay cannot
	// read the owner's URL, nor the service the relay's.
	if mountsFile(relayPod, relay, "/run/secrets/saga/DATABASE_URL") {
		t.Error("the relay container can read the owner's DATABASE_URL")
	}
	if mountsFile(api, app, "/run/secrets/saga/RELAY_DATABASE_URL") {
		t.Error("the service container can read the relay's RELAY_DATABASE_URL")
	}
	// The service as the database's owner, the relay as its own role, on
	// the same database; neither as the superuser.
	su, errS := url.Parse(env["DATABASE_URL"])
	ru, errR := url.Parse(renv["CDC_RELAY_DATABASE_URL"])
	if errS != nil || errR != nil {
		t.Fatalf("database URLs: %v, %v", errS, errR)
	}
	if su.User.Username() != "saga" || ru.User.Username() != "cdc_relay" || su.Host != ru.Host || su.Path != ru.Path {
		t.Errorf("service connects as %s to %s%s, relay as %s to %s%s; want saga and cdc_relay on one database",
			su.User.Username(), su.Host, su.Path, ru.User.Username(), ru.Host, ru.Path)
	}
	if relay.str("livenessProbe", "httpGet", "path") != "/livez" {
		t.Errorf("relay liveness probe = %v", relay.get("livenessProbe"))
	}
	hasReadiness := relay.get("readinessProbe") != nil
	if mode == "sidecar" && hasReadiness {
		t.Error("sidecar relay has a readiness probe: a standby would take the service pod out of its Service")
	}
	if mode == "deployment" && relay.str("readinessProbe", "httpGet", "path") != "/readyz" {
		t.Error("relay Deployment has no /readyz readiness probe")
	}
	if relay.str("ports", 0, "containerPort") != "9400" {
		t.Errorf("relay metrics port = %s", relay.str("ports", 0, "containerPort"))
	}
	checkResources(t, "cdc-relay", relay)

	// The database: logical decoding and a readiness probe.
	pg := container(t, db, "postgres")
	if args := fmt.Sprint(pg.get("args")); !strings.Contains(args, "wal_level=logical") {
		t.Errorf("postgres args %s lack wal_level=logical", args)
	}
	if pg.get("readinessProbe") == nil {
		t.Error("postgres has no readiness probe")
	}
	// Its first start makes the two roles, with the passwords the URLs carry.
	penv := envOf(t, objs, db, pg)
	if got := mountedFile(t, objs, db, pg, "/docker-entrypoint-initdb.d/10-init-roles.sh"); got != readFile(t, "deploy/helm/saga/files/init-roles.sh") {
		t.Error("the database's init script is not files/init-roles.sh")
	}
	spw, _ := su.User.Password()
	rpw, _ := ru.User.Password()
	if penv["SAGA_OWNER_ROLE"] != su.User.Username() || penv["SAGA_OWNER_PASSWORD"] != spw ||
		penv["SAGA_RELAY_ROLE"] != ru.User.Username() || penv["SAGA_RELAY_PASSWORD"] != rpw || penv["POSTGRES_PASSWORD"] == "" {
		t.Errorf("postgres's roles and passwords do not match the URLs the service and relay use")
	}
	if su := penv["POSTGRES_USER"]; su == penv["SAGA_OWNER_ROLE"] || su == penv["SAGA_RELAY_ROLE"] {
		t.Errorf("the superuser %s is also the owner or relay role (init-roles.sh refuses that)", su)
	}

	// Services catch only their own pods, and their target ports exist there.
	pods := map[string]obj{}
	for key, o := range objs {
		if o.str("kind") == "Deployment" {
			pods[strings.TrimPrefix(key, "Deployment/")] = o
		}
	}
	relayOwner := svc + "-deployment"
	if mode == "deployment" {
		relayOwner = svc + "-relay-deployment"
	}
	for name, wantPods := range map[string][]string{
		svc + "-service":       {svc + "-deployment"},
		svc + "-relay-service": {relayOwner},
		svc + "-db-service":    {svc + "-db-deployment"},
	} {
		s := mustObj(t, objs, "Service/"+name)
		sel := s.strMap("spec", "selector")
		if len(sel) == 0 {
			t.Errorf("Service %s has no selector", name)
			continue
		}
		var matched []string
		for pname, p := range pods {
			if matches(sel, p.strMap("spec", "template", "metadata", "labels")) {
				matched = append(matched, pname)
			}
		}
		slices.Sort(matched)
		if !slices.Equal(matched, wantPods) {
			t.Errorf("Service %s selects %v, want only %v", name, matched, wantPods)
		}
		for _, port := range s.objs("spec", "ports") {
			target := port.str("targetPort")
			for _, pname := range matched {
				if !hasPort(pods[pname], target) {
					t.Errorf("Service %s targetPort %s: no such port in %s", name, target, pname)
				}
			}
		}
	}
	// Every Deployment's selector matches its own template.
	for pname, p := range pods {
		if !matches(p.strMap("spec", "selector", "matchLabels"), p.strMap("spec", "template", "metadata", "labels")) {
			t.Errorf("Deployment %s selector does not match its pod template", pname)
		}
	}

	// The HTTPRoutes for Kong.
	route := mustObj(t, objs, "HTTPRoute/"+svc+"-http-route")
	if route.str("metadata", "annotations", "konghq.com/strip-path") != "true" {
		t.Error("HTTPRoute lacks konghq.com/strip-path: \"true\"")
	}
	if route.str("spec", "parentRefs", 0, "name") != "kong" {
		t.Errorf("HTTPRoute parent = %q", route.str("spec", "parentRefs", 0, "name"))
	}
	rule := obj(route.objs("spec", "rules")[0])
	if got := rule.str("matches", 0, "path", "value"); got != "/"+svc {
		t.Errorf("HTTPRoute path = %q, want /%s", got, svc)
	}
	if rule.str("backendRefs", 0, "name") != svc+"-service" || rule.str("backendRefs", 0, "port") != fmt.Sprint(servicePorts[svc]) {
		t.Errorf("HTTPRoute backend = %v", rule.get("backendRefs"))
	}
	rroute := mustObj(t, objs, "HTTPRoute/"+svc+"-relay-http-route")
	if rroute.str("spec", "rules", 0, "backendRefs", 0, "name") != svc+"-relay-service" ||
		rroute.str("spec", "rules", 0, "matches", 0, "path", "value") != "/relays/"+svc {
		t.Errorf("relay HTTPRoute = %v", rroute.get("spec"))
	}
}

func mustObj(t *testing.T, objs map[string]obj, key string) obj {
	t.Helper()
	o, ok := objs[key]
	if !ok {
		keys := make([]string, 0, len(objs))
		for k := range objs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Fatalf("%s not rendered; rendered: %v", key, keys)
	}
	return o
}

func containerNames(dep obj) []string {
	var names []string
	for _, c := range dep.objs("spec", "template", "spec", "containers") {
		names = append(names, c.str("name"))
	}
	return names
}

func container(t *testing.T, dep obj, name string) obj {
	t.Helper()
	for _, list := range []string{"containers", "initContainers"} {
		for _, c := range dep.objs("spec", "template", "spec", list) {
			if c.str("name") == name {
				return c
			}
		}
	}
	t.Fatalf("Deployment %s has no container %s", dep.str("metadata", "name"), name)
	return nil
}

func hasPort(dep obj, nameOrNumber string) bool {
	for _, c := range append(dep.objs("spec", "template", "spec", "containers"), dep.objs("spec", "template", "spec", "initContainers")...) {
		for _, p := range c.objs("ports") {
			if p.str("name") == nameOrNumber || p.str("containerPort") == nameOrNumber {
				return true
			}
		}
	}
	return false
}

func checkResources(t *testing.T, name string, c obj) {
	t.Helper()
	if c.str("resources", "requests", "cpu") == "" || c.str("resources", "requests", "memory") == "" {
		t.Errorf("%s has no cpu and memory requests: %v", name, c.get("resources"))
	}
	if c.str("resources", "limits", "memory") == "" {
		t.Errorf("%s has no memory limit", name)
	}
}

// envOf resolves a container's environment: plain values, secretKeyRef and
// configMapKeyRef (base64 decoded from the rendered Secret), and envFrom
// ConfigMaps; and every X_FILE that names a file of a Secret or ConfigMap
// the container mounts from its pod's volumes is read into X. A reference
// to an object, key or file that was not rendered fails.
func envOf(t *testing.T, objs map[string]obj, pod, c obj) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.objs("envFrom") {
		name := from.str("configMapRef", "name")
		cm := mustObj(t, objs, "ConfigMap/"+name)
		for k, v := range cm.strMap("data") {
			env[k] = v
		}
	}
	for _, e := range c.objs("env") {
		name := e.str("name")
		switch {
		case e.get("valueFrom", "secretKeyRef") != nil:
			sname, key := e.str("valueFrom", "secretKeyRef", "name"), e.str("valueFrom", "secretKeyRef", "key")
			s := mustObj(t, objs, "Secret/"+sname)
			v, ok := s.strMap("data")[key]
			if !ok {
				t.Errorf("env %s: Secret %s has no key %s", name, sname, key)
				continue
			}
			env[name] = decodeB64(t, v)
		case e.get("valueFrom", "configMapKeyRef") != nil:
			cm := mustObj(t, objs, "ConfigMap/"+e.str("valueFrom", "configMapKeyRef", "name"))
			env[name] = cm.strMap("data")[e.str("valueFrom", "configMapKeyRef", "key")]
		default:
			env[name] = e.str("value")
		}
	}
	for k, path := range maps.Clone(env) {
		if base, ok := strings.CutSuffix(k, "_FILE"); ok {
			env[base] = mountedFile(t, objs, pod, c, path)
		}
	}
	return env
}

// mountedFile is the content of the file at path in container c of pod,
// from the Secret or ConfigMap volume mounted over it.
func mountedFile(t *testing.T, objs map[string]obj, pod, c obj, path string) string {
	t.Helper()
	vol, key, ok := mountAt(pod, c, path)
	switch {
	case !ok:
		t.Errorf("%s: %s is in no Secret or ConfigMap the container mounts", c.str("name"), path)
	case vol.get("secret") != nil:
		if d, ok := mustObj(t, objs, "Secret/"+vol.str("secret", "secretName")).strMap("data")[key]; ok {
			return decodeB64(t, d)
		}
		t.Errorf("%s: %s: Secret %s has no key %s", c.str("name"), path, vol.str("secret", "secretName"), key)
	default:
		if d, ok := mustObj(t, objs, "ConfigMap/"+vol.str("configMap", "name")).strMap("data")[key]; ok {
			return d
		}
		t.Errorf("%s: %s: ConfigMap %s has no key %s", c.str("name"), path, vol.str("configMap", "name"), key)
	}
	return ""
}

// mountAt finds the Secret or ConfigMap volume of pod that container c
// mounts over path, and the key that file holds: with items, only the
// listed paths are files.
func mountAt(pod, c obj, path string) (vol obj, key string, ok bool) {
	for _, m := range c.objs("volumeMounts") {
		file, ok := strings.CutPrefix(path, m.str("mountPath")+"/")
		if !ok {
			continue
		}
		for _, v := range pod.objs("spec", "template", "spec", "volumes") {
			if v.str("name") != m.str("name") {
				continue
			}
			kind := "secret"
			if v.get("configMap") != nil {
				kind = "configMap"
			} else if v.get("secret") == nil {
				continue
			}
			items := v.objs(kind, "items")
			if len(items) == 0 {
				return v, file, true
			}
			for _, it := range items {
				if it.str("path") == file {
					return v, it.str("key"), true
				}
			}
		}
	}
	return nil, "", false
}

// mountsFile reports whether container c of pod has a Secret file at path.
func mountsFile(pod, c obj, path string) bool {
	vol, _, ok := mountAt(pod, c, path)
	return ok && vol.get("secret") != nil
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// helm lint --strict accepts both charts: the saga chart for each service
// in both relay modes, and the dashboard's.
func TestHelmLintStrict(t *testing.T) {
	helm := helmBinary(t)
	root := repoRoot(t)
	runs := [][]string{{filepath.Join(root, "deploy", "helm", "dashboard")}}
	for _, svc := range []string{"order", "stock", "payment"} {
		for _, mode := range []string{"sidecar", "deployment"} {
			runs = append(runs, []string{filepath.Join(root, "deploy", "helm", "saga"),
				"-f", filepath.Join(root, "deploy", "k8s", "services", svc, "values.yaml"), "--set", "relay.mode=" + mode})
		}
	}
	for _, args := range runs {
		out, err := exec.Command(helm, append([]string{"lint", "--strict"}, args...)...).CombinedOutput()
		if err != nil {
			t.Errorf("helm lint --strict %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// queueType reaches the service as SAGA_QUEUE_TYPE: classic by default,
// quorum for a RabbitMQ cluster, and nothing else renders.
func TestHelmChartQueueType(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct{ sets []string }{{nil}, {[]string{"queueType=quorum"}}, {[]string{"queueType=classic"}}} {
		want := "classic"
		if len(tc.sets) > 0 {
			want = strings.TrimPrefix(tc.sets[0], "queueType=")
		}
		t.Run(want+fmt.Sprint(len(tc.sets)), func(t *testing.T) {
			objs := render(t, helm, "stock", tc.sets...)
			api := mustObj(t, objs, "Deployment/stock-deployment")
			if got := envOf(t, objs, api, container(t, api, "stock"))["SAGA_QUEUE_TYPE"]; got != want {
				t.Fatalf("SAGA_QUEUE_TYPE = %q, want %q", got, want)
			}
		})
	}
	_, err := renderErr(t, helm, "stock", "queueType=mirrored")
	if err == nil || !strings.Contains(err.Error(), `queueType "mirrored"`) {
		t.Fatalf("queueType=mirrored rendered, or failed without naming it: %v", err)
	}
}

// readFile is a file of the repository, by its path from the root.
func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// No container of the chart has a URL or a password in its environment,
// plain or from a secretKeyRef: each reads them from a mounted Secret
// through its *_FILE variables. With an external database, the grant runs
// only for a relay role named in database.relayRole.
func TestHelmChartKeepsSecretsOutOfTheEnvironment(t *testing.T) {
	helm := helmBinary(t)
	check := func(objs map[string]obj) {
		for key, o := range objs {
			if o.str("kind") == "ConfigMap" {
				for k, v := range o.strMap("data") {
					if urlWithPassword.MatchString(v) {
						t.Errorf("%s: %s holds a URL with a password", key, k)
					}
				}
			}
			if o.str("kind") != "Deployment" {
				continue
			}
			for _, c := range append(o.objs("spec", "template", "spec", "containers"), o.objs("spec", "template", "spec", "initContainers")...) {
				for _, e := range c.objs("env") {
					name := e.str("name")
					if e.get("valueFrom", "secretKeyRef") != nil {
						t.Errorf("%s/%s: %s from a secretKeyRef: mount the Secret and read %s_FILE", key, c.str("name"), name, name)
					}
					if (strings.HasSuffix(name, "_URL") || strings.Contains(name, "PASSWORD")) && !strings.HasSuffix(name, "_FILE") {
						t.Errorf("%s/%s: %s is in the environment: read it from a file", key, c.str("name"), name)
					}
					if urlWithPassword.MatchString(e.str("value")) {
						t.Errorf("%s/%s: %s holds a URL with a password", key, c.str("name"), name)
					}
				}
			}
		}
	}
	for _, mode := range []string{"sidecar", "deployment"} {
		check(render(t, helm, "order", "relay.mode="+mode))
	}
	ext := []string{"postgres.enabled=false", "database.url=postgres://app:pw@db.example:5432/orders",
		"database.relayUrl=postgres://relay:pw@db.example:5432/orders"}
	objs := render(t, helm, "order", ext...)
	check(objs)
	api := mustObj(t, objs, "Deployment/order-deployment")
	var names []string
	for _, c := range api.objs("spec", "template", "spec", "initContainers") {
		names = append(names, c.str("name"))
	}
	if slices.Contains(names, "relay-grant") {
		t.Errorf("external database without database.relayRole: init containers %v include relay-grant", names)
	}
	objs = render(t, helm, "order", append(ext, "database.relayRole=relay")...)
	grant := container(t, mustObj(t, objs, "Deployment/order-deployment"), "relay-grant")
	if got := fmt.Sprint(grant.get("args")); got != "[role create --role relay --table public.outbox]" {
		t.Errorf("relay-grant args = %s", got)
	}
}

// The chart's roles go into URLs and SQL unescaped: a role name that is not
// an identifier, a password with other characters, or one role twice fails
// the render with the value's name.
func TestHelmChartRefusesBadRoles(t *testing.T) {
	helm := helmBinary(t)
	for set, want := range map[string]string{
		"postgres.ownerPassword=p@ss word": "postgres.ownerPassword: want letters, digits",
		"postgres.relayPassword=a/b":       "postgres.relayPassword: want letters, digits",
		"postgres.relayRole=Relay-1":       `postgres.relayRole "Relay-1": want a lower-case identifier`,
		"postgres.ownerRole=postgres":      "must be three roles",
	} {
		_, err := renderErr(t, helm, "order", set)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want an error with %q", set, err, want)
		}
	}
}
