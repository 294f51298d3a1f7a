# Shared by scripts/bench.sh and scripts/bench-scale.sh (sourced): the configuration files of
# the authoritative server and of Unbound, the same for every benchmark.

# nsd_conf DIR PORT ZONE: an nsd on 127.0.0.1:PORT serving ZONE from DIR/ZONE.zone, one
# process, response rate limiting off (Debian's default would drop part of a cold run).
nsd_conf() {
    cat > "$1/nsd.conf" <<EOF2
server:
  ip-address: 127.0.0.1@$2
  port: $2
  username: ""
  zonesdir: "$1"
  database: ""
  pidfile: "$1/nsd.pid"
  xfrdfile: "$1/xfrd.state"
  zonelistfile: "$1/zone.list"
  logfile: "$1/nsd.log"
  server-count: 1
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: $3
  zonefile: $3.zone
EOF2
}

# unbound_conf DIR PORT UPSTREAM_PORT ZONE: one thread on 127.0.0.1:PORT, the same policy as
# dnsfence's (ZONE forwarded to 127.0.0.1:UPSTREAM_PORT, every other name NXDOMAIN unforwarded).
unbound_conf() {
    cat > "$1/unbound.conf" <<EOF2
server:
  interface: 127.0.0.1@$2
  port: $2
  username: ""
  chroot: ""
  directory: "$1"
  pidfile: "$1/unbound.pid"
  use-syslog: no
  logfile: "$1/unbound.log"
  num-threads: 1
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  local-zone: "." always_nxdomain
  local-zone: "$4." transparent
  msg-cache-size: 64m
  rrset-cache-size: 64m
  module-config: "iterator"
forward-zone:
  name: "$4."
  forward-addr: 127.0.0.1@$3
EOF2
}
