package deploy

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/saga-cdc/saga/tests/helpers/proctest"
)

// TestDashboardInChromium runs the demo (make demo, without Docker), opens
// the dashboard on :8080 in headless Chromium, shows that the API's
// validation errors appear next to the form's fields, clicks the three
// scenario buttons, and waits until the page shows each order's end state
// joined with its reservation and payment: payment_confirmed,
// payment_denied and not_reserved. It saves screenshots of the page, with
// the field errors (dashboard-errors.png) and at the end (dashboard.png), in
// the test's artifact directory (kept with `go test -artifacts -outputdir
// DIR`; the paths are logged), and the last one also where
// SAGA_DASHBOARD_SCREENSHOT says, if set.
//
// Chromium comes from Debian's chromium package: the test installs it with
// apt-get when it runs as root and finds none, and fails with a line saying
// how to get it otherwise. SAGA_CHROMIUM names another Chrome or Chromium.
//
// SAGA_DASHBOARD_URL (e.g. http://127.0.0.1:8080) runs the browser part
// against a system that already runs, such as your own `make demo`, instead
// of starting one; it then needs a fresh stock of product 1 for the stock
// check, so that check is skipped.
func TestDashboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the dashboard test starts the demo and a browser")
	}
	chrome := findChromium(t)

	gw := strings.TrimRight(os.Getenv("SAGA_DASHBOARD_URL"), "/")
	fresh := gw == ""
	if fresh {
		startDemo(t, "")
		gw = "http://127.0.0.1:8080"
	}

	// The gateway serves the page at /dashboard/ and sends / there.
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := client.Get(gw + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/dashboard/" {
		t.Errorf("GET /: %s, Location %q; want 302 to /dashboard/", resp.Status, resp.Header.Get("Location"))
	}
	page := get(t, client, gw+"/dashboard/")
	if !strings.Contains(page, "Saga dashboard") {
		t.Errorf("GET /dashboard/: not the dashboard: %.200s", page)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ctx, jsErrors := browser(t, ctx, chrome)

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v%s", what, err, jsErrors())
		}
	}
	// poll waits for a JavaScript expression to be truthy and returns its
	// value as text.
	poll := func(what, expr string, timeout time.Duration) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Poll[any](expr,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
		if err != nil {
			t.Fatalf("waiting for %s: %v%s\npage:\n%s", what, err, jsErrors(), pageText(ctx))
		}
		return fmt.Sprint(v)
	}

	step("open the dashboard",
		chromedp.EmulateViewport(1360, 960),
		chromedp.Navigate(gw+"/"),
		chromedp.WaitVisible(chromedp.CSS("#scenario-confirmed")))
	poll("three streaming relays", `document.querySelectorAll('#relays .relay[data-phase="streaming"]').length === 3`, time.Minute)
	poll("the live indicator", `document.querySelector('#conn').dataset.state === 'live'`, 30*time.Second)

	// Validation errors from the API, next to their fields; nothing is
	// created.
	step("submit an invalid order",
		setField("f-customer_id", ""),
		setField("f-amount", ""),
		chromedp.SendKeys(chromedp.CSS("#f-amount"), "abc"),
		chromedp.Click(chromedp.CSS("#submit-order")))
	errs := poll("the field errors", `(() => {
		const c = document.querySelector('#err-customer_id').textContent, a = document.querySelector('#err-amount').textContent;
		return c && a ? c + ' | ' + a : false })()`, 30*time.Second)
	if !strings.Contains(errs, "This field is required.") || !strings.Contains(errs, "A valid number is required.") {
		t.Errorf("field errors = %q, want the API's messages for customer_id and amount", errs)
	}
	if id := poll("the flash", `document.querySelector('#flash').dataset.kind === 'error' && (document.querySelector('#flash').dataset.orderId || 'none')`, 10*time.Second); id != "none" {
		t.Errorf("an invalid order made order %s", id)
	}
	saveScreenshot(t, ctx, "dashboard-errors.png")
	step("restore the form",
		setField("f-customer_id", ""),
		chromedp.SendKeys(chromedp.CSS("#f-customer_id"), "1"),
		setField("f-amount", ""),
		chromedp.SendKeys(chromedp.CSS("#f-amount"), "1"))

	// The three scenarios, one after the other, as a person would click them.
	scenarios := []struct {
		button, order, reservation, payment string
	}{
		{"scenario-confirmed", "payment_confirmed", "payment_confirmed", "payment_confirmed"},
		{"scenario-denied", "payment_denied", "payment_denied", "payment_denied"},
		{"scenario-out-of-stock", "not_reserved", "not_reserved", ""},
	}
	prev, confirmed := "", ""
	for _, sc := range scenarios {
		step("click "+sc.button, chromedp.Click(chromedp.CSS("#"+sc.button)))
		id := poll("the order of "+sc.button, fmt.Sprintf(`(() => { const id = document.querySelector('#flash').dataset.orderId;
			return id && id !== %q ? id : false })()`, prev), 30*time.Second)
		prev = id
		if confirmed == "" {
			confirmed = id
		}
		row := fmt.Sprintf(`document.querySelector('tr[data-order-id="%s"]')`, id)
		got := poll(fmt.Sprintf("order %s (%s) to end as %s", id, sc.button, sc.order), fmt.Sprintf(`(() => {
			const tr = %s;
			if (!tr) return false;
			const st = (c) => tr.querySelector(c).dataset.status;
			return st('.order-status') === %q && st('.reservation') === %q && st('.payment') === %q && tr.innerText;
		})()`, row, sc.order, sc.reservation, sc.payment), 2*time.Minute)
		if !strings.Contains(got, sc.order) {
			t.Errorf("order %s: the row reads %q, want the text %s", id, got, sc.order)
		}
		t.Logf("%s: order %s: %s", sc.button, id, strings.Join(strings.Fields(got), " "))
	}

	// 10 at the start: one confirmed, one denied (given back), one not
	// reserved.
	if fresh {
		poll("product 1's stock of 9", `document.querySelector('.stock-item[data-product="1"] b')?.textContent === '9'`, 30*time.Second)
	}
	relays := poll("each relay's published events", `(() => {
		const cards = [...document.querySelectorAll('#relays .relay')];
		const ok = cards.length === 3 && cards.every((c) => Number(c.querySelector('[data-field="events_published"]').textContent) > 0
			&& c.querySelector('[data-field="last_event_at"]').textContent !== 'none yet');
		return ok && cards.map((c) => c.innerText.replace(/\s+/g, ' ')).join(' || ');
	})()`, 30*time.Second)
	t.Logf("relays: %s", relays)
	// Lag and retained WAL come with the slot's health, which each relay
	// reads at its heartbeat (every 10 s): wait for the first one.
	relays = poll("each relay's lag and retained WAL", `(() => {
		const cards = [...document.querySelectorAll('#relays .relay')];
		const ok = cards.every((c) => /\d+ (B|KiB|MiB|GiB)/.test(c.querySelector('[data-field="lag_bytes"]').textContent)
			&& /reserved|extended|unreserved|lost/.test(c.querySelector('[data-field="retained_wal_bytes"]').textContent));
		return ok && cards.map((c) => c.innerText.replace(/\s+/g, ' ')).join(' || ');
	})()`, time.Minute)
	t.Logf("relays: %s", relays)

	// Let the relays' "last event" settle, then keep a picture.
	step("settle", chromedp.Sleep(1500*time.Millisecond))
	png := saveScreenshot(t, ctx, "dashboard.png")
	if dst := os.Getenv("SAGA_DASHBOARD_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Errorf("SAGA_DASHBOARD_SCREENSHOT: %v", err)
		} else {
			t.Logf("screenshot also written to %s", dst)
		}
	}

	// The confirmed order's timeline: every service wrote a message of the
	// saga and consumed one, the order service's came first, and each
	// consumed message names the service that wrote it.
	step("open the timeline of order "+confirmed, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-order-id="%s"] td.id`, confirmed))))
	hops := poll("the timeline's hops", fmt.Sprintf(`(() => {
		const tl = document.querySelector('#timeline');
		if (tl.hidden || tl.dataset.orderId !== %q) return false;
		const hops = [...tl.querySelectorAll('.hop')];
		const has = (kind, svc) => hops.some((h) => h.dataset.kind === kind && h.dataset.service === svc);
		const all = ['order', 'stock', 'payment'].every((s) => has('written', s) && has('consumed', s));
		return all && hops.map((h) => h.innerText.replace(/\s+/g, ' ')).join(' || ');
	})()`, confirmed), time.Minute)
	t.Logf("timeline of order %s: %s", confirmed, hops)
	first := strings.Split(hops, " || ")[0]
	if !strings.Contains(first, "order wrote order.") {
		t.Errorf("the first hop is %q, want the order service's first message", first)
	}
	for _, h := range strings.Split(hops, " || ") {
		if strings.Contains(h, " consumed ") && (strings.Contains(h, "from ?") || !strings.Contains(h, "ms after it was written")) {
			t.Errorf("hop %q does not name the message's writer and the time since", h)
		}
	}
	png = saveScreenshot(t, ctx, "dashboard-timeline.png")
	if dst := os.Getenv("SAGA_DASHBOARD_TIMELINE_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Errorf("SAGA_DASHBOARD_TIMELINE_SCREENSHOT: %v", err)
		}
	}
	step("close the timeline", chromedp.Click(chromedp.CSS("#timeline-close")))
	poll("the timeline closed", `document.querySelector('#timeline').hidden`, 10*time.Second)
	if msg := jsErrors(); msg != "" {
		t.Errorf("the page threw:%s", msg)
	}
}

// browser starts headless Chromium for the test and returns its context
// and a func that lists the page's uncaught exceptions so far.
func browser(t *testing.T, parent context.Context, chrome string) (context.Context, func() string) {
	t.Helper()
	// Not t.TempDir: Chromium's helpers may still write there for a moment
	// after it exits, and a failed removal would fail the test.
	profile, err := os.MkdirTemp("", "saga-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(profile) })

	log := &proctest.Output{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // root in CI: Chromium's sandbox refuses to run as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1360, 960),
		chromedp.CombinedOutput(log),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	// Cancelling the allocator stops the browser and waits for it.
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})

	var mu sync.Mutex
	var thrown []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			mu.Lock()
			thrown = append(thrown, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start Chromium (%s): %v\n%s", chrome, err, log.String())
	}
	return ctx, func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(thrown) == 0 {
			return ""
		}
		return "\n  page exceptions:\n    " + strings.Join(thrown, "\n    ")
	}
}

// saveScreenshot writes a PNG of the whole page into the test's artifact
// directory, logs its path and returns it.
func saveScreenshot(t *testing.T, ctx context.Context, name string) []byte {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return png
}

// setField sets an input's value as a script would. (chromedp.Clear sets
// the value attribute, which no longer shows once a person has typed.)
func setField(id, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).value = %q`, id, value))
}

// pageText is the page's visible text, for a failure message.
func pageText(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return s
}

// findChromium returns the browser to drive: $SAGA_CHROMIUM, else chromium
// (Debian's package) or Chrome on PATH, else Debian's chromium package
// installed with apt-get when the test runs as root, as
// deploy/local/ensure-services.sh does for Postgres and RabbitMQ.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SAGA_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SAGA_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	look := func() string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		return ""
	}
	if p := look(); p != "" {
		return p
	}
	const how = "install Debian's chromium package (apt-get update && apt-get install -y chromium) or set SAGA_CHROMIUM to a Chrome or Chromium binary"
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		t.Fatalf("no Chromium found (looked for $SAGA_CHROMIUM and %s on PATH): %s", strings.Join(names, ", "), how)
	}
	t.Log("no Chromium found: installing Debian's chromium package with apt-get")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", "chromium"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s\n%s", strings.Join(args, " "), err, out, how)
		}
	}
	if p := look(); p != "" {
		return p
	}
	t.Fatalf("apt-get installed chromium, but it is not on PATH: %s", how)
	return ""
}
