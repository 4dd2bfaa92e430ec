package deploy

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kubeTypes are the kinds the charts may render, each with the Go type the
// Kubernetes API server (or, for HTTPRoute, the Gateway API's CRD) decodes
// it into. A kind not listed here fails the test: add its type first.
var kubeTypes = map[string]func() any{
	"apps/v1/Deployment":                        func() any { return &appsv1.Deployment{} },
	"v1/Service":                                func() any { return &corev1.Service{} },
	"v1/ConfigMap":                              func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                 func() any { return &corev1.Secret{} },
	"v1/PersistentVolumeClaim":                  func() any { return &corev1.PersistentVolumeClaim{} },
	"v1/ServiceAccount":                         func() any { return &corev1.ServiceAccount{} },
	"gateway.networking.k8s.io/v1/HTTPRoute":    func() any { return &gatewayv1.HTTPRoute{} },
	"gateway.networking.k8s.io/v1/GatewayClass": func() any { return &gatewayv1.GatewayClass{} },
	"gateway.networking.k8s.io/v1/Gateway":      func() any { return &gatewayv1.Gateway{} },
}

var yamlDocSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes every document of a multi-document manifest into
// its Kubernetes type, failing on an unknown kind, an unknown or duplicate
// field, or a value of the wrong type: what kubectl apply --validate=strict
// refuses. It returns the documents' kind/name.
// Kinds in unchecked are only named: the custom resources of other
// projects' operators, whose Go types are not worth their dependencies.
func decodeStrict(manifest []byte, unchecked ...string) ([]string, error) {
	var names []string
	for i, doc := range yamlDocSeparator.Split(string(manifest), -1) {
		var tm struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return names, fmt.Errorf("document %d: %w", i, err)
		}
		if tm.Kind == "" && tm.APIVersion == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				return names, fmt.Errorf("document %d has no apiVersion and kind:\n%s", i, doc)
			}
			continue // a separator's empty document, or comments alone
		}
		if slices.Contains(unchecked, tm.APIVersion+"/"+tm.Kind) {
			names = append(names, tm.Kind+"/"+tm.Name)
			continue
		}
		newObj, ok := kubeTypes[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return names, fmt.Errorf("document %d: %s %s %q: no Kubernetes type known for it", i, tm.APIVersion, tm.Kind, tm.Name)
		}
		// The API server's own decoder: case-sensitive field names (encoding/json
		// would take restartpolicy for restartPolicy), unknown and duplicate
		// fields reported.
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return names, fmt.Errorf("%s %q: %w", tm.Kind, tm.Name, err)
		}
		strict, err := kjson.UnmarshalStrict(js, newObj(), kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err != nil {
			return names, fmt.Errorf("%s %q: %w", tm.Kind, tm.Name, err)
		}
		if len(strict) > 0 {
			return names, fmt.Errorf("%s %q: %w", tm.Kind, tm.Name, errors.Join(strict...))
		}
		names = append(names, tm.Kind+"/"+tm.Name)
	}
	return names, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// Every manifest both charts render, in every mode their values select,
// decodes strictly into the k8s.io/api (and Gateway API) types.
func TestChartsRenderStrictKubernetesObjects(t *testing.T) {
	helm := helmBinary(t)
	root := repoRoot(t)
	saga := filepath.Join(root, "deploy", "helm", "saga")
	type render struct {
		name, chart string
		args        []string
		want        []string // kind/name that must be among the objects
	}
	var renders []render
	for _, svc := range []string{"order", "stock", "payment"} {
		values := []string{"-f", filepath.Join(root, "deploy", "k8s", "services", svc, "values.yaml")}
		for _, v := range []struct {
			name string
			sets []string
			want []string
		}{
			{"sidecar", []string{"relay.mode=sidecar"}, []string{"Deployment/" + svc + "-deployment", "Deployment/" + svc + "-db-deployment"}},
			{"deployment", []string{"relay.mode=deployment"}, []string{"Deployment/" + svc + "-relay-deployment"}},
			{"persistent postgres", []string{"postgres.persistence.enabled=true"}, []string{"PersistentVolumeClaim/" + svc + "-db-data"}},
			{"external database, no route", []string{"postgres.enabled=false", "database.url=postgres://app@db.example:5432/" + svc,
				"database.relayUrl=postgres://relay@db.example:5432/" + svc, "httpRoute.enabled=false"}, []string{"Deployment/" + svc + "-deployment"}},
		} {
			args := append([]string{"template", svc, saga}, values...)
			for _, s := range v.sets {
				args = append(args, "--set", s)
			}
			renders = append(renders, render{svc + "/" + v.name, "saga", args, v.want})
		}
	}
	dashboard := filepath.Join(root, "deploy", "helm", "dashboard")
	renders = append(renders,
		render{"dashboard", "dashboard", []string{"template", "dashboard", dashboard}, []string{"Deployment/dashboard-deployment", "HTTPRoute/dashboard-http-route"}},
		render{"dashboard/grafana", "dashboard", []string{"template", "dashboard", dashboard, "--set", "grafanaDashboard.enabled=true"}, []string{"ConfigMap/cdc-relay-grafana-dashboard"}},
		render{"dashboard/no route", "dashboard", []string{"template", "dashboard", dashboard, "--set", "httpRoute.enabled=false"}, []string{"Deployment/dashboard-deployment"}},
	)
	for _, r := range renders {
		t.Run(r.name, func(t *testing.T) {
			out, err := exec.Command(helm, r.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(r.args, " "), err, out)
			}
			names, err := decodeStrict(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range r.want {
				if !slices.Contains(names, w) {
					t.Errorf("%s not rendered; got %v", w, names)
				}
			}
		})
	}
}

