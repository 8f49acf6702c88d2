#!/usr/bin/env bash
# Starts etcd + kube-apiserver + kube-scheduler on loopback for looking around by hand (the tests start
# their own through the Rust harness, tests/kube/src/cluster.rs). Writes RUN/kubeconfig; stop.sh RUN stops.
# usage: tests/k8s/start.sh [RUN_DIR]   env: API_PORT (16443), ETCD_PORT (23790)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$("$HERE/build.sh")
R=${1:-/tmp/kestrel-k8s}; mkdir -p "$R"; R=$(cd "$R" && pwd)
"$HERE/pki.sh" "$R/pki"
ETCD_PORT=${ETCD_PORT:-23790}; API_PORT=${API_PORT:-16443}
rm -rf "$R/etcd-data"
"$ROOT/bin/etcd" --name test --data-dir "$R/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "test=http://127.0.0.1:$((ETCD_PORT + 1))" --listen-metrics-urls '' > "$R/etcd.log" 2>&1 &
echo $! > "$R/etcd.pid"
"$ROOT/bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address=127.0.0.1 --insecure-port=0 \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$R/pki/apiserver.crt" --tls-private-key-file="$R/pki/apiserver.key" \
    --client-ca-file="$R/pki/ca.crt" --token-auth-file="$R/pki/tokens.csv" --anonymous-auth=false \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$R/pki/sa.pub" --service-account-signing-key-file="$R/pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --disable-admission-plugins=ServiceAccount \
    --cert-dir="$R/certs" > "$R/apiserver.log" 2>&1 &
echo $! > "$R/apiserver.pid"
cat > "$R/kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$R/pki/ca.crt"}
users:
- name: admin
  user: {token: kestrel-test-admin}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOK
for _ in $(seq 150); do
    curl -sf --cacert "$R/pki/ca.crt" -H "Authorization: Bearer kestrel-test-admin" "https://127.0.0.1:$API_PORT/readyz" >/dev/null && break
    sleep 0.2
done
"$ROOT/bin/kube-scheduler" --kubeconfig="$R/kubeconfig" --leader-elect=false --port=0 --secure-port=0 > "$R/scheduler.log" 2>&1 &
echo $! > "$R/scheduler.pid"
echo "KUBECONFIG=$R/kubeconfig"
