// SPDX-License-Identifier: MIT
// asio_echo: the Boost.Asio echo peer ringnet's echo server is compared against.
//
// Written the way Asio's own documentation and examples build a fast server, and no more:
//   - one io_context per thread, each constructed with concurrency hint 1 (the documented
//     way to tell Asio a context is run by one thread, so it can skip internal locking);
//   - each thread has its own SO_REUSEPORT acceptor on the same port, so a connection is
//     accepted, read and written on one thread and nothing is shared between threads;
//   - per connection: async_read_some into its own buffer, then async_write of exactly the
//     bytes read, then read again (the shape of Asio's async_tcp_echo_server example). Reads
//     and writes never overlap, so the buffer is never shared by two operations; while a
//     write is pending nothing is read, which is also the backpressure;
//   - TCP_NODELAY on every accepted socket (the engine and the bare loops set it too).
// Handler memory comes from Asio's per-thread recycling allocator (its default).
//
// Usage: asio_echo [--port N] [--threads N]
//   --port N     0 = ephemeral; prints "listening on 127.0.0.1:PORT" once listening
//   --threads N  io_contexts (threads), default 1
// Listens on 127.0.0.1 only. SIGINT/SIGTERM stop every context and exit 0.
// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>; with g++ 12
// in C++20 mode nothing else pulls it in first.
#include <utility>

#include <boost/asio.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// The same read size as bare_epoll_echo's stack buffer: a 1 MiB message takes 16 reads.
constexpr size_t kReadChunk = 64 * 1024;

class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket socket) : socket_(std::move(socket)) {}

  void start() { read(); }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(buf_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              if (!ec) self->write(n);  // EOF or error: the session ends
                            });
  }

  void write(size_t n) {
    asio::async_write(socket_, asio::buffer(buf_.data(), n),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket socket_;
  std::array<char, kReadChunk> buf_;
};

// One thread's context and acceptor.
class Server {
 public:
  Server(unsigned short port, bool reuse_port) : ctx_(1), acceptor_(ctx_) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    if (reuse_port) {
      acceptor_.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
    }
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    accept();
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  asio::io_context& context() { return ctx_; }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;  // stopping
      if (!ec) {
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        std::make_shared<Session>(std::move(socket))->start();
      } else if (ec == asio::error::no_descriptors) {
        // EMFILE: Asio would report it again at once; wait a little instead of spinning.
        auto timer = std::make_shared<asio::steady_timer>(ctx_, std::chrono::milliseconds(10));
        timer->async_wait([this, timer](boost::system::error_code) { accept(); });
        return;
      }
      accept();
    });
  }

  asio::io_context ctx_;
  tcp::acceptor acceptor_;
};

void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--port N] [--threads N]\n", argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--port" && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else if (a.rfind("--port=", 0) == 0) {
      port = std::atoi(a.c_str() + 7);
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a.rfind("--threads=", 0) == 0) {
      threads = std::atoi(a.c_str() + 10);
    } else {
      usage(argv[0]);
    }
  }
  if (port < 0 || port > 65535 || threads < 1) usage(argv[0]);

  std::vector<std::unique_ptr<Server>> servers;
  try {
    // The first acceptor settles the port (it may be ephemeral); the others join it.
    servers.push_back(std::make_unique<Server>(static_cast<unsigned short>(port), threads > 1));
    for (int t = 1; t < threads; ++t) {
      servers.push_back(std::make_unique<Server>(servers[0]->port(), true));
    }
  } catch (const boost::system::system_error& e) {
    std::fprintf(stderr, "asio_echo: listen on 127.0.0.1:%d: %s\n", port, e.what());
    return 1;
  }
  std::printf("listening on 127.0.0.1:%u\n", servers[0]->port());
  std::fflush(stdout);

  // Signals are watched on the first context; stopping a context abandons its sessions.
  asio::signal_set signals(servers[0]->context(), SIGINT, SIGTERM);
  signals.async_wait([&servers](boost::system::error_code, int) {
    for (auto& s : servers) s->context().stop();
  });

  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    pool.emplace_back([&servers, t] { servers[t]->context().run(); });
  }
  servers[0]->context().run();
  for (auto& th : pool) th.join();
  return 0;
}
