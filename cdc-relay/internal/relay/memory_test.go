package relay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/saga-cdc/saga/cdc-relay/internal/checkpoint"
	"github.com/saga-cdc/saga/cdc-relay/internal/replication"
)

// A session resumes from the further of the slot's position and the one
// this process had confirmed, but only on the same server and within its
// WAL: a restored backup or another cluster starts from the slot's.
func TestMemoryResumeFrom(t *testing.T) {
	tests := []struct {
		name      string
		confirmed checkpoint.LSN
		confSys   string
		slot      checkpoint.LSN
		sys       replication.System
		want      checkpoint.LSN
		ours      bool
	}{
		{"nothing confirmed yet", 0, "", 0x100, replication.System{ID: "a", WALEnd: 0x900}, 0x100, false},
		{"ahead of the slot (a restart lost its position)", 0x500, "a", 0x100, replication.System{ID: "a", WALEnd: 0x900}, 0x500, true},
		{"behind the slot", 0x50, "a", 0x100, replication.System{ID: "a", WALEnd: 0x900}, 0x100, false},
		{"another server (a failover to another cluster)", 0x500, "a", 0x100, replication.System{ID: "b", WALEnd: 0x900}, 0x100, false},
		{"past the server's WAL (restored from a backup)", 0x500, "a", 0x100, replication.System{ID: "a", WALEnd: 0x400}, 0x100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m memory
			if tt.confSys != "" {
				m.sessionConfirmed(tt.confirmed, tt.confSys)
			}
			got, ours := m.resumeFrom(tt.slot, tt.sys)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.ours, ours)
		})
	}
}

func TestMemorySessionConfirmed(t *testing.T) {
	var m memory
	m.sessionConfirmed(0x300, "a")
	m.sessionConfirmed(0x200, "a") // a later session that confirmed less keeps the highest
	got, _ := m.resumeFrom(0, replication.System{ID: "a", WALEnd: 0x1000})
	assert.Equal(t, checkpoint.LSN(0x300), got)
	m.sessionConfirmed(0x100, "b") // another server: its own positions only
	got, _ = m.resumeFrom(0, replication.System{ID: "b", WALEnd: 0x1000})
	assert.Equal(t, checkpoint.LSN(0x100), got)
	got, _ = m.resumeFrom(0, replication.System{ID: "a", WALEnd: 0x1000})
	assert.Equal(t, checkpoint.LSN(0), got)
}

// What one session learns of single messages reaches the next: a returned
// message held until confirmed, a message too large as poison until parked,
// the first start's ownership until its snapshot is confirmed, and the
// last confirmed commit for the repair hint.
func TestMemoryAcrossSessions(t *testing.T) {
	var m memory
	m.hold("m1")
	m.release("m2")
	assert.Equal(t, "m1", m.heldID(), "another id does not release it")
	m.release("m1")
	assert.Empty(t, m.heldID())

	_, ok := m.poisoned("m3")
	assert.False(t, ok)
	m.setPoison("m3", "frame too large")
	reason, ok := m.poisoned("m3")
	assert.True(t, ok)
	assert.Equal(t, "frame too large", reason)
	m.parked("m3")
	_, ok = m.poisoned("m3")
	assert.False(t, ok)

	m.setOurs()
	m.setCreated(0x700)
	assert.True(t, m.outboxIsOurs())
	assert.Equal(t, checkpoint.LSN(0x700), m.createdAt())
	m.forget()
	assert.False(t, m.outboxIsOurs())
	assert.Zero(t, m.createdAt())

	assert.Empty(t, m.repairHint().LastConfirmedCommit, "nothing confirmed: no hint")
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456000, time.FixedZone("x", 3600))
	m.confirmed(checkpoint.Positions{ConfirmedCommit: at})
	m.confirmed(checkpoint.Positions{ConfirmedCommit: at.Add(-time.Hour)}) // older: kept the newest
	assert.Equal(t, "2026-12-02T09:00:00.123456Z", m.repairHint().LastConfirmedCommit)
}