// The manifests deploy/k8s/up.sh applies beside the charts: the Kong
// Gateway and the RabbitMQ cluster.
func TestStaticManifestsAreStrictKubernetesObjects(t *testing.T) {
	root := repoRoot(t)
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"kong/kong-gateway.yaml", []string{"GatewayClass/kong", "Gateway/kong"}},
		{"rabbitmq/rabbitmq.yaml", []string{"RabbitmqCluster/rabbitmq"}},
		{"rabbitmq/rabbitmq-cluster.yaml", []string{"RabbitmqCluster/rabbitmq"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			names, err := decodeStrict(b, "configuration.konghq.com/v1/KongClusterPlugin", "rabbitmq.com/v1beta1/RabbitmqCluster")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !slices.Contains(names, w) {
					t.Errorf("%s not in %s; got %v", w, tc.file, names)
				}
			}
		})
	}
}

// The strict decoder refuses what the API server refuses: without these
// cases, a decoder that accepted anything would pass the test above.
func TestDecodeStrictRefuses(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: web:1
%s`
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{"unknown field", fmt.Sprintf(deployment, "          restartpolicy: Always\n"), `unknown field "spec.template.spec.containers[0].restartpolicy"`},
		{"wrong type", fmt.Sprintf(deployment, "          ports: 8080\n"), "ports"},
		{"duplicate field", fmt.Sprintf(deployment, "          image: web:2\n"), `"image" already set`},
		{"unknown kind", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: m\n", "no Kubernetes type known"},
		{"no kind", "metadata:\n  name: m\n", "no apiVersion and kind"},
		{"second document bad", "---\n# Source: a\napiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  portz: []\n", `unknown field "spec.portz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tc.manifest))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
		})
	}
	names, err := decodeStrict([]byte("---\n# Source: only comments\n---\n" + fmt.Sprintf(deployment, "")))
	if err != nil || len(names) != 1 || names[0] != "Deployment/web" {
		t.Fatalf("a good manifest: %v, %v", names, err)
	}
}

// The cluster manifest runs three nodes behind the Service the chart's
// amqp.url names; deploy/k8s/up.sh picks it with RABBITMQ_NODES=3 and
// refuses any count but 1 and 3 before it touches a cluster.
func TestRabbitMQClusterManifest(t *testing.T) {
	root := repoRoot(t)
	for file, replicas := range map[string]float64{"rabbitmq.yaml": 1, "rabbitmq-cluster.yaml": 3} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "rabbitmq", file))
		if err != nil {
			t.Fatal(err)
		}
		docs, err := decodeAll(b)
		if err != nil || len(docs) != 1 {
			t.Fatalf("%s: %d documents, %v", file, len(docs), err)
		}
		if got := docs[0].get("spec", "replicas"); fmt.Sprint(got) != fmt.Sprint(replicas) {
			t.Errorf("%s: spec.replicas %v, want %v", file, got, replicas)
		}
		if name := docs[0].str("metadata", "name"); name != "rabbitmq" {
			t.Errorf("%s: named %q, want rabbitmq (the host of the chart's amqp.url)", file, name)
		}
	}
	for _, nodes := range []string{"2", "three", "0"} {
		out, err := command(root, append(os.Environ(), "RABBITMQ_NODES="+nodes), "bash", "deploy/k8s/up.sh")
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), "RABBITMQ_NODES="+nodes+": want 1") {
			t.Errorf("RABBITMQ_NODES=%s: exit %d, output:\n%s", nodes, code, out)
		}
	}
}
