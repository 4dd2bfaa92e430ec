package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"
)

// contract is docs/openapi.yaml as kin-openapi reads it, routed to the
// services of one system.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

// loadOpenAPI loads and validates docs/openapi.yaml (an invalid document
// fails the test), closes every object schema that does not say otherwise
// (a key the document does not name is a contract change, not an extra),
// and routes its paths to the services of s.
func loadOpenAPI(t *testing.T, s *System) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join("..", "..", "docs", "openapi.yaml"))
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context), "docs/openapi.yaml is not a valid OpenAPI 3 document")
	closed := false
	for _, ref := range doc.Components.Schemas {
		closeObjects(ref.Value, map[*openapi3.Schema]bool{})
		closed = true
	}
	require.True(t, closed, "docs/openapi.yaml has no schemas")
	doc.Servers = openapi3.Servers{{URL: s.Order.URL}, {URL: s.Stock.URL}, {URL: s.Payment.URL}}
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	return &contract{doc: doc, router: router}
}

// closeObjects makes every object schema under sc refuse properties it does
// not list, unless it says what it allows.
func closeObjects(sc *openapi3.Schema, seen map[*openapi3.Schema]bool) {
	if sc == nil || seen[sc] {
		return
	}
	seen[sc] = true
	if sc.Type.Is(openapi3.TypeObject) && len(sc.Properties) > 0 && sc.AdditionalProperties.Has == nil && sc.AdditionalProperties.Schema == nil {
		no := false
		sc.AdditionalProperties.Has = &no
	}
	for _, p := range sc.Properties {
		closeObjects(p.Value, seen)
	}
	if sc.Items != nil {
		closeObjects(sc.Items.Value, seen)
	}
	for _, group := range []openapi3.SchemaRefs{sc.AllOf, sc.OneOf, sc.AnyOf} {
		for _, r := range group {
			closeObjects(r.Value, seen)
		}
	}
}

// call sends one request and holds its answer to the document: the path
// and method must be documented, and the status, headers and body must be
// one of the operation's responses. It returns the status and body.
// header holds name, value pairs to send.
func (c *contract) call(t *testing.T, method, url, body string, header ...string) (int, []byte) {
	t.Helper()
	req, resp, got := send(t, method, url, body, header...)
	route, params, err := c.router.FindRoute(req)
	require.NoError(t, err, "%s %s is not in docs/openapi.yaml", method, url)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if body != "" {
		req.Body = io.NopCloser(strings.NewReader(body))
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(got)), Options: in.Options,
	})
	require.NoError(t, err, "%s %s answered %d %s, which docs/openapi.yaml does not allow", method, url, resp.StatusCode, got)
	return resp.StatusCode, got
}

// schema holds v to the named component schema.
func (c *contract) schema(t *testing.T, name string, body []byte) {
	t.Helper()
	ref := c.doc.Components.Schemas[name]
	require.NotNil(t, ref, "no schema %s in docs/openapi.yaml", name)
	var v any
	require.NoError(t, json.Unmarshal(body, &v), "%s", body)
	require.NoError(t, ref.Value.VisitJSON(v), "%s does not match schema %s", body, name)
}

// checkResponses holds every HTTP answer of docs/contracts.md, "HTTP
// contract", to docs/openapi.yaml with kin-openapi: each list, the created
// order, field errors, and the 405 of a method a path does not serve.
func checkResponses(t *testing.T, s *System) {
	t.Helper()
	c := loadOpenAPI(t, s)
	for _, url := range []string{
		s.Order.URL + "/api/v1/orders/", s.Stock.URL + "/api/v1/stocks/",
		s.Stock.URL + "/api/v1/reservations/", s.Payment.URL + "/api/v1/payments/",
	} {
		code, body := c.call(t, http.MethodGet, url, "")
		require.Equal(t, http.StatusOK, code, url)
		require.NotEqual(t, "[]", strings.TrimSpace(string(body)), "%s: an empty list checks nothing", url)
	}
	code, _ := c.call(t, http.MethodPost, s.Order.URL+"/api/v1/orders/", `{"customer_id": "7", "product_id": 2, "amount": "3.50", "quantity": 2}`)
	require.Equal(t, http.StatusCreated, code)
	code, body := c.call(t, http.MethodPost, s.Order.URL+"/api/v1/orders/", `{"quantity": -1}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(body), "customer_id")

	// Idempotent creation: created, replayed, the key reused with other
	// fields, a bad key.
	key := "openapi-" + s.Exchange
	for _, want := range []int{http.StatusCreated, http.StatusOK} {
		code, body = c.call(t, http.MethodPost, s.Order.URL+"/api/v1/orders/", `{"customer_id": "8", "product_id": 2, "amount": "1", "quantity": 1}`, "Idempotency-Key", key)
		require.Equal(t, want, code, "%s", body)
	}
	code, _ = c.call(t, http.MethodPost, s.Order.URL+"/api/v1/orders/", `{"customer_id": "8", "product_id": 2, "amount": "2", "quantity": 1}`, "Idempotency-Key", key)
	require.Equal(t, http.StatusUnprocessableEntity, code)
	code, _ = c.call(t, http.MethodPost, s.Order.URL+"/api/v1/orders/", `{"customer_id": "8", "product_id": 2, "amount": "2", "quantity": 1}`, "Idempotency-Key", "no spaces please")
	require.Equal(t, http.StatusBadRequest, code)

	// The saga's messages, in each service: order 1 ran to its end, so
	// every service wrote and consumed some; each consumed message is a row
	// another service's outbox holds, which is how the dashboard joins them.
	written := map[string]string{} // outbox row id → service
	var consumed []InboxRow
	for svc, base := range map[string]string{"order": s.Order.URL, "stock": s.Stock.URL, "payment": s.Payment.URL} {
		code, body := c.call(t, http.MethodGet, base+"/api/v1/sagas/1/", "")
		require.Equal(t, http.StatusOK, code)
		var m struct {
			Service string `json:"service"`
			Outbox  []struct {
				ID string `json:"id"`
			} `json:"outbox"`
			Inbox []InboxRow `json:"inbox"`
		}
		require.NoError(t, json.Unmarshal(body, &m))
		require.Equal(t, svc, m.Service)
		require.NotEmpty(t, m.Outbox, "%s wrote nothing for order 1", svc)
		require.NotEmpty(t, m.Inbox, "%s consumed nothing of order 1", svc)
		for _, o := range m.Outbox {
			written[o.ID] = svc
		}
		for _, in := range m.Inbox {
			in.Service = svc
			consumed = append(consumed, in)
		}
	}
	for _, in := range consumed {
		from, ok := written[in.MessageID]
		require.True(t, ok, "%s consumed %s, which no outbox holds", in.Service, in.MessageID)
		require.NotEqual(t, in.Service, from, "%s consumed its own message %s", in.Service, in.MessageID)
	}
	code, _ = c.call(t, http.MethodGet, s.Stock.URL+"/api/v1/sagas/one/", "")
	require.Equal(t, http.StatusBadRequest, code)

	// A method the path does not serve has no operation to route to: its
	// answer is held to the Detail schema the document names for it.
	code, b := Do(t, http.MethodPost, s.Stock.URL+"/api/v1/stocks/", `{}`)
	require.Equal(t, http.StatusMethodNotAllowed, code)
	c.schema(t, "Detail", []byte(b))
}

// InboxRow is a consumed message of GET /api/v1/sagas/{order_id}/, and the
// service that consumed it.
type InboxRow struct {
	MessageID string `json:"message_id"`
	Service   string `json:"-"`
}
