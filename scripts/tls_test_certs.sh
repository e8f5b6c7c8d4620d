#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Makes a throwaway test PKI for the TLS tests, with fresh keys every run (never commit
# them). Needs only the openssl command (3.0 or later). Prints nothing unless it fails.
#
#   tls_test_certs.sh OUTDIR                  everything below, into OUTDIR (made if missing;
#                                             a second run overwrites every file)
#   tls_test_certs.sh OUTDIR --server-only NAME
#                                             NAME.pem/NAME.key: another server certificate
#                                             like server.pem, signed by OUTDIR/ca.key (for
#                                             reload tests: same CA, new serial and key)
#
# Files (keys EC P-256 unless noted; every leaf has a random 128-bit serial):
#   ca.pem ca.key                    self-signed "ringnet test CA"
#   server.pem server.key            CN=localhost, SAN DNS:localhost IP:127.0.0.1 IP:::1,
#                                    serverAuth; the leaf alone
#   server-chain.pem                 server.pem + ca.pem
#   server-rsa.pem server-rsa.key    the same with an RSA-2048 key
#   client.pem client.key            CN=client, clientAuth
#   client-expired.pem .key          CN=client-expired, clientAuth, valid only 2020-01-01..02
#   rogue-ca.pem rogue-ca.key        another self-signed CA ("ringnet rogue CA")
#   client-untrusted.pem .key        CN=client-untrusted, clientAuth, signed by rogue-ca
#   other-name.pem other-name.key    serverAuth for DNS:wrong.example only, signed by ca
set -euo pipefail

usage() {
  echo "usage: $0 OUTDIR [--server-only NAME]" >&2
  exit 2
}

(($# == 1 || $# == 3)) || usage
out=$1
only=""
if (($# == 3)); then
  [[ $2 == --server-only && -n $3 && $3 != */* ]] || usage
  only=$3
fi
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077  # keys readable by their owner only

# A minimal config (req needs a [req] section) with the extensions of each kind of
# certificate; nothing is read from the system's openssl.cnf, so the result does not
# depend on it.
cat >"$work/ext.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[other_name_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

ec_key() {  # FILE
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

rsa_key() {  # FILE
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
}

# A positive 128-bit serial (the top bit clear).
serial() {
  printf '0x%x%s' $((RANDOM % 128)) "$(openssl rand -hex 15)"
}

# self_signed_ca NAME "CN": NAME.key and NAME.pem.
self_signed_ca() {
  ec_key "$work/$1.key"
  openssl req -config "$work/ext.cnf" -new -x509 -key "$work/$1.key" -subj "/CN=$2" \
    -days 3650 -sha256 -set_serial "$(serial)" -extensions ca_ext -out "$work/$1.pem"
  install -m 600 "$work/$1.key" "$out/$1.key"
  install -m 644 "$work/$1.pem" "$out/$1.pem"
}

# leaf NAME CN EXTENSIONS CA_NAME KEYTYPE: NAME.key and NAME.pem, signed by CA_NAME
# (read from $out).
leaf() {
  local name=$1 cn=$2 ext=$3 ca=$4 keytype=$5
  "${keytype}_key" "$work/$name.key"
  openssl req -config "$work/ext.cnf" -new -key "$work/$name.key" -subj "/CN=$cn" \
    -out "$work/$name.csr"
  openssl x509 -req -in "$work/$name.csr" -CA "$out/$ca.pem" -CAkey "$out/$ca.key" \
    -set_serial "$(serial)" -days 825 -sha256 -extfile "$work/ext.cnf" \
    -extensions "$ext" -out "$work/$name.pem" 2>/dev/null
  install -m 600 "$work/$name.key" "$out/$name.key"
  install -m 644 "$work/$name.pem" "$out/$name.pem"
}

# expired_leaf NAME CN: signed by ca, valid only from 2020-01-01 to 2020-01-02. `x509 -req`
# in OpenSSL 3.0 cannot set a start date, `ca` can (it wants a database, kept in $work).
expired_leaf() {
  local name=$1 cn=$2
  ec_key "$work/$name.key"
  openssl req -config "$work/ext.cnf" -new -key "$work/$name.key" -subj "/CN=$cn" \
    -out "$work/$name.csr"
  mkdir -p "$work/ca-db"
  : >"$work/ca-db/index.txt"
  cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
dir = $work/ca-db
database = \$dir/index.txt
new_certs_dir = \$dir
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
EOF
  openssl ca -config "$work/ca.cnf" -batch -notext -cert "$out/ca.pem" -keyfile "$out/ca.key" \
    -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$work/ext.cnf" \
    -extensions client_ext -in "$work/$name.csr" -out "$work/$name.pem" 2>/dev/null
  install -m 600 "$work/$name.key" "$out/$name.key"
  install -m 644 "$work/$name.pem" "$out/$name.pem"
}

if [[ -n $only ]]; then
  [[ -f $out/ca.pem && -f $out/ca.key ]] || { echo "$0: no ca.pem/ca.key in $out" >&2; exit 1; }
  leaf "$only" localhost server_ext ca ec
  exit 0
fi

self_signed_ca ca "ringnet test CA"
leaf server localhost server_ext ca ec
cat "$out/server.pem" "$out/ca.pem" >"$work/server-chain.pem"
install -m 644 "$work/server-chain.pem" "$out/server-chain.pem"
leaf server-rsa localhost server_ext ca rsa
leaf client client client_ext ca ec
expired_leaf client-expired client-expired
self_signed_ca rogue-ca "ringnet rogue CA"
leaf client-untrusted client-untrusted client_ext rogue-ca ec
leaf other-name wrong.example other_name_ext ca ec
