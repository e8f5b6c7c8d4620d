// SPDX-License-Identifier: MIT
/* libuv_echo: the libuv echo peer ringnet's echo server is compared against.
 *
 * Written the way libuv's documentation and its own echo server (test/echo-server.c) do it,
 * with the usual speed-ups and nothing exotic:
 *   - uv_read_start with an alloc_cb that hands out the connection's own 64 KiB buffer (the
 *     read size of bare_epoll_echo), so a steady connection allocates nothing per message.
 *     libuv calls alloc_cb only once the socket is readable, so the buffer is allocated on
 *     the first read: an idle connection holds none (libuv's point in having alloc_cb);
 *   - in the read callback, uv_try_write first: when the kernel takes every byte (the common
 *     case), the buffer is free again at once and no uv_write_t is needed. Otherwise uv_write
 *     queues what is left, and the buffer belongs to that write until its callback; reads
 *     arriving meanwhile get a fresh malloc'd buffer (uv_try_write refuses while writes are
 *     queued, so the order of the echoed bytes is kept);
 *   - a connection whose queued output passes 4 MiB stops reading until it drains, like the
 *     bare loop, so a client that does not read cannot grow memory without bound;
 *   - uv_tcp_nodelay on every accepted connection.
 *
 * Usage: libuv_echo [--port N] [--threads N]
 *   --port N     0 = ephemeral; prints "listening on 127.0.0.1:PORT" once listening
 *   --threads N  loops (threads), default 1; each has its own SO_REUSEPORT listener (libuv
 *                1.44 has no UV_TCP_REUSEPORT, so the socket is made here and uv_tcp_open'd)
 * Listens on 127.0.0.1 only. SIGPIPE is ignored; SIGINT/SIGTERM end the process (the kernel
 * closes the sockets).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define READ_CHUNK (64 * 1024)
#define PENDING_HIGH_WATER (4u << 20)

struct conn {
  uv_tcp_t tcp;       /* first: a uv_stream_t* is a struct conn* */
  char *buf;          /* READ_CHUNK bytes, owned by the connection; NULL until first read */
  int buf_busy;       /* buf is held by a queued uv_write */
  int read_paused;    /* write queue over high water */
};

struct write_req {
  uv_write_t req;
  struct conn *conn;
  char *base;         /* conn->buf, or a malloc'd buffer to free */
};

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void on_close(uv_handle_t *h) {
  struct conn *c = (struct conn *)h;
  free(c->buf);
  free(c);
}

static void close_conn(struct conn *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void release(struct conn *c, char *base) {
  if (base == c->buf) c->buf_busy = 0; /* base is never NULL here */
  else free(base);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct conn *c = (struct conn *)h;
  (void)suggested;
  if (!c->buf_busy) {
    if (!c->buf) c->buf = malloc(READ_CHUNK);
    *buf = uv_buf_init(c->buf, c->buf ? READ_CHUNK : 0); /* length 0: UV_ENOBUFS */
    return;
  }
  char *p = malloc(READ_CHUNK);
  *buf = uv_buf_init(p, p ? READ_CHUNK : 0); /* length 0: libuv reports UV_ENOBUFS */
}

static void on_write(uv_write_t *req, int status) {
  struct write_req *w = (struct write_req *)req;
  struct conn *c = w->conn;
  release(c, w->base);
  free(w);
  if (status < 0) {
    close_conn(c);
    return;
  }
  if (c->read_paused && c->tcp.write_queue_size < PENDING_HIGH_WATER / 4) {
    c->read_paused = 0;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) close_conn(c);
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  struct conn *c = (struct conn *)stream;
  if (nread <= 0) {
    if (buf->base) release(c, buf->base);
    if (nread < 0) close_conn(c); /* UV_EOF or an error; 0 is EAGAIN, nothing to do */
    return;
  }
  uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
  int n = uv_try_write(stream, &out, 1);
  if (n == nread) {
    release(c, buf->base);
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    release(c, buf->base);
    close_conn(c);
    return;
  }
  if (n > 0) out = uv_buf_init(buf->base + n, (unsigned)(nread - n));
  struct write_req *w = malloc(sizeof *w);
  if (!w) {
    release(c, buf->base);
    close_conn(c);
    return;
  }
  w->conn = c;
  w->base = buf->base;
  if (buf->base == c->buf) c->buf_busy = 1;
  if (uv_write(&w->req, stream, &out, 1, on_write) != 0) {
    release(c, buf->base);
    free(w);
    close_conn(c);
    return;
  }
  if (stream->write_queue_size > PENDING_HIGH_WATER) {
    c->read_paused = 1;
    uv_read_stop(stream);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return; /* libuv retries accepting on the next poll */
  struct conn *c = calloc(1, sizeof *c);
  if (!c) return;
  uv_tcp_init(server->loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    close_conn(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) close_conn(c);
}

/* A bound (not yet listening) 127.0.0.1 socket; returns the fd, or -1 with errno set. */
static int bound_socket(int port, int reuse_port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

struct worker {
  uv_loop_t loop;
  uv_tcp_t listener;
  pthread_t thread;
};

static int worker_init(struct worker *w, int fd) {
  int rc = uv_loop_init(&w->loop);
  if (rc == 0) rc = uv_tcp_init(&w->loop, &w->listener);
  if (rc == 0) rc = uv_tcp_open(&w->listener, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&w->listener, SOMAXCONN, on_connection);
  if (rc != 0) fprintf(stderr, "libuv_echo: listen: %s\n", uv_strerror(rc));
  return rc;
}

static void *worker_run(void *arg) {
  struct worker *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
  return NULL;
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s [--port N] [--threads N]\n", argv0);
  exit(2);
}

int main(int argc, char **argv) {
  int port = 0, threads = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    else if (strncmp(argv[i], "--port=", 7) == 0) port = atoi(argv[i] + 7);
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
    else if (strncmp(argv[i], "--threads=", 10) == 0) threads = atoi(argv[i] + 10);
    else usage(argv[0]);
  }
  if (port < 0 || port > 65535 || threads < 1) usage(argv[0]);
  /* libuv writes with write(2), not MSG_NOSIGNAL: its docs say to ignore SIGPIPE, else a
   * peer that closes with echo bytes in flight kills the server. */
  signal(SIGPIPE, SIG_IGN);

  struct worker *workers = calloc((size_t)threads, sizeof *workers);
  if (!workers) return 1;
  for (int t = 0; t < threads; t++) {
    /* The first socket settles the port (it may be ephemeral); the others join it. */
    int fd = bound_socket(port, threads > 1);
    if (fd < 0) {
      perror("libuv_echo: bind 127.0.0.1");
      return 1;
    }
    if (t == 0) {
      struct sockaddr_in addr;
      socklen_t len = sizeof addr;
      getsockname(fd, (struct sockaddr *)&addr, &len);
      port = ntohs(addr.sin_port);
    }
    if (worker_init(&workers[t], fd) != 0) return 1;
  }
  printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
  for (int t = 1; t < threads; t++) {
    if (pthread_create(&workers[t].thread, NULL, worker_run, &workers[t]) != 0) {
      perror("libuv_echo: pthread_create");
      return 1;
    }
  }
  worker_run(&workers[0]); /* never returns: the listener keeps the loop alive */
  return 0;
}
