package routing_test

import (
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/pgha/pgha/internal/etcdtest"
)

var (
	etcdOnce sync.Once
	etcdSrv  *etcdtest.Etcd
	etcdErr  error
)

// sharedEtcd starts the package's embedded etcd on first use; TestMain
// stops it.
func sharedEtcd(t testing.TB) *etcdtest.Etcd {
	t.Helper()
	etcdOnce.Do(func() { etcdSrv, etcdErr = etcdtest.Start("routing-test") })
	if etcdErr != nil {
		t.Fatalf("embedded etcd: %v", etcdErr)
	}
	return etcdSrv
}

type mainRunner struct{ m *testing.M }

func (r mainRunner) Run() int {
	code := r.m.Run()
	if etcdSrv != nil {
		etcdSrv.Stop()
	}
	return code
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(mainRunner{m})
}
