package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The verifier's keys are right: with RFC 7677's example (password
// "pencil", its salt and 4096 iterations) they give the server signature
// the RFC's exchange shows.
func TestScramVerifierRFC7677(t *testing.T) {
	salt, err := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	require.NoError(t, err)
	v, err := scramVerifierWith("pencil", salt, 4096)
	require.NoError(t, err)
	head, keys, ok := strings.Cut(v, "$")
	require.True(t, ok)
	assert.Equal(t, "SCRAM-SHA-256", head)
	parts := strings.Split(keys, "$")
	require.Len(t, parts, 2)
	assert.Equal(t, "4096:W22ZaJ0SNY7soEsUEjb6gQ==", parts[0])
	ks := strings.Split(parts[1], ":")
	require.Len(t, ks, 2)
	serverKey, err := base64.StdEncoding.DecodeString(ks[1])
	require.NoError(t, err)
	const authMessage = "n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	m := hmac.New(sha256.New, serverKey)
	m.Write([]byte(authMessage))
	assert.Equal(t, "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", base64.StdEncoding.EncodeToString(m.Sum(nil)))

	a, err := scramVerifier("pencil")
	require.NoError(t, err)
	b, err := scramVerifier("pencil")
	require.NoError(t, err)
	assert.NotEqual(t, a, b, "a salt of its own each time")
	assert.NotContains(t, a, "pencil")
}
