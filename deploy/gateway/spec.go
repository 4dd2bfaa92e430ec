package gateway

import (
	"fmt"
	"net/url"
	"strings"
)

// ParseTargets reads a list like "order=http://127.0.0.1:8000,stock=http://127.0.0.1:8001"
// into names and URLs, in order. It is the format of the gateway's
// GATEWAY_ROUTES and GATEWAY_RELAYS variables.
func ParseTargets(spec string) ([]string, []*url.URL, error) {
	var names []string
	var urls []*url.URL
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, raw, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, nil, fmt.Errorf("%q: want name=http://host:port", item)
		}
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return nil, nil, fmt.Errorf("%q: %w", item, err)
		}
		if err := checkUpstream(u); err != nil {
			return nil, nil, fmt.Errorf("%q: %w", item, err)
		}
		names = append(names, name)
		urls = append(urls, u)
	}
	return names, urls, nil
}

// Routes turns names and URLs into routes under "/<name>".
func Routes(names []string, urls []*url.URL) []Route {
	routes := make([]Route, len(names))
	for i := range names {
		routes[i] = Route{Prefix: "/" + strings.Trim(names[i], "/"), Upstream: urls[i]}
	}
	return routes
}
