package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/tests/helpers/testenv"
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

func TestPostgresOfEachMajorAndAPair(t *testing.T) {
	testenv.OutsideTheMatrix(t)
	t.Parallel()
	for _, major := range []int{14, 16, 17, 18} {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			t.Parallel()
			pg := testenv.StartPostgres(t, testenv.PostgresOptions{Major: major})
			var v int
			require.NoError(t, pg.QueryRow(t, "", `SELECT current_setting('server_version_num')::int / 10000`, &v))
			require.Equal(t, major, v)
		})
	}
	t.Run("pair of 17", func(t *testing.T) {
		t.Parallel()
		p := testenv.StartPostgresPair(t, testenv.PostgresOptions{Major: 17})
		var inRecovery bool
		require.NoError(t, p.Standby.QueryRow(t, "", `SELECT pg_is_in_recovery()`, &inRecovery))
		require.True(t, inRecovery)
		p.Primary.MustExec(t, "", `CREATE TABLE replicated (v int); INSERT INTO replicated VALUES (1)`)
		require.Eventually(t, func() bool {
			var n int
			return p.Standby.QueryRow(t, "", `SELECT count(*) FROM replicated`, &n) == nil && n == 1
		}, 10*time.Second, 20*time.Millisecond)
		p.Primary.Stop(t, "immediate")
		p.Standby.Promote(t)
		require.NoError(t, p.Standby.QueryRow(t, "", `SELECT pg_is_in_recovery()`, &inRecovery))
		require.False(t, inRecovery)
	})
}
