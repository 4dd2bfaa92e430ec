package platform

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnvDefaults(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db", "AMQP_URL": "amqp://mq"}), ":8001")
	require.NoError(t, err)
	assert.Equal(t, Config{
		DatabaseURL: "postgres://db", AMQPURL: "amqp://mq", HTTPAddr: ":8001", Exchange: "saga", QueueType: QueueClassic,
		Prefetch: 10, OutboxRetention: 7 * 24 * time.Hour, InboxRetention: 14 * 24 * time.Hour,
		RetentionInterval: time.Hour, ShutdownTimeout: 15 * time.Second, LogLevel: "info", LogFormat: "json",
	}, c)
}

func TestFromEnvOverrides(t *testing.T) {
	c, err := FromEnv(env(map[string]string{
		"DATABASE_URL": "postgres://db", "AMQP_URL": "amqp://mq", "HTTP_ADDR": "127.0.0.1:0",
		"SAGA_EXCHANGE": "x", "SAGA_QUEUE_PREFIX": "p.", "CONSUMER_PREFETCH": "1",
		"OUTBOX_RETENTION": "3d", "INBOX_RETENTION": "90h", "RETENTION_INTERVAL": "5m",
		"SHUTDOWN_TIMEOUT": "2s", "LOG_LEVEL": "debug", "LOG_FORMAT": "text", "SAGA_QUEUE_TYPE": "quorum",
	}), ":8000")
	require.NoError(t, err)
	assert.Equal(t, Config{
		DatabaseURL: "postgres://db", AMQPURL: "amqp://mq", HTTPAddr: "127.0.0.1:0", Exchange: "x", QueuePrefix: "p.", QueueType: QueueQuorum,
		Prefetch: 1, OutboxRetention: 72 * time.Hour, InboxRetention: 90 * time.Hour,
		RetentionInterval: 5 * time.Minute, ShutdownTimeout: 2 * time.Second, LogLevel: "debug", LogFormat: "text",
	}, c)
}

func TestFromEnvNamesTheBadVariable(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://db", "AMQP_URL": "amqp://mq"}
	for _, tc := range []struct {
		key, value, want string
	}{
		{"DATABASE_URL", "", "DATABASE_URL is required"},
		{"AMQP_URL", "", "AMQP_URL is required"},
		{"CONSUMER_PREFETCH", "many", `CONSUMER_PREFETCH: "many" is not an integer`},
		{"CONSUMER_PREFETCH", "0", "CONSUMER_PREFETCH: 0 is not a positive integer"},
		{"OUTBOX_RETENTION", "week", `OUTBOX_RETENTION: "week" is not a duration like 7d or 168h`},
		{"OUTBOX_RETENTION", "xd", `OUTBOX_RETENTION: "xd" is not a duration like 7d or 168h`},
		{"OUTBOX_RETENTION", "-1h", "OUTBOX_RETENTION: -1h0m0s is not positive"},
		{"INBOX_RETENTION", "0s", "INBOX_RETENTION: 0s is not positive"},
		{"RETENTION_INTERVAL", "0d", "RETENTION_INTERVAL: 0s is not positive"},
		{"SHUTDOWN_TIMEOUT", "-2s", "SHUTDOWN_TIMEOUT: -2s is not positive"},
		{"LOG_LEVEL", "loud", `LOG_LEVEL: "loud" is not one of debug, info, warn, error`},
		{"LOG_FORMAT", "xml", `LOG_FORMAT: "xml" is not one of json, text`},
		{"SAGA_QUEUE_TYPE", "stream", `SAGA_QUEUE_TYPE: "stream" is not one of classic, quorum`},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range base {
				m[k] = v
			}
			m[tc.key] = tc.value
			_, err := FromEnv(env(m), ":8000")
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}

// The URLs may come from files (DATABASE_URL_FILE, AMQP_URL_FILE), as
// Docker and Kubernetes secrets are mounted.
func TestFromEnvURLsFromFiles(t *testing.T) {
	dir := t.TempDir()
	db, mq := filepath.Join(dir, "db"), filepath.Join(dir, "mq")
	require.NoError(t, os.WriteFile(db, []byte("postgres://order:s3cret@db/order\n"), 0o600))
	require.NoError(t, os.WriteFile(mq, []byte("amqp://saga:s3cret@mq:5672/"), 0o600))
	c, err := FromEnv(env(map[string]string{"DATABASE_URL_FILE": db, "AMQP_URL_FILE": mq}), ":8000")
	require.NoError(t, err)
	assert.Equal(t, "postgres://order:s3cret@db/order", c.DatabaseURL)
	assert.Equal(t, "amqp://saga:s3cret@mq:5672/", c.AMQPURL)

	_, err = FromEnv(env(map[string]string{"DATABASE_URL": "postgres://db", "DATABASE_URL_FILE": db, "AMQP_URL_FILE": filepath.Join(dir, "nope")}), ":8000")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "DATABASE_URL_FILE: set either DATABASE_URL or DATABASE_URL_FILE, not both")
	assert.Contains(t, err.Error(), "AMQP_URL_FILE: read "+filepath.Join(dir, "nope")+": no such file or directory")
	assert.NotContains(t, err.Error(), "s3cret")
}

func TestValidateEmptyAddrAndExchange(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"DATABASE_URL": "d", "AMQP_URL": "a"}), ":8000")
	require.NoError(t, err)
	c.HTTPAddr = ""
	assert.EqualError(t, c.Validate(), "HTTP_ADDR is required")
	c.HTTPAddr, c.Exchange = ":1", ""
	assert.EqualError(t, c.Validate(), "SAGA_EXCHANGE must not be empty")
}
