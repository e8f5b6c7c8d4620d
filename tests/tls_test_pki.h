// SPDX-License-Identifier: MIT
// A throwaway PKI for the TLS tests, made in-process with OpenSSL (fresh EC P-256 keys
// every run, PEM files in a temporary directory removed at the end): a CA, a server
// certificate for localhost / 127.0.0.1 / ::1, a client certificate, one signed by
// another CA, an expired one, and a server certificate for another name.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

namespace ringnet::test {

class TestPki {
 public:
  struct Pair {
    std::string cert, key;  // file paths
  };

  TestPki() {
    char tmpl[] = "/tmp/ringnet-pki-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    Issuer ca = make_ca("ringnet test CA", "ca");
    Issuer rogue = make_ca("rogue CA", "rogue-ca");
    server = issue(ca, "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth", 0, 1, "server");
    other_name = issue(ca, "wrong.example", "DNS:wrong.example", "serverAuth", 0, 1, "other");
    client = issue(ca, "client", "", "clientAuth", 0, 1, "client");
    untrusted_client = issue(rogue, "rogue client", "", "clientAuth", 0, 1, "untrusted");
    expired_client = issue(ca, "expired client", "", "clientAuth", -3, -2, "expired");
    ca_file = dir_ + "/ca.pem";
    free_issuer(ca);
    free_issuer(rogue);
  }
  ~TestPki() { std::filesystem::remove_all(dir_); }
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  std::string ca_file;
  Pair server, other_name, client, untrusted_client, expired_client;

 private:
  struct Issuer {
    EVP_PKEY* key;
    X509* cert;
  };

  static void free_issuer(Issuer& i) {
    EVP_PKEY_free(i.key);
    X509_free(i.cert);
  }

  static void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (ext != nullptr) {
      X509_add_ext(cert, ext, -1);
      X509_EXTENSION_free(ext);
    }
  }

  X509* make_cert(EVP_PKEY* key, const std::string& cn, long from_days, long to_days) {
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), ++serial_);
    X509_gmtime_adj(X509_getm_notBefore(cert), from_days * 86400 - 60);
    X509_gmtime_adj(X509_getm_notAfter(cert), to_days * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    return cert;
  }

  void write(const std::string& base, EVP_PKEY* key, X509* cert, Pair* out) {
    out->cert = dir_ + "/" + base + ".pem";
    out->key = dir_ + "/" + base + ".key";
    FILE* f = std::fopen(out->cert.c_str(), "w");
    PEM_write_X509(f, cert);
    std::fclose(f);
    f = std::fopen(out->key.c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }

  Issuer make_ca(const std::string& cn, const std::string& base) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = make_cert(key, cn, 0, 2);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(cert, cert, NID_subject_key_identifier, "hash");
    X509_sign(cert, key, EVP_sha256());
    Pair p;
    write(base, key, cert, &p);
    return {key, cert};
  }

  Pair issue(const Issuer& ca, const std::string& cn, const std::string& san,
             const std::string& usage, long from_days, long to_days, const std::string& base) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = make_cert(key, cn, from_days, to_days);
    X509_set_issuer_name(cert, X509_get_subject_name(ca.cert));
    add_ext(cert, ca.cert, NID_basic_constraints, "CA:FALSE");
    add_ext(cert, ca.cert, NID_ext_key_usage, usage);
    if (!san.empty()) add_ext(cert, ca.cert, NID_subject_alt_name, san);
    X509_sign(cert, ca.key, EVP_sha256());
    Pair p;
    write(base, key, cert, &p);
    EVP_PKEY_free(key);
    X509_free(cert);
    return p;
  }

  std::string dir_;
  long serial_ = 0;
};

}  // namespace ringnet::test
