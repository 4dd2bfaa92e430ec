package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/testenv"
)

func TestPrivateServersStartAndRestart(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
		ctx := context.Background()
		check := func() string {
			conn, err := pgx.Connect(ctx, pg.URL(""))
			require.NoError(t, err)
			defer conn.Close(ctx)
			var wal, ts string
			require.NoError(t, conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('track_commit_timestamp')`).Scan(&wal, &ts))
			return wal + " " + ts
		}
		require.Equal(t, "logical on", check())
		pg.Restart(t, "fast")
		require.Equal(t, "logical on", check())
		db := pg.NewDatabase(t)
		conn, err := pgx.Connect(ctx, db)
		require.NoError(t, err)
		conn.Close(ctx)
	})
	t.Run("rabbitmq", func(t *testing.T) {
		t.Parallel()
		b := testenv.StartRabbitMQ(t)
		began := time.Now()
		b.StopApp(t)
		b.StartApp(t)
		t.Logf("broker restart took %s", time.Since(began))
		require.Contains(t, b.MustCtl(t, "status"), b.Node)
	})
}
