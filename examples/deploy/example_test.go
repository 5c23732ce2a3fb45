package deploy_test

import (
	"fmt"

	"github.com/pgha/pgha/examples/deploy"
)

// The metric names an expression of the dashboard reads: label names,
// functions, aggregations and Grafana variables are left out.
func ExampleMetricNames() {
	names, err := deploy.MetricNames(`max by (scope) (patroni_xlog_location{scope=~"$scope"})
		- on (scope) group_right () (patroni_xlog_replayed_location and on (scope, name) patroni_replica == 1)`)
	fmt.Println(names, err)
	names, err = deploy.MetricNames(`changes(max(patroni_postgres_timeline{scope=~"$scope"} > 0)[$__range:15s])`)
	fmt.Println(names, err)
	names, err = deploy.MetricNames(`time() - patroni_dcs_last_seen offset 5m > 60`)
	fmt.Println(names, err)
	names, err = deploy.MetricNames(`label_values(patroni_primary, scope)`)
	fmt.Println(names, err)
	// Output:
	// [patroni_replica patroni_xlog_location patroni_xlog_replayed_location] <nil>
	// [patroni_postgres_timeline] <nil>
	// [patroni_dcs_last_seen] <nil>
	// [patroni_primary] <nil>
}
