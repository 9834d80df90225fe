#!/usr/bin/env bash
# pki.sh DIR: an ECDSA P-256 test PKI for the KMIP tests (PyKMIP's TLS 1.2 GCM suites are ECDSA
# only): ca.{crt,key}, server.{crt,key} for 127.0.0.1/localhost, client.{crt,key} (CN
# dekfs-client, the owner of the keys it creates) and other.{crt,key} (CN dekfs-other, a client
# without rights on them). Test material only: nothing here protects anything real.
set -euo pipefail
d=$1
cd "$d"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
key ca
openssl req -x509 -new -key ca.key -subj "/CN=dekfs test CA" -days 2 -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf() { # name CN ext
    key "$1"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
leaf server "localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth
basicConstraints=CA:FALSE"
leaf client "dekfs-client" "extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE"
leaf other "dekfs-other" "extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE"
