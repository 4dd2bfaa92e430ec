package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// compose.yaml loads and validates with compose-go, the library `docker
// compose` itself uses: the schema, anchors and merges, interpolation, and
// every depends_on naming a service with a condition compose knows. The
// start order it gives is the one the relays need: each after its
// database, the broker, the grant of its role (after the migrations) and
// its service.
func TestComposeLoadsWithComposeGo(t *testing.T) {
	project := loadProject(t)
	conditions := map[string]bool{types.ServiceConditionHealthy: true, types.ServiceConditionCompletedSuccessfully: true, types.ServiceConditionStarted: true}
	for name, s := range project.Services {
		for dep, d := range s.DependsOn {
			if _, ok := project.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
			if !conditions[d.Condition] {
				t.Errorf("%s depends on %s with condition %q", name, dep, d.Condition)
			}
		}
	}
	for _, svc := range []string{"order", "stock", "payment"} {
		relay, ok := project.Services[svc+"-relay"]
		if !ok {
			t.Fatalf("no service %s-relay", svc)
		}
		want := map[string]string{
			svc + "-db":          types.ServiceConditionHealthy,
			"rabbitmq":           types.ServiceConditionHealthy,
			svc + "-relay-grant": types.ServiceConditionCompletedSuccessfully,
			svc:                  types.ServiceConditionHealthy,
		}
		for dep, cond := range want {
			if got := relay.DependsOn[dep].Condition; got != cond {
				t.Errorf("%s-relay depends on %s with %q, want %q", svc, dep, got, cond)
			}
		}
		env := secretEnv(t, project, relay)
		for _, k := range []string{"CDC_RELAY_DATABASE_URL", "CDC_RELAY_AMQP_URL", "CDC_RELAY_SLOT", "CDC_RELAY_EXCHANGE"} {
			if env[k] == "" {
				t.Errorf("%s-relay: %s is unset after interpolation", svc, k)
			}
		}
		if relay.HealthCheck == nil || len(relay.HealthCheck.Test) == 0 {
			t.Errorf("%s-relay has no healthcheck", svc)
		}
		if !relay.ReadOnly {
			t.Errorf("%s-relay: root filesystem is not read-only", svc)
		}
	}
	order := project.Services["order"]
	if v := order.Environment["SAGA_EXCHANGE"]; v == nil || *v != "saga" {
		t.Errorf("order: SAGA_EXCHANGE = %v", v)
	}
}

// The observability profile adds Prometheus and Grafana, provisioned from
// deploy/prometheus and deploy/grafana: off in a plain `up`, every file it
// mounts present, Prometheus scraping each relay on the port it listens
// on, Grafana's data source the compose Prometheus, and its dashboard
// provider reading the folder the dashboard is mounted in.
func TestComposeObservabilityProfile(t *testing.T) {
	load := func(profiles ...string) *types.Project { return loadProject(t, profiles...) }
	for _, name := range []string{"prometheus", "grafana"} {
		if _, on := load().Services[name]; on {
			t.Errorf("%s runs without the observability profile", name)
		}
	}
	p := load("observability")
	prom, grafana := p.Services["prometheus"], p.Services["grafana"]
	if prom.Name == "" || grafana.Name == "" {
		t.Fatalf("the observability profile lacks prometheus or grafana: %v", p.ServiceNames())
	}
	mounts := map[string]string{} // target -> source, both services
	for _, s := range []types.ServiceConfig{prom, grafana} {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which is missing: %v", s.Name, v.Source, err)
			}
			mounts[v.Target] = v.Source
		}
	}

	// Prometheus: its config scrapes each relay on its CDC_RELAY_HTTP_ADDR port.
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, mounts["/etc/prometheus/prometheus.yml"], &cfg)
	targets := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName != "cdc-relay" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
	}
	for _, svc := range []string{"order", "stock", "payment"} {
		relay := p.Services[svc+"-relay"]
		addr := relay.Environment["CDC_RELAY_HTTP_ADDR"]
		if addr == nil {
			t.Fatalf("%s-relay: no CDC_RELAY_HTTP_ADDR", svc)
		}
		if want := relay.Name + *addr; !targets[want] {
			t.Errorf("prometheus does not scrape %s (job cdc-relay targets %v)", want, targets)
		}
	}
	for _, rf := range cfg.RuleFiles {
		if _, ok := mounts[filepath.Join("/etc/prometheus", rf)]; !ok {
			t.Errorf("prometheus.yml loads rule file %s, which compose does not mount", rf)
		}
	}

	// Grafana: the data source is this Prometheus; the dashboard's folder is provisioned.
	prov := mounts["/etc/grafana/provisioning"]
	var ds struct {
		Datasources []struct{ Type, URL string } `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources", "prometheus.yaml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("grafana data sources %+v, want the compose prometheus at http://prometheus:9090", ds.Datasources)
	}
	var dash struct {
		Providers []struct {
			Type    string
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards", "cdc-relay.yaml"), &dash)
	want := filepath.Join(repoRoot(t), "deploy", "grafana", "cdc-relay-dashboard.json")
	if len(dash.Providers) != 1 || dash.Providers[0].Type != "file" {
		t.Fatalf("grafana dashboard providers %+v, want one of type file", dash.Providers)
	}
	if src := mounts[filepath.Join(dash.Providers[0].Options.Path, "cdc-relay-dashboard.json")]; src != want {
		t.Errorf("the provider reads %s, where compose mounts %q, not %s", dash.Providers[0].Options.Path, src, want)
	}
	if grafana.DependsOn["prometheus"].Condition != types.ServiceConditionHealthy {
		t.Errorf("grafana does not wait for a healthy prometheus")
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	if path == "" {
		t.Fatal("a file compose should mount is not mounted")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
