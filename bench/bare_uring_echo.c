// SPDX-License-Identifier: MIT
/*
 * bare_uring_echo: the io_uring baseline — a minimal echo server written the way an
 * experienced engineer writes one by hand with liburing, to mark the practical ceiling of
 * the backend. Single thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN when available),
 * multishot accept, multishot recv from a provided-buffer ring, and the received buffer
 * sent back as is (no copy): one send in flight per connection (order), further buffers
 * queued behind it, each buffer returned to the ring once fully sent.
 *
 *   bare_uring_echo --port N     (0 = ephemeral; prints "listening on 127.0.0.1:PORT")
 *                   [--zc-min BYTES]  send buffers of at least BYTES with IORING_OP_SEND_ZC
 *                                     (the experiment behind not using it in ringnet)
 *
 * Kernel 6.0+ (multishot recv), liburing 2.3 (buffer ring memory mapped here).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define NBUFS 1024
#define BUFSZ 16384
#define MAXFD 65536

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };

/* Received buffers waiting to be echoed form a list per connection, linked through
 * per-buffer arrays, so a connection costs a few bytes however much it queues (a slow
 * reader may hold every buffer and stall the ring: this is a baseline, not a server). */
struct conn {
  int open;
  int head, tail;                /* buffer ids, -1 when nothing is queued */
  unsigned off;                  /* bytes of the head buffer already sent */
  int sending;
  int zc_res;                    /* SEND_ZC: result held until its notification arrives */
};

static int next_bid[NBUFS];
static unsigned buf_len[NBUFS];

static unsigned zc_min = 0;      /* 0: never zero-copy */

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static struct conn *conns;

static unsigned long long tag(int op, int fd) { return ((unsigned long long)op << 32) | (unsigned)fd; }

static struct io_uring_sqe *sqe_get(void) {
  struct io_uring_sqe *s;
  while (!(s = io_uring_get_sqe(&ring))) io_uring_submit(&ring);
  return s;
}

static void arm_accept(int lfd) {
  struct io_uring_sqe *s = sqe_get();
  io_uring_prep_multishot_accept(s, lfd, NULL, NULL, 0);
  io_uring_sqe_set_data64(s, tag(OP_ACCEPT, lfd));
}

static void arm_recv(int fd) {
  struct io_uring_sqe *s = sqe_get();
  io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = 0;
  io_uring_sqe_set_data64(s, tag(OP_RECV, fd));
}

static void recycle(unsigned short bid) {
  io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, bid, io_uring_buf_ring_mask(NBUFS), 0);
  io_uring_buf_ring_advance(br, 1);
}

static void send_head(int fd) {
  struct conn *c = &conns[fd];
  struct io_uring_sqe *s = sqe_get();
  char *p = bufs + (size_t)c->head * BUFSZ + c->off;
  unsigned n = buf_len[c->head] - c->off;
  if (zc_min && n >= zc_min)
    io_uring_prep_send_zc(s, fd, p, n, MSG_NOSIGNAL, 0);
  else
    io_uring_prep_send(s, fd, p, n, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, tag(OP_SEND, fd));
  c->sending = 1;
}

static void drop(int fd) {
  struct conn *c = &conns[fd];
  while (c->head >= 0) {
    int next = next_bid[c->head];
    recycle((unsigned short)c->head);
    c->head = next;
  }
  c->tail = -1;
  c->open = 0;
  shutdown(fd, SHUT_RDWR); /* ends the multishot recv that still holds the socket */
  close(fd);
}

static void on_recv(int fd, int res, unsigned flags) {
  struct conn *c = &conns[fd];
  if (res <= 0 || !(flags & IORING_CQE_F_BUFFER)) {
    if (res == -ENOBUFS && c->open) { if (!(flags & IORING_CQE_F_MORE)) arm_recv(fd); return; }
    if (c->open && !c->sending) drop(fd); else c->open = 0;  /* EOF or error */
    return;
  }
  unsigned short bid = (unsigned short)(flags >> IORING_CQE_BUFFER_SHIFT);
  if (!c->open) { recycle(bid); return; }
  buf_len[bid] = (unsigned)res;
  next_bid[bid] = -1;
  if (c->tail >= 0) next_bid[c->tail] = bid; else c->head = bid;
  c->tail = bid;
  if (!c->sending) send_head(fd);
  if (!(flags & IORING_CQE_F_MORE)) arm_recv(fd);
}

/* A zero-copy send completes twice: the result (with F_MORE), then a notification once
 * the kernel no longer needs the buffer; only then may it go back to the ring. */
static void on_send(int fd, int res, unsigned flags) {
  struct conn *c = &conns[fd];
  if (flags & IORING_CQE_F_MORE) { c->zc_res = res; return; }
  if (flags & IORING_CQE_F_NOTIF) res = c->zc_res;
  c->sending = 0;
  if (res < 0 || !c->open) { drop(fd); return; }
  c->off += (unsigned)res;
  if (c->off == buf_len[c->head]) {
    int done = c->head;
    c->head = next_bid[done];
    if (c->head < 0) c->tail = -1;
    recycle((unsigned short)done);
    c->off = 0;
  }
  if (c->head >= 0) send_head(fd);
}

static int setup(int port) {
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = 16384;
  if (io_uring_queue_init_params(4096, &ring, &p) < 0) {
    memset(&p, 0, sizeof(p));
    if (io_uring_queue_init_params(4096, &ring, &p) < 0) { perror("io_uring_queue_init"); exit(1); }
  }
  br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  bufs = malloc((size_t)NBUFS * BUFSZ);
  conns = calloc(MAXFD, sizeof(*conns));
  struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = NBUFS, .bgid = 0};
  if (br == MAP_FAILED || !bufs || !conns || io_uring_register_buf_ring(&ring, &reg, 0)) {
    fprintf(stderr, "buffer ring setup failed\n");
    exit(1);
  }
  io_uring_buf_ring_init(br);
  for (int i = 0; i < NBUFS; i++)
    io_uring_buf_ring_add(br, bufs + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i, io_uring_buf_ring_mask(NBUFS), i);
  io_uring_buf_ring_advance(br, NBUFS);

  int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  socklen_t len = sizeof(a);
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4096) ||
      getsockname(lfd, (struct sockaddr *)&a, &len)) { perror("listen"); exit(1); }
  printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
  fflush(stdout);
  return lfd;
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--zc-min") && i + 1 < argc) zc_min = (unsigned)atoi(argv[++i]);
    else { fprintf(stderr, "usage: bare_uring_echo [--port N] [--zc-min BYTES]\n"); return 2; }
  }
  int lfd = setup(port), one = 1;
  arm_accept(lfd);
  for (;;) {
    io_uring_submit_and_wait(&ring, 1);
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      int op = (int)(cqe->user_data >> 32), fd = (int)(unsigned)cqe->user_data, res = cqe->res;
      unsigned flags = cqe->flags;
      n++;
      if (op == OP_ACCEPT) {
        if (res >= 0 && res < MAXFD) {
          setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          memset(&conns[res], 0, sizeof(conns[res]));
          conns[res].open = 1;
          conns[res].head = conns[res].tail = -1;
          arm_recv(res);
        } else if (res >= 0) {
          close(res);
        }
        if (!(flags & IORING_CQE_F_MORE)) arm_accept(fd);
      } else if (op == OP_RECV) {
        on_recv(fd, res, flags);
      } else if (op == OP_SEND) {
        on_send(fd, res, flags);
      }
    }
    io_uring_cq_advance(&ring, n);
  }
}
