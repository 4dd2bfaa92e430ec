package deploy

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// compose.yaml loads and validates with compose-go, the library `docker
// compose` itself uses: the schema, anchors and merges, interpolation, and
// every depends_on naming a service with a condition compose knows. The
// start order it gives is the one the relays need: each after its
// database, the broker, its migrations and its service.
func TestComposeLoadsWithComposeGo(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "compose")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithName("saga"), cli.WithWorkingDirectory(dir), cli.WithOsEnv, cli.WithInterpolation(true), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose-go refuses deploy/compose/compose.yaml: %v", err)
	}
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
			svc + "-db":      types.ServiceConditionHealthy,
			"rabbitmq":       types.ServiceConditionHealthy,
			svc + "-migrate": types.ServiceConditionCompletedSuccessfully,
			svc:              types.ServiceConditionHealthy,
		}
		for dep, cond := range want {
			if got := relay.DependsOn[dep].Condition; got != cond {
				t.Errorf("%s-relay depends on %s with %q, want %q", svc, dep, got, cond)
			}
		}
		for _, k := range []string{"CDC_RELAY_DATABASE_URL", "CDC_RELAY_AMQP_URL", "CDC_RELAY_SLOT", "CDC_RELAY_EXCHANGE"} {
			if v := relay.Environment[k]; v == nil || *v == "" {
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
