#!/usr/bin/env bash
# Certificates and a static admin token for a loopback test control plane.
# usage: tests/k8s/pki.sh DIR   (writes ca.crt, apiserver.{crt,key}, sa.{key,pub}, tokens.csv)
set -euo pipefail
mkdir -p "$1" && cd "$1"
[ -f tokens.csv ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=kestrel-test-ca" 2>/dev/null
cat > san.cnf <<EOT
[req]
distinguished_name=dn
[dn]
[ext]
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
basicConstraints=critical,CA:FALSE
EOT
openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 \
    -extfile san.cnf -extensions ext 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
# token,user,uid,"groups"
echo 'kestrel-test-admin,admin,admin,"system:masters"' > tokens.csv
