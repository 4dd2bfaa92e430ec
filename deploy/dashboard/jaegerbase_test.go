package dashboard

import (
	"encoding/json"
	"io"
	"os/exec"
	"regexp"
	"testing"
)

// The page's ?jaeger= goes into a link's href: only a path of the page's
// origin or an http(s) URL is taken, never a javascript: URL or another
// origin's protocol-relative path. jaegerBase from app.js runs under node.
func TestJaegerBase(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed to run the page's jaegerBase: install Node.js (Debian: apt-get install nodejs)")
	}
	b, err := io.ReadAll(mustOpen(t, "app.js"))
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`(?s)  function jaegerBase\(v\) \{.*?\n  \}\n`).Find(b)
	if fn == nil {
		t.Fatal("app.js has no function jaegerBase(v)")
	}
	cases := map[string]string{
		"":                        "/jaeger",
		"/jaeger/":                "/jaeger",
		"/tracing":                "/tracing",
		"//evil.example/x":        "/jaeger",
		"javascript:alert(1)//":   "/jaeger",
		"JavaScript:alert(1)":     "/jaeger",
		"data:text/html,<b>x</b>": "/jaeger",
		"http://j:16686/jaeger/":  "http://j:16686/jaeger",
		"https://tracing.example": "https://tracing.example",
	}
	in, _ := json.Marshal(cases)
	script := string(fn) + `
const cases = ` + string(in) + `;
const out = {};
for (const v of Object.keys(cases)) out[v] = jaegerBase(v || null);
process.stdout.write(JSON.stringify(out));`
	cmd := exec.Command(node, "-e", "const console = {warn() {}};\n"+script)
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var res map[string]string
	if err := json.Unmarshal(got, &res); err != nil {
		t.Fatalf("node printed %q: %v", got, err)
	}
	for v, want := range cases {
		if res[v] != want {
			t.Errorf("jaegerBase(%q) = %q, want %q", v, res[v], want)
		}
	}
}
