package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// openAPI is the part of docs/openapi.yaml the contract check reads.
type openAPI struct {
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Schemas map[string]*schema `yaml:"schemas"`
	} `yaml:"components"`
}

type schema struct {
	Ref        string             `yaml:"$ref"`
	Type       string             `yaml:"type"`
	Enum       []any              `yaml:"enum"`
	Required   []string           `yaml:"required"`
	Properties map[string]*schema `yaml:"properties"`
	Items      *schema            `yaml:"items"`
}

func loadOpenAPI(t *testing.T) *openAPI {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "openapi.yaml"))
	require.NoError(t, err)
	var doc openAPI
	require.NoError(t, yaml.Unmarshal(b, &doc))
	return &doc
}

func (d *openAPI) resolve(s *schema) *schema {
	for s != nil && s.Ref != "" {
		s = d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

// check reports how v (decoded JSON) departs from the named schema: a
// missing or extra key, a value of the wrong type, a value outside the enum.
func (d *openAPI) check(name string, v any) []string {
	s := d.Components.Schemas[name]
	if s == nil {
		return []string{"no schema " + name + " in docs/openapi.yaml"}
	}
	return d.checkValue(name, s, v)
}

func (d *openAPI) checkValue(at string, s *schema, v any) []string {
	s = d.resolve(s)
	var errs []string
	switch s.Type {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %T", at, v)}
		}
		for _, k := range s.Required {
			if _, ok := obj[k]; !ok {
				errs = append(errs, fmt.Sprintf("%s: missing %q", at, k))
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p, ok := s.Properties[k]
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: %q is not in the schema", at, k))
				continue
			}
			errs = append(errs, d.checkValue(at+"."+k, p, obj[k])...)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an array, got %T", at, v)}
		}
		for i, e := range arr {
			errs = append(errs, d.checkValue(fmt.Sprintf("%s[%d]", at, i), s.Items, e)...)
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			errs = append(errs, fmt.Sprintf("%s: want an integer, got %v", at, v))
		}
	case "string":
		if _, ok := v.(string); !ok {
			errs = append(errs, fmt.Sprintf("%s: want a string, got %T %v", at, v, v))
		}
	}
	if len(s.Enum) > 0 && !slices.Contains(s.Enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, s.Enum))
	}
	return errs
}

// checkResponses holds every HTTP answer of docs/contracts.md, "HTTP
// contract", to docs/openapi.yaml: lists, the created order, field errors and
// 405; and that each path the services serve is documented with the method
// used.
func checkResponses(t *testing.T, s *System) {
	t.Helper()
	doc := loadOpenAPI(t)
	for path, method := range map[string]string{
		"/api/v1/orders/": "post", "/api/v1/stocks/": "get", "/api/v1/reservations/": "get", "/api/v1/payments/": "get",
	} {
		_, ok := doc.Paths[path][method]
		require.True(t, ok, "docs/openapi.yaml lacks %s %s", method, path)
	}
	lists := []struct {
		url, schema string
	}{
		{s.Order.URL + "/api/v1/orders/", "Order"},
		{s.Stock.URL + "/api/v1/stocks/", "Stock"},
		{s.Stock.URL + "/api/v1/reservations/", "Reservation"},
		{s.Payment.URL + "/api/v1/payments/", "Payment"},
	}
	for _, l := range lists {
		var items []any
		GetJSON(t, l.url, &items)
		require.NotEmpty(t, items, l.url)
		for i, it := range items {
			require.Empty(t, doc.check(l.schema, it), "%s item %d", l.url, i)
		}
	}
	code, body := Do(t, "POST", s.Order.URL+"/api/v1/orders/", `{"customer_id": "7", "product_id": 2, "amount": "3.50", "quantity": 2}`)
	require.Equal(t, 201, code)
	var created any
	require.NoError(t, json.Unmarshal([]byte(body), &created))
	require.Empty(t, doc.check("Order", created), body)

	code, body = Do(t, "POST", s.Order.URL+"/api/v1/orders/", `{"quantity": -1}`)
	require.Equal(t, 400, code)
	var fieldErrs map[string][]string
	require.NoError(t, json.Unmarshal([]byte(body), &fieldErrs), "400 is {field: [messages]}: %s", body)
	require.Contains(t, fieldErrs, "customer_id")

	code, body = Do(t, "POST", s.Stock.URL+"/api/v1/stocks/", `{}`)
	require.Equal(t, 405, code)
	var detail any
	require.NoError(t, json.Unmarshal([]byte(body), &detail))
	require.Empty(t, doc.check("Detail", detail), body)
}
