// SPDX-License-Identifier: MIT
// tls_load: TLS handshakes against a server, one after another on one thread, for
// bench/tls_compare.py: connect, handshake (a new session, or resuming the first one's),
// optionally one HTTP/1.1 GET read to its end, close. Plain OpenSSL over blocking
// sockets: it measures the server, it shares no code with ringnet.
//
//   tls_load --port N [--seconds S] [--groups X25519|P-256] [--tls 1.2|1.3] [--resume]
//            [--get PATH] [--ca FILE]
//
// Prints "handshakes=N seconds=S resumed=N failures=N" on stdout.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Args {
  int port = 0;
  double seconds = 5;
  std::string groups = "X25519";
  std::string tls = "1.3";
  bool resume = false;
  std::string get;
  std::string ca;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "tls_load: %s\nusage: tls_load --port N [--seconds S] [--groups X25519|P-256] "
               "[--tls 1.2|1.3] [--resume] [--get PATH] [--ca FILE]\n",
               why);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value of " + f).c_str());
      return argv[++i];
    };
    if (f == "--port") a.port = std::atoi(value().c_str());
    else if (f == "--seconds") a.seconds = std::atof(value().c_str());
    else if (f == "--groups") a.groups = value();
    else if (f == "--tls") a.tls = value();
    else if (f == "--resume") a.resume = true;
    else if (f == "--get") a.get = value();
    else if (f == "--ca") a.ca = value();
    else usage(("unknown flag " + f).c_str());
  }
  if (a.port <= 0 || a.port > 65535) usage("--port is required");
  return a;
}

int dial(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// Reads one HTTP/1.1 response with Content-Length to its end.
bool read_response(SSL* ssl) {
  std::string head;
  char buf[65536];
  size_t body_left = 0;
  bool in_body = false;
  while (true) {
    int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0) return false;
    if (in_body) {
      body_left -= std::min(body_left, static_cast<size_t>(n));
    } else {
      head.append(buf, static_cast<size_t>(n));
      size_t end = head.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      size_t cl = head.find("Content-Length: ");
      if (cl == std::string::npos) cl = head.find("content-length: ");
      if (cl == std::string::npos || cl > end) return false;
      body_left = std::strtoull(head.c_str() + cl + 16, nullptr, 10);
      body_left -= std::min(body_left, head.size() - end - 4);
      in_body = true;
    }
    if (body_left == 0) return true;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  const int version = args.tls == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION;
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  if (SSL_CTX_set1_groups_list(ctx, args.groups.c_str()) != 1) usage("bad --groups");
  if (!args.ca.empty()) {
    SSL_CTX_load_verify_locations(ctx, args.ca.c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  const std::string request =
      args.get.empty() ? "" : "GET " + args.get + " HTTP/1.1\r\nHost: localhost\r\n\r\n";

  std::vector<unsigned char> session_der;  // the first session, for --resume
  uint64_t handshakes = 0, resumed = 0, failures = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(args.seconds);
  while (std::chrono::steady_clock::now() < end) {
    int fd = dial(args.port);
    if (fd < 0) {
      ++failures;
      continue;
    }
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    // A fresh copy of the first session each time (as `s_client -sess_in` reads its file):
    // OpenSSL marks a TLS 1.3 session object used once it resumed.
    SSL_SESSION* copy = nullptr;
    if (args.resume && !session_der.empty()) {
      const unsigned char* p = session_der.data();
      copy = d2i_SSL_SESSION(nullptr, &p, static_cast<long>(session_der.size()));
      if (copy != nullptr) SSL_set_session(ssl, copy);
    }
    bool ok = SSL_connect(ssl) == 1;
    if (ok && !request.empty()) {
      ok = SSL_write(ssl, request.data(), static_cast<int>(request.size())) > 0 && read_response(ssl);
    } else if (ok && version == TLS1_3_VERSION && args.resume && session_der.empty()) {
      // TLS 1.3 tickets come after the handshake: one read (that times out, the server
      // sends nothing else) takes them in. Only the first connection pays this.
      timeval tv{0, 200'000};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char c;
      (void)SSL_read(ssl, &c, 1);
      ERR_clear_error();
    }
    if (ok) {
      ++handshakes;
      if (SSL_session_reused(ssl) == 1) ++resumed;
      if (args.resume && session_der.empty()) {
        if (SSL_SESSION* s = SSL_get1_session(ssl)) {
          const int len = i2d_SSL_SESSION(s, nullptr);
          session_der.resize(static_cast<size_t>(std::max(len, 0)));
          unsigned char* p = session_der.data();
          i2d_SSL_SESSION(s, &p);
          SSL_SESSION_free(s);
        }
      }
      SSL_shutdown(ssl);
    } else {
      ++failures;
      ERR_clear_error();
    }
    SSL_free(ssl);
    if (copy != nullptr) SSL_SESSION_free(copy);
    ::close(fd);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("handshakes=%llu seconds=%.3f resumed=%llu failures=%llu\n",
              static_cast<unsigned long long>(handshakes), seconds,
              static_cast<unsigned long long>(resumed), static_cast<unsigned long long>(failures));
  SSL_CTX_free(ctx);
  return handshakes > 0 ? 0 : 1;
}
