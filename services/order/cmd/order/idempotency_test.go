package main

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/services/internal/platform/platformtest"
)

// post sends POST /api/v1/orders/ with an Idempotency-Key.
func post(t *testing.T, svc *platformtest.Service, key, body string) (int, string, http.Header) {
	t.Helper()
	code, b, h, err := tryPost(svc, key, body)
	require.NoError(t, err)
	return code, b, h
}

// tryPost is post for other goroutines than the test's: it returns its error.
func tryPost(svc *platformtest.Service, key, body string) (int, string, http.Header, error) {
	req, err := http.NewRequest(http.MethodPost, svc.URL+"/api/v1/orders/", strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// A client that retries a POST whose answer it lost, with the same
// Idempotency-Key, gets the first order back and starts no second saga;
// eight retries at once make one order too. The key with other fields is
// refused, and orders without a key are as before.
func TestIdempotencyKeyMakesOneOrder(t *testing.T) {
	svc := start(t)
	conn := platformtest.Conn(t, svc.Env.Vars["DATABASE_URL"])
	const body = `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1}`

	code, first, h := post(t, svc, "retry-1", body)
	require.Equal(t, http.StatusCreated, code, first)
	assert.Empty(t, h.Get("Idempotent-Replayed"))
	code, again, h := post(t, svc, "retry-1", body)
	require.Equal(t, http.StatusOK, code, again)
	assert.Equal(t, "true", h.Get("Idempotent-Replayed"))
	assert.JSONEq(t, first, again)
	assert.Equal(t, 1, platformtest.Count(t, conn, "orders", ""))
	assert.Equal(t, 2, platformtest.Count(t, conn, "outbox", ""), "the retry wrote no outbox row")

	code, other, _ := post(t, svc, "retry-1", `{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 2}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, other)
	assert.JSONEq(t, `{"Idempotency-Key": ["Already used for order 1, with other fields."]}`, other)

	var wg sync.WaitGroup
	codes := make([]int, 8)
	bodies := make([]string, 8)
	errs := make([]error, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], bodies[i], _, errs[i] = tryPost(svc, "burst", body)
		}()
	}
	wg.Wait()
	created := 0
	for i, c := range codes {
		require.NoError(t, errs[i])
		require.Contains(t, []int{http.StatusCreated, http.StatusOK}, c, bodies[i])
		if c == http.StatusCreated {
			created++
		}
		assert.JSONEq(t, bodies[0], bodies[i], "every retry answers the same order")
	}
	assert.Equal(t, 1, created)
	assert.Equal(t, 2, platformtest.Count(t, conn, "orders", ""))
	assert.Equal(t, 4, platformtest.Count(t, conn, "outbox", ""))

	for range 2 {
		code, b := svc.Do(t, http.MethodPost, "/api/v1/orders/", body)
		require.Equal(t, http.StatusCreated, code, b)
	}
	assert.Equal(t, 4, platformtest.Count(t, conn, "orders", ""), "without a key, each POST is an order")
	assert.Equal(t, 2, platformtest.Count(t, conn, "orders", "idempotency_key IS NULL"))
}
