// SPDX-License-Identifier: MIT
/* bare_epoll_echo: the baseline ringnet's echo server is compared against.
 *
 * A minimal edge-triggered epoll echo server, single thread, written the way an experienced
 * engineer writes one by hand, so the comparison measures the engine's overhead and not a
 * strawman:
 *   - each fd is registered once with EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, never
 *     modified (an EPOLLOUT edge just means "you may flush now");
 *   - on a read edge, read until EAGAIN into a 64 KiB stack buffer and write() each chunk
 *     straight back; what a short write leaves goes to a per-connection pending buffer that
 *     is flushed on the next EPOLLOUT edge (so big messages are echoed exactly);
 *   - a connection with more than 4 MiB pending stops reading until it drains, so a client
 *     that sends without reading cannot grow memory without bound.
 *
 * Usage: bare_epoll_echo [--port N] [--short-read]
 *   --port N      0 = ephemeral; prints "listening on 127.0.0.1:PORT" once listening
 *   --short-read  stop reading at a read shorter than the buffer instead of at EAGAIN: the
 *                 socket was drained, and data arriving later raises a new edge. Saves the
 *                 read() that returns EAGAIN on every wake-up (a stronger baseline).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)
#define PENDING_HIGH_WATER (4u << 20)
#define MAX_EVENTS 256

struct conn {
  char *pending; /* bytes read but not yet written back, from pending + off */
  size_t off, len, cap;
  int read_paused; /* pending over high water: resume reading once flushed */
};

static struct conn *conns; /* indexed by fd; sized to the fd limit */
static int max_fds;
static int stop_at_short_read;

static void close_conn(int fd) {
  free(conns[fd].pending);
  memset(&conns[fd], 0, sizeof conns[fd]);
  close(fd); /* also drops it from the epoll set */
}

static int keep_pending(struct conn *c, const char *data, size_t n) {
  if (c->off > 0 && c->len + n > c->cap) { /* slide unsent bytes to the front first */
    memmove(c->pending, c->pending + c->off, c->len - c->off);
    c->len -= c->off;
    c->off = 0;
  }
  if (c->len + n > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n) cap *= 2;
    char *p = realloc(c->pending, cap);
    if (!p) return -1;
    c->pending = p;
    c->cap = cap;
  }
  memcpy(c->pending + c->len, data, n);
  c->len += n;
  return 0;
}

/* Writes data now if nothing is queued before it, keeping order; queues the rest. */
static int echo_bytes(int fd, struct conn *c, const char *data, size_t n) {
  if (c->len == c->off) {
    while (n > 0) {
      ssize_t w = write(fd, data, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        return -1;
      }
      data += w;
      n -= (size_t)w;
    }
  }
  return n > 0 ? keep_pending(c, data, n) : 0;
}

/* Returns -1 when the connection must be closed. */
static int flush_pending(int fd, struct conn *c) {
  while (c->off < c->len) {
    ssize_t w = write(fd, c->pending + c->off, c->len - c->off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -1;
    }
    c->off += (size_t)w;
  }
  c->off = c->len = 0;
  return 0;
}

static int on_readable(int fd, struct conn *c) {
  char buf[READ_CHUNK];
  for (;;) {
    if (c->len - c->off > PENDING_HIGH_WATER) {
      c->read_paused = 1; /* no new EPOLLIN edge will come for data already queued */
      return 0;
    }
    ssize_t r = read(fd, buf, sizeof buf);
    if (r > 0) {
      if (echo_bytes(fd, c, buf, (size_t)r) < 0) return -1;
      if (stop_at_short_read && (size_t)r < sizeof buf) return 0;
    } else if (r == 0) {
      return -1; /* peer closed: an echo server has nothing left to do */
    } else if (errno == EAGAIN) {
      return 0;
    } else if (errno != EINTR) {
      return -1;
    }
  }
}

static int on_writable(int fd, struct conn *c) {
  if (flush_pending(fd, c) < 0) return -1;
  if (c->read_paused && c->off == c->len) {
    c->read_paused = 0;
    return on_readable(fd, c);
  }
  return 0;
}

static void accept_all(int epfd, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) perror("accept4");
      return;
    }
    if (fd >= max_fds) {
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) close(fd);
  }
}

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, SOMAXCONN) < 0) {
    perror("bind/listen");
    exit(1);
  }
  socklen_t len = sizeof addr;
  getsockname(fd, (struct sockaddr *)&addr, &len);
  printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  fflush(stdout);
  return fd;
}

static void dispatch(int epfd, int lfd, const struct epoll_event *ev) {
  int fd = ev->data.fd;
  if (fd == lfd) {
    accept_all(epfd, lfd);
    return;
  }
  struct conn *c = &conns[fd];
  int rc = 0;
  /* Flush before reading: queued bytes must go out before newly read ones. */
  if (ev->events & EPOLLOUT) rc = on_writable(fd, c);
  if (rc == 0 && (ev->events & (EPOLLIN | EPOLLRDHUP)) && !c->read_paused)
    rc = on_readable(fd, c);
  if (rc < 0 || (ev->events & (EPOLLERR | EPOLLHUP))) close_conn(fd);
}

static int parse_flags(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else if (strncmp(argv[i], "--port=", 7) == 0) {
      port = atoi(argv[i] + 7);
    } else if (strcmp(argv[i], "--short-read") == 0) {
      stop_at_short_read = 1;
    } else {
      fprintf(stderr, "usage: %s [--port N] [--short-read]\n", argv[0]);
      exit(2);
    }
  }
  return port;
}

int main(int argc, char **argv) {
  int port = parse_flags(argc, argv);
  signal(SIGPIPE, SIG_IGN); /* a write to a reset peer returns EPIPE instead */
  max_fds = (int)sysconf(_SC_OPEN_MAX);
  conns = calloc((size_t)max_fds, sizeof *conns);
  int lfd = listen_on(port);
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.fd = lfd};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
    if (n < 0 && errno != EINTR) {
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) dispatch(epfd, lfd, &events[i]);
  }
}
