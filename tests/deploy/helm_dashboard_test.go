package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelmDashboardChart renders deploy/helm/dashboard: the page's
// Deployment probes the port it listens on, its Service selects it and
// targets that port, and the HTTPRoute sends / (Exact) and /dashboard
// (PathPrefix) to it with the path kept, the same paths as the local demo's
// gateway and compose's Kong.
func TestHelmDashboardChart(t *testing.T) {
	helm := helmBinary(t)
	out, err := exec.Command(helm, "template", "dashboard", filepath.Join(repoRoot(t), "deploy", "helm", "dashboard")).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	docs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]obj{}
	for _, d := range docs {
		objs[d.str("kind")+"/"+d.str("metadata", "name")] = d
	}
	dep, svc, route := objs["Deployment/dashboard-deployment"], objs["Service/dashboard-service"], objs["HTTPRoute/dashboard-http-route"]
	if dep == nil || svc == nil || route == nil || len(objs) != 3 {
		t.Fatalf("rendered %v, want the dashboard's Deployment, Service and HTTPRoute", keys(map[string]any(toAny(objs))))
	}

	c := dep.objs("spec", "template", "spec", "containers")
	if len(c) != 1 {
		t.Fatalf("%d containers", len(c))
	}
	if img := c[0].str("image"); img != "saga/dashboard:dev" {
		t.Errorf("image %q", img)
	}
	var addr string
	for _, e := range c[0].objs("env") {
		if e.str("name") == "DASHBOARD_ADDR" {
			addr = e.str("value")
		}
	}
	port := c[0].str("ports", 0, "containerPort")
	if addr != ":"+port || c[0].str("ports", 0, "name") != "http" {
		t.Errorf("DASHBOARD_ADDR %q, container port %s", addr, port)
	}
	for _, p := range []string{"livenessProbe", "readinessProbe"} {
		if c[0].str(p, "httpGet", "port") != "http" {
			t.Errorf("%s does not probe the http port: %v", p, c[0].get(p))
		}
	}
	if c[0].str("securityContext", "readOnlyRootFilesystem") != "true" || dep.str("spec", "template", "spec", "securityContext", "runAsNonRoot") != "true" {
		t.Error("the dashboard does not run as non-root on a read-only root file system")
	}
	podLabels := dep.strMap("spec", "template", "metadata", "labels")
	for k, v := range svc.strMap("spec", "selector") {
		if podLabels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod (%q)", k, v, podLabels[k])
		}
	}
	if svc.str("spec", "ports", 0, "targetPort") != "http" || svc.str("spec", "ports", 0, "port") != port {
		t.Errorf("Service ports %v", svc.get("spec", "ports"))
	}

	if route.str("metadata", "annotations", "konghq.com/strip-path") != "false" {
		t.Error("the dashboard's HTTPRoute strips its path")
	}
	got := map[string]string{}
	for _, m := range route.objs("spec", "rules", 0, "matches") {
		got[m.str("path", "value")] = m.str("path", "type")
	}
	if want := map[string]string{"/": "Exact", "/dashboard": "PathPrefix"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("HTTPRoute matches %v, want %v", got, want)
	}
	if b := route.str("spec", "rules", 0, "backendRefs", 0, "name"); b != "dashboard-service" ||
		route.str("spec", "rules", 0, "backendRefs", 0, "port") != port {
		t.Errorf("HTTPRoute backend %v", route.get("spec", "rules", 0, "backendRefs"))
	}
}

// grafanaDashboard.enabled renders the relay's Grafana dashboard, the very
// file under deploy/grafana, in a ConfigMap the Grafana chart's sidecar
// loads by its label; off by default.
func TestHelmDashboardChartGrafanaConfigMap(t *testing.T) {
	helm := helmBinary(t)
	chart := filepath.Join(repoRoot(t), "deploy", "helm", "dashboard")
	off, err := exec.Command(helm, "template", "dashboard", chart).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, off)
	}
	if strings.Contains(string(off), "cdc-relay-grafana-dashboard") {
		t.Error("the Grafana ConfigMap renders by default")
	}
	out, err := exec.Command(helm, "template", "dashboard", chart, "--set", "grafanaDashboard.enabled=true").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	docs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	var cm obj
	for _, d := range docs {
		if d.str("kind") == "ConfigMap" && d.str("metadata", "name") == "cdc-relay-grafana-dashboard" {
			cm = d
		}
	}
	if cm == nil {
		t.Fatalf("no ConfigMap cdc-relay-grafana-dashboard in:\n%s", out)
	}
	if got := cm.str("metadata", "labels", "grafana_dashboard"); got != "1" {
		t.Errorf("label grafana_dashboard = %q, want \"1\"", got)
	}
	want, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "cdc-relay-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.str("data", "cdc-relay-dashboard.json"); got != strings.TrimRight(string(want), "\n") {
		t.Errorf("the ConfigMap's dashboard differs from deploy/grafana/cdc-relay-dashboard.json (%d bytes, want %d): "+
			"the chart holds a copy (helm reads no file outside the chart and warns on a symlink): "+
			"cp deploy/grafana/cdc-relay-dashboard.json deploy/helm/dashboard/files/", len(got), len(want))
	}
}
