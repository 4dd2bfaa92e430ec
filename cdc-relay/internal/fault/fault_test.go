package fault

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKinds(t *testing.T) {
	base := errors.New("wal_level is replica")
	f := Fatal(base)
	assert.ErrorIs(t, f, ErrFatal)
	assert.ErrorIs(t, fmt.Errorf("prepare: %w", f), ErrFatal, "wrapped, still fatal")
	assert.ErrorIs(t, f, base, "the cause stays reachable")
	assert.Equal(t, base.Error(), f.Error())
	assert.NotErrorIs(t, base, ErrFatal)
	assert.ErrorIs(t, Fatalf("slot %q: %w", "s", base), ErrFatal)

	lost := SlotLost("s1", "it was dropped", RepairHint{})
	assert.ErrorIs(t, lost, ErrFatal)
	assert.Contains(t, lost.Error(), `replication slot "s1" is lost: it was dropped`)
	assert.Contains(t, lost.Error(), "confirmed_commit_time in /status")
	hinted := SlotLost("s1", "its WAL was removed", RepairHint{LastConfirmedCommit: "2026-12-02T10:00:00Z"})
	assert.Contains(t, hinted.Error(), "cdc-relay replay --since 2026-12-02T10:00:00Z")
}

func TestTLSRefused(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"an unknown authority", x509.UnknownAuthorityError{}, true},
		{"another host name", fmt.Errorf("dial: %w", x509.HostnameError{Host: "db"}), true},
		{"an expired certificate", x509.CertificateInvalidError{Reason: x509.Expired}, true},
		{"the handshake's verification error", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, true},
		{"a connection refused", errors.New("connect: connection refused"), false},
		{"an EOF", io.EOF, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, TLSRefused(tt.err)) })
	}
}
