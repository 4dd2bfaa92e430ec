package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// asyncapiParserVersion is the npm package that validates docs/asyncapi.yaml,
// installed into .cache/asyncapi when missing.
const asyncapiParserVersion = "3.6.6"

// parseScript validates the AsyncAPI document named by its argument and
// prints what it found; it exits 1 on an error diagnostic.
const parseScript = `
const { Parser, fromFile } = require('@asyncapi/parser');
(async () => {
  const { document, diagnostics } = await fromFile(new Parser(), process.argv[2]).parse();
  const out = (sev) => diagnostics.filter((d) => d.severity === sev).map((d) => d.message + ' at ' + d.path.join('.'));
  const errors = out(0);
  console.log(JSON.stringify({
    errors, warnings: out(1),
    channels: document ? document.channels().length : 0,
    operations: document ? document.operations().length : 0,
    messages: document ? document.components().messages().length : 0,
  }));
  process.exit(errors.length || !document ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
`

// The messaging contract is an AsyncAPI 3 document that the AsyncAPI
// parser, the library AsyncAPI's own tools use, accepts without an error.
// tests/e2e holds the messages of a real saga run to its payload schemas.
func TestAsyncAPIDocument(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the AsyncAPI parser with npm")
	}
	prefix := filepath.Join(repoRoot(t), ".cache", "asyncapi")
	if _, err := os.Stat(filepath.Join(prefix, "node_modules", "@asyncapi", "parser")); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", prefix,
			"@asyncapi/parser@"+asyncapiParserVersion).CombinedOutput()
		if err != nil {
			t.Fatalf("npm install @asyncapi/parser@%s: %v\n%s", asyncapiParserVersion, err, out)
		}
	}
	script := filepath.Join(t.TempDir(), "parse.js")
	if err := os.WriteFile(script, []byte(parseScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, filepath.Join(repoRoot(t), "docs", "asyncapi.yaml"))
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(prefix, "node_modules"))
	out, err := cmd.Output()
	var got struct {
		Errors, Warnings               []string
		Channels, Operations, Messages int
	}
	if jerr := json.Unmarshal(out, &got); jerr != nil {
		t.Fatalf("the AsyncAPI parser: %v; output: %s", err, out)
	}
	if err != nil || len(got.Errors) > 0 {
		t.Fatalf("docs/asyncapi.yaml is not a valid AsyncAPI document: %v\n%v", err, got.Errors)
	}
	if got.Channels < 9 || got.Operations < 6 || got.Messages < 4 {
		t.Errorf("docs/asyncapi.yaml: %d channels, %d operations, %d messages; want the 3 routing keys, 3 queues, 3 DLQs, their 6 operations and 4 messages",
			got.Channels, got.Operations, got.Messages)
	}
	for _, w := range got.Warnings {
		t.Logf("warning: %s", w)
	}
}
