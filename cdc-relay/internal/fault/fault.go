// Package fault holds the relay's error kinds that decide what happens
// next: a fatal error (an operator must act: the relay stops, naming the
// fix), a slot held by another relay (a standby waits), a lost slot (the
// repair is named), a certificate that cannot be verified. Everything else
// is retried with backoff.
package fault

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Errors callers branch on. Fatal ones need an operator; the relay stops with
// their message. ErrSlotActive means another relay holds the slot.
var (
	ErrFatal      = errors.New("fatal: retrying will not help")
	ErrSlotActive = errors.New("replication slot is in use by another connection")
)

// fatalError is a problem that retrying will not fix; its message says what
// the operator should do, and it matches ErrFatal.
type fatalError struct{ err error }

func (e *fatalError) Error() string        { return e.err.Error() }
func (e *fatalError) Unwrap() error        { return e.err }
func (e *fatalError) Is(target error) bool { return target == ErrFatal }

// Fatal marks err as one that retrying will not fix.
func Fatal(err error) error { return &fatalError{err: err} }

// Fatalf is Fatal of a formatted error.
func Fatalf(format string, args ...any) error { return Fatal(fmt.Errorf(format, args...)) }

// RepairHint is what an operator passes to replay after a lost slot: the
// commit time of the last transaction the relay confirmed, when it knows it.
type RepairHint struct {
	// LastConfirmedCommit is the commit time of the last transaction whose
	// every message the broker confirmed; zero when unknown (the relay had
	// not streamed the slot since it started).
	LastConfirmedCommit string
}

// SlotLost is the fatal error of a slot that can no longer deliver what was
// written since it last streamed; it names the repair (docs/operations.md,
// "4. Repair after a lost slot").
func SlotLost(slot, why string, hint RepairHint) error {
	since := "<commit time of the last transaction consumers received: the relay's last confirmed_commit_time in /status or its logs>"
	if hint.LastConfirmedCommit != "" {
		since = hint.LastConfirmedCommit + " (the commit time of the last transaction this relay confirmed)"
	}
	return Fatalf("replication slot %q is lost: %s; rows written since it last streamed are not in its stream. "+
		"Repair: `cdc-relay slot create` (after `cdc-relay slot drop --force` if it still exists), "+
		"then `cdc-relay replay --since %s`, then start the relay; consumers dedup the overlap by message id", slot, why, since)
}

// TLSRefused reports whether err is a server certificate the client could
// not verify (an unknown authority, a host name it was not issued for, an
// expired certificate): a configuration problem no retry fixes.
func TLSRefused(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}
