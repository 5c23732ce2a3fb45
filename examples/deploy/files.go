package deploy

import "embed"

// Files holds the kit: systemd/, config/, haproxy/, prometheus/, grafana/.
//
//go:embed systemd config haproxy prometheus grafana
var Files embed.FS
