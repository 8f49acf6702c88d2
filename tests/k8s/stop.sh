#!/usr/bin/env bash
# Stops what start.sh started (by the pids it wrote).
R=${1:-/tmp/kestrel-k8s}
for n in scheduler apiserver etcd; do
    [ -f "$R/$n.pid" ] && kill "$(cat "$R/$n.pid")" 2>/dev/null && echo "stopped $n"
    rm -f "$R/$n.pid"
done
