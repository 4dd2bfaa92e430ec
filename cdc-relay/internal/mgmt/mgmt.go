// Package mgmt is the little of RabbitMQ's HTTP API the relay uses: the
// policy that links its exchange to the park mode's alternate exchange, and
// reading which alternate exchange is in effect. AMQP 0-9-1 can do neither.
package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"time"
)

// Client talks to one broker's HTTP API.
type Client struct {
	base, user, password string
	http                 *http.Client
}

// New returns a client of the API at base (http://host:15672) with the
// credentials of a user that may set policies (the policymaker tag).
func New(base, user, password string) *Client {
	return &Client{base: base, user: user, password: password, http: &http.Client{Timeout: 10 * time.Second}}
}

// PolicyName is the name of the relay's policy for exchange.
func PolicyName(exchange string) string { return "cdc-relay-unroutable-" + exchange }

// SetAlternateExchange sets (idempotently) the policy that gives exchange
// the alternate exchange ae in vhost. The policy matches that exchange
// alone, at priority 0: a policy of the operator's with a higher priority on
// the same exchange wins, and AlternateExchange then tells.
func (c *Client) SetAlternateExchange(ctx context.Context, vhost, exchange, ae string) error {
	body, _ := json.Marshal(map[string]any{
		"pattern":    "^" + regexp.QuoteMeta(exchange) + "$",
		"apply-to":   "exchanges",
		"priority":   0,
		"definition": map[string]string{"alternate-exchange": ae},
	})
	return c.do(ctx, http.MethodPut, "/api/policies/"+url.PathEscape(vhost)+"/"+url.PathEscape(PolicyName(exchange)), body, nil)
}

// AlternateExchange returns the alternate exchange in effect for exchange
// (from a policy or a declaration argument), or "".
func (c *Client) AlternateExchange(ctx context.Context, vhost, exchange string) (string, error) {
	var x struct {
		Arguments map[string]any `json:"arguments"`
		Effective map[string]any `json:"effective_policy_definition"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/exchanges/"+url.PathEscape(vhost)+"/"+url.PathEscape(exchange), nil, &x); err != nil {
		return "", err
	}
	if ae, ok := x.Arguments["alternate-exchange"].(string); ok {
		return ae, nil
	}
	ae, _ := x.Effective["alternate-exchange"].(string)
	return ae, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("RabbitMQ HTTP API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("RabbitMQ HTTP API: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("RabbitMQ HTTP API: %s %s: %w", method, path, err)
		}
	}
	return nil
}
