/*
 * hp-contract-launcher: runs ONE HotPocket contract process for hp-node.
 *
 * Why it exists: the HotPocket contract SDKs read the control and NPL channels one packet per
 * read(), so those must be AF_UNIX SOCK_SEQPACKET sockets, which Node cannot create. Node spawns
 * this launcher instead; the launcher creates the SEQPACKET pairs, forks + execs the contract and
 * bridges the packets to Node over ONE inherited stream fd.
 *
 * Usage (argv, built by src/contract/launcher.ts):
 *   hp-contract-launcher --cwd DIR --control-fd N [--npl-fd N] [--keep FIRST-LAST] [--args-packets
 *       [--exec-after-args]] [--timeout-ms MS] [--npl-limit BYTES] [--cpu-seconds S] [--mem-bytes B] [--nofile N]
 *       -- BIN_PATH [BIN_ARGS...]
 *
 * --args-packets (warm start): fd 0 is a SOCK_SEQPACKET socket the launcher makes, and the args JSON
 * arrives later over the bridge (ARGS frames; an empty one ends it). The contract can boot and load
 * its code before its ledger exists, then block reading fd 0; the exec_timeout clock starts at the
 * end of the args. Why a SEQPACKET socket and not a pipe: Node (the SDK calls process.stdin) puts a
 * pipe or stream socket into non-blocking mode, and its readFile(0) would then fail with EAGAIN
 * while the args are not there yet; libuv leaves a SEQPACKET socket alone, and readFile's 64 KiB
 * reads take each (<= 8 KiB) packet whole.
 *
 * --exec-after-args (warm start of any other program): the launcher starts ahead, but forks and execs
 * the contract only once the whole args JSON arrived, with fd 0 = a memfd holding it (a regular
 * file: any read size works, EOF at its end). The contract runs no earlier than a cold one would;
 * what is saved is Node's fork of this launcher and the launcher's set-up. The exec_timeout clock
 * starts at the exec.
 *
 * Fds inherited from Node (the contract keeps 0, 1, 2 and FIRST..LAST at the same numbers):
 *   0 = args JSON stream (Node writes it; with --args-packets: unused, replaced), 1/2 = stdout/stderr,
 *   3 = bridge (close-on-exec for the contract), FIRST..LAST = user_in_fd + user output sockets,
 *   with placeholders where the control/NPL numbers fall inside the range (replaced by dup2).
 * The contract's environment is exactly the launcher's (Node spawns us with the configured map).
 *
 * Bridge framing, both directions: [u8 channel][u32 big-endian length][payload].
 *   launcher -> Node: 0 META (JSON text: {"event":"started","pid":N} | {"event":"error",...} |
 *                     {"event":"exit","code":C,"signal":S,"timedOut":b,"nplTruncated":b}, always last)
 *                     1 CONTROL packet from the contract, 2 NPL packet from the contract.
 *   Node -> launcher: 1 CONTROL packet to the contract,
 *                     2 NPL message = 66-char sender pubkey hex ++ data, delivered as TWO packets,
 *                     3 ARGS: the next packet of the args JSON (--args-packets); empty = end of args.
 * Exit status: the contract's exit code, 128+signal if it was killed, 127 if it could not start.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CH_META 0
#define CH_CONTROL 1
#define CH_NPL 2
#define CH_ARGS 3
#define ARGS_PACKET (8 * 1024)         /* Node splits the args JSON into packets of at most this */
#define MAX_PACKET (128 * 1024)        /* SDK limit for one SEQPACKET message */
#define PUBKEY_HEX 66                  /* "ed" + 64 hex */
#define MAX_FRAME (PUBKEY_HEX + MAX_PACKET)
#define MAX_QUEUED_PACKETS 4096        /* per channel; HP itself queues 1023 NPL messages */
#define DRAIN_GRACE_MS 500             /* after exit: wait this long at most for socket EOF */

static int sig_pipe_w = -1;            /* self-pipe written by the SIGCHLD handler */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("hp-contract-launcher: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(125);
}

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  ssize_t r = write(sig_pipe_w, "c", 1); /* non-blocking; a full pipe already means "wake up" */
  (void)r;
  errno = saved;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long parse_num(const char *s, const char *what) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < 0) die("bad %s: %s", what, s);
  return v;
}

/* Moves a launcher-owned fd to >= min, close-on-exec, so it can never collide with a target number. */
static int move_high(int fd, int min) {
  if (fd >= min) return fd;
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, min);
  if (nfd < 0) die("F_DUPFD_CLOEXEC: %s", strerror(errno));
  close(fd);
  return nfd;
}

/* One packet may be 128 KiB: make sure both directions can hold at least a few of them
   (the kernel caps the value at net.core.wmem_max/rmem_max; failure just keeps the default). */
static void size_buffers(int fd) {
  int sz = 1024 * 1024;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

static void set_flag(int fd, int nonblock) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) die("F_GETFL %d: %s", fd, strerror(errno));
  fl = nonblock ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (fcntl(fd, F_SETFL, fl) < 0) die("F_SETFL %d: %s", fd, strerror(errno));
}

/* ---- bridge output (blocking writes: Node always reads, so they cannot deadlock) ---- */

static int bridge_fd = 3;
static int bridge_dead = 0;            /* Node went away: stop writing, kill the contract */

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void send_frame(int ch, const void *data, uint32_t len) {
  if (bridge_dead) return;
  unsigned char hdr[5] = {(unsigned char)ch, len >> 24, len >> 16, len >> 8, len};
  if (write_all(bridge_fd, hdr, 5) < 0 || write_all(bridge_fd, data, len) < 0) bridge_dead = 1;
}

static void send_meta(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) send_frame(CH_META, buf, (uint32_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
}

/* ---- packets queued towards the contract (its socket may be full or not read yet) ---- */

struct pkt {
  struct pkt *next;
  size_t len;
  char data[];
};

struct chan {
  int fd;                              /* parent end, non-blocking; -1 when closed */
  int eof;                             /* contract side closed (or we closed it) */
  struct pkt *head, *tail;
  int queued;
};

static void enqueue(struct chan *c, const char *data, size_t len) {
  struct pkt *p = malloc(sizeof *p + len);
  if (!p) die("out of memory");
  p->next = NULL;
  p->len = len;
  memcpy(p->data, data, len);
  if (c->tail) c->tail->next = p; else c->head = p;
  c->tail = p;
  c->queued++;
}

static void drop_queue(struct chan *c) {
  while (c->head) {
    struct pkt *p = c->head;
    c->head = p->next;
    free(p);
  }
  c->tail = NULL;
  c->queued = 0;
}

static void close_chan(struct chan *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->eof = 1;
  drop_queue(c);
}

/* Sends queued packets until the socket is full. A contract that closed its end drops the rest. */
static void flush_queue(struct chan *c) {
  while (c->head && c->fd >= 0) {
    ssize_t n = send(c->fd, c->head->data, c->head->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EMSGSIZE) fprintf(stderr, "hp-contract-launcher: dropped oversized packet\n");
      else { drop_queue(c); return; } /* EPIPE/ECONNRESET: the contract is no longer reading */
    }
    struct pkt *p = c->head;
    c->head = p->next;
    if (!c->head) c->tail = NULL;
    c->queued--;
    free(p);
  }
}

/* Reads every packet available on a contract channel and forwards it to Node. */
static long long npl_out_bytes = 0, npl_limit = 0;
static int npl_truncated = 0;
static char pktbuf[MAX_PACKET + 1];

static void read_packets(struct chan *c, int ch, short revents) {
  while (c->fd >= 0) {
    ssize_t n = recv(c->fd, pktbuf, sizeof pktbuf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_chan(c);                   /* ECONNRESET etc.: nothing more will come */
      return;
    }
    /* SEQPACKET returns 0 both for EOF and for an empty packet; the hang-up flag tells them apart
       (re-polled, since the peer may have closed after our poll() returned). */
    if (n == 0) {
      struct pollfd q = {c->fd, POLLIN | POLLRDHUP, 0};
      if ((revents & (POLLHUP | POLLRDHUP)) || (poll(&q, 1, 0) > 0 && (q.revents & (POLLHUP | POLLRDHUP)))) {
        c->eof = 1;
        return;
      }
    }
    if (n > MAX_PACKET) {              /* the kernel truncated it to our buffer: not a valid packet */
      fprintf(stderr, "hp-contract-launcher: dropped packet over %d bytes\n", MAX_PACKET);
      continue;
    }
    if (ch == CH_NPL && npl_limit > 0 && npl_out_bytes + n > npl_limit) {
      npl_truncated = 1;               /* HotPocket closes the NPL fd when the round limit is hit */
      close_chan(c);
      return;
    }
    if (ch == CH_NPL) npl_out_bytes += n;
    send_frame(ch, pktbuf, (uint32_t)n);
  }
}

/* ---- bridge input from Node ---- */

static unsigned char inbuf[5 + MAX_FRAME];
static size_t inlen = 0;
static int args_ended = 0;             /* the empty ARGS frame arrived */

/* Returns 0 when Node closed the bridge (or broke the protocol). */
static int read_bridge(struct chan *ctl, struct chan *npl, struct chan *args) {
  ssize_t n = read(bridge_fd, inbuf + inlen, sizeof inbuf - inlen);
  if (n < 0) return (errno == EINTR || errno == EAGAIN) ? 1 : 0;
  if (n == 0) return 0;
  inlen += (size_t)n;
  size_t off = 0;
  while (inlen - off >= 5) {
    unsigned char *h = inbuf + off;
    uint32_t len = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
    int ch = h[0];
    if (len > MAX_FRAME || (ch != CH_CONTROL && ch != CH_NPL && !(ch == CH_ARGS && args)) ||
        (ch == CH_NPL && len < PUBKEY_HEX) || (ch == CH_CONTROL && len > MAX_PACKET) ||
        (ch == CH_ARGS && (len > ARGS_PACKET || args_ended))) {
      fprintf(stderr, "hp-contract-launcher: bad bridge frame (channel %d, %u bytes)\n", ch, len);
      return 0;
    }
    if (inlen - off < 5 + (size_t)len) break;
    const char *body = (const char *)h + 5;
    if (ch == CH_ARGS) {
      if (len == 0) args_ended = 1;
      else if (!args->eof) enqueue(args, body, len); /* Node sends a bounded JSON: no cap here */
    } else if (ch == CH_CONTROL) {
      if (!ctl->eof && ctl->queued < MAX_QUEUED_PACKETS) enqueue(ctl, body, len);
    } else if (npl && !npl->eof) {
      /* Key and data packets are queued together (or dropped together) so the SDK's
         alternating key/data reader can never get out of step. */
      if (npl->queued + 2 <= MAX_QUEUED_PACKETS) {
        enqueue(npl, body, PUBKEY_HEX);
        enqueue(npl, body + PUBKEY_HEX, len - PUBKEY_HEX);
      } else {
        fprintf(stderr, "hp-contract-launcher: NPL queue full, message dropped\n");
      }
    }
    off += 5 + (size_t)len;
  }
  memmove(inbuf, inbuf + off, inlen - off);
  inlen -= off;
  return 1;
}

/* ---- child side: everything between fork and execve ---- */

struct opts {
  const char *cwd;
  int control_fd, npl_fd, keep_first, keep_last, args_packets, exec_after_args;
  long long timeout_ms, cpu_s, mem_b, nofile;
  char **argv;
};

/* Reports a failed setup step to the parent through the close-on-exec error pipe, then exits. */
static void child_fail(int errfd, int stage) {
  int msg[2] = {stage, errno};
  ssize_t r = write(errfd, msg, sizeof msg);
  (void)r;
  _exit(127);
}

static const char *stage_names[] = {"setpgid", "dup2", "cloexec", "chdir", "setrlimit", "execve"};

static void child_exec(const struct opts *o, int ctl_child, int npl_child, int args_child, int errfd, pid_t parent) {
  /* Own process group, so a timeout can SIGKILL everything the contract spawned. */
  if (setpgid(0, 0) < 0) child_fail(errfd, 0);
  /* If the launcher itself is SIGKILLed, the contract must not run on unsupervised. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  /* Default signal dispositions and an empty mask, as for any freshly started program. */
  signal(SIGPIPE, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  /* The SEQPACKET child ends at their announced numbers (dup2 clears close-on-exec). */
  if (dup2(ctl_child, o->control_fd) < 0) child_fail(errfd, 1);
  if (npl_child >= 0 && dup2(npl_child, o->npl_fd) < 0) child_fail(errfd, 1);
  if (args_child >= 0 && dup2(args_child, 0) < 0) child_fail(errfd, 1);

  /* Every fd other than 0-2, the kept range and the two channels is close-on-exec. */
  int top = o->control_fd > o->npl_fd ? o->control_fd : o->npl_fd;
  if (o->keep_last > top) top = o->keep_last;
  for (int fd = 3; fd <= top; fd++) {
    int keep = (fd >= o->keep_first && fd <= o->keep_last) || fd == o->control_fd || fd == o->npl_fd;
    if (!keep && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 && errno != EBADF) child_fail(errfd, 2);
  }
  /* Everything above: close_range(2) with CLOSE_RANGE_CLOEXEC (Linux 5.11), else one by one. */
  long rc = -1;
#ifdef SYS_close_range
  rc = syscall(SYS_close_range, (unsigned)top + 1, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
#endif
  if (rc < 0) {
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = top + 1; fd < max; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }

  if (chdir(o->cwd) < 0) child_fail(errfd, 3);

  struct rlimit rl;
  rl.rlim_cur = rl.rlim_max = 0;       /* no core files: they would land in the state directory */
  if (setrlimit(RLIMIT_CORE, &rl) < 0) child_fail(errfd, 4);
  if (o->cpu_s > 0) {
    rl.rlim_cur = rl.rlim_max = (rlim_t)o->cpu_s;
    if (setrlimit(RLIMIT_CPU, &rl) < 0) child_fail(errfd, 4);
  }
  if (o->mem_b > 0) {
    rl.rlim_cur = rl.rlim_max = (rlim_t)o->mem_b;
    if (setrlimit(RLIMIT_DATA, &rl) < 0) child_fail(errfd, 4);
  }
  if (o->nofile > 0) {
    rl.rlim_cur = rl.rlim_max = (rlim_t)o->nofile;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) child_fail(errfd, 4);
  }

  extern char **environ;               /* exactly the configured map: Node spawned us with it */
  execve(o->argv[0], o->argv, environ);
  child_fail(errfd, 5);
}

/* ---- --exec-after-args: the args, whole, before the contract exists ---- */

/*
 * Reads the bridge until the empty ARGS frame, collecting the args JSON in a memfd; returns it,
 * rewound, to become the contract's fd 0. Control/NPL frames cannot come yet (Node sends them
 * once the contract started) but would just be queued. A bridge closed first means Node dropped
 * this warm process: exit without running anything.
 */
static int await_args(int high, struct chan *ctl, struct chan *npl) {
  struct chan args = {.fd = -1, .eof = 0};
  while (!args_ended) {
    struct pollfd p = {bridge_fd, POLLIN, 0};
    if (poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll: %s", strerror(errno));
    }
    if (!read_bridge(ctl, npl, &args)) exit(0);
  }
  int fd = (int)syscall(SYS_memfd_create, "hp-contract-args", 1 /* MFD_CLOEXEC */);
  if (fd < 0) die("memfd_create: %s", strerror(errno));
  fd = move_high(fd, high);
  for (struct pkt *k = args.head; k; k = k->next) {
    for (size_t off = 0; off < k->len;) {
      ssize_t w = write(fd, k->data + off, k->len - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) die("writing the args memfd: %s", strerror(errno));
      off += (size_t)w;
    }
  }
  drop_queue(&args);
  if (lseek(fd, 0, SEEK_SET) < 0) die("lseek: %s", strerror(errno));
  return fd;
}

/* ---- main ---- */

int main(int argc, char **argv) {
  struct opts o = {.cwd = NULL, .control_fd = -1, .npl_fd = -1, .keep_first = 4, .keep_last = 3};
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) { i++; break; }
    if (strcmp(a, "--args-packets") == 0) { o.args_packets = 1; continue; }
    if (strcmp(a, "--exec-after-args") == 0) { o.exec_after_args = 1; continue; }
    if (i + 1 >= argc) die("missing value for %s", a);
    const char *v = argv[++i];
    if (strcmp(a, "--cwd") == 0) o.cwd = v;
    else if (strcmp(a, "--control-fd") == 0) o.control_fd = (int)parse_num(v, a);
    else if (strcmp(a, "--npl-fd") == 0) o.npl_fd = (int)parse_num(v, a);
    else if (strcmp(a, "--keep") == 0) {
      if (sscanf(v, "%d-%d", &o.keep_first, &o.keep_last) != 2 || o.keep_first < 4) die("bad --keep %s", v);
    }
    else if (strcmp(a, "--timeout-ms") == 0) o.timeout_ms = parse_num(v, a);
    else if (strcmp(a, "--npl-limit") == 0) npl_limit = parse_num(v, a);
    else if (strcmp(a, "--cpu-seconds") == 0) o.cpu_s = parse_num(v, a);
    else if (strcmp(a, "--mem-bytes") == 0) o.mem_b = parse_num(v, a);
    else if (strcmp(a, "--nofile") == 0) o.nofile = parse_num(v, a);
    else die("unknown option %s", a);
  }
  if (i >= argc || !o.cwd || o.control_fd < 0) die("usage: --cwd DIR --control-fd N [...] -- BIN [ARGS]");
  o.argv = argv + i;
  if (o.exec_after_args && !o.args_packets) die("--exec-after-args needs --args-packets");
  int top = o.control_fd > o.npl_fd ? o.control_fd : o.npl_fd;
  if (o.keep_last > top) top = o.keep_last;
  if (o.control_fd < 4 || o.control_fd == o.keep_first || (o.npl_fd >= 0 && (o.npl_fd < 4 || o.npl_fd == o.keep_first || o.npl_fd == o.control_fd)))
    die("channel fds must be distinct, above 3 and not user_in_fd");
  int high = top + 1;                  /* everything we create lives above every target number */

  signal(SIGPIPE, SIG_IGN);            /* a dead bridge or socket is an EPIPE, not our death */
  if (fcntl(bridge_fd, F_SETFD, FD_CLOEXEC) < 0) die("bridge fd %d: %s", bridge_fd, strerror(errno));
  set_flag(bridge_fd, 0);

  /* SIGCHLD -> self-pipe, so child exit wakes poll() without races. */
  int sp[2];
  if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe2: %s", strerror(errno));
  int sig_pipe_r = move_high(sp[0], high);
  sig_pipe_w = move_high(sp[1], high);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);

  /* The channels. Parent ends are non-blocking; the child ends stay blocking for the contract. */
  int pair[2];
  struct chan ctl = {.fd = -1}, npl = {.fd = -1, .eof = 1}, args = {.fd = -1, .eof = 1};
  int ctl_child, npl_child = -1, args_child = -1;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) die("socketpair: %s", strerror(errno));
  ctl.fd = move_high(pair[0], high);
  ctl_child = move_high(pair[1], high);
  size_buffers(ctl.fd);
  size_buffers(ctl_child);
  set_flag(ctl.fd, 1);
  if (o.npl_fd >= 0) {
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) die("socketpair: %s", strerror(errno));
    npl.fd = move_high(pair[0], high);
    npl.eof = 0;
    npl_child = move_high(pair[1], high);
    size_buffers(npl.fd);
    size_buffers(npl_child);
    set_flag(npl.fd, 1);
  }
  if (o.exec_after_args) {
    args_child = await_args(high, &ctl, o.npl_fd >= 0 ? &npl : NULL);
  } else if (o.args_packets) {
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) die("socketpair: %s", strerror(errno));
    args.fd = move_high(pair[0], high);
    args.eof = 0;
    args_child = move_high(pair[1], high);
    set_flag(args.fd, 1);
  }
  /* Node's socketpair ends may be non-blocking; contracts expect plain blocking fds. */
  for (int fd = o.keep_first; fd <= o.keep_last; fd++)
    if (fd != o.control_fd && fd != o.npl_fd) set_flag(fd, 0);

  int ep[2];
  if (pipe2(ep, O_CLOEXEC) < 0) die("pipe2: %s", strerror(errno));
  int err_r = move_high(ep[0], high), err_w = move_high(ep[1], high);

  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) child_exec(&o, ctl_child, npl_child, args_child, err_w, parent);
  setpgid(pid, pid);                   /* also from here, so kill(-pid) works at once */

  /* Only the contract may hold its ends: otherwise EOF would never be seen. */
  close(err_w);
  close(ctl_child);
  if (npl_child >= 0) close(npl_child);
  if (args_child >= 0) close(args_child);
  close(0);
  for (int fd = o.keep_first; fd <= o.keep_last; fd++) close(fd);

  /* The error pipe closes on a successful execve, or carries {stage, errno}. */
  int msg[2];
  ssize_t n;
  do n = read(err_r, msg, sizeof msg); while (n < 0 && errno == EINTR);
  close(err_r);
  if (n == (ssize_t)sizeof msg) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    const char *stage = msg[0] >= 0 && msg[0] <= 5 ? stage_names[msg[0]] : "setup";
    send_meta("{\"event\":\"error\",\"stage\":\"%s\",\"errno\":%d,\"message\":\"%s\"}", stage, msg[1], strerror(msg[1]));
    send_meta("{\"event\":\"exit\",\"code\":127,\"signal\":0,\"timedOut\":false,\"nplTruncated\":false}");
    return 127;
  }
  send_meta("{\"event\":\"started\",\"pid\":%d}", (int)pid);

  int timed_from_exec = !o.args_packets || o.exec_after_args;
  int64_t deadline = o.timeout_ms > 0 && timed_from_exec ? now_ms() + o.timeout_ms : -1;
  int64_t drain_until = -1;            /* set once the contract has exited */
  int status = 0, exited = 0, timed_out = 0, bridge_open = 1, clock_started = timed_from_exec;

  for (;;) {
    if (exited && ctl.eof && npl.eof) break;
    if (exited && now_ms() >= drain_until) break;

    struct pollfd p[5];
    int np = 0, i_sig, i_br = -1, i_ctl = -1, i_npl = -1, i_args = -1;
    i_sig = np;
    p[np++] = (struct pollfd){sig_pipe_r, POLLIN, 0};
    if (bridge_open && !exited) { i_br = np; p[np++] = (struct pollfd){bridge_fd, POLLIN, 0}; }
    if (ctl.fd >= 0 && !ctl.eof) {
      i_ctl = np;
      p[np++] = (struct pollfd){ctl.fd, POLLIN | POLLRDHUP | (ctl.head && !exited ? POLLOUT : 0), 0};
    }
    if (npl.fd >= 0 && !npl.eof) {
      i_npl = np;
      p[np++] = (struct pollfd){npl.fd, POLLIN | POLLRDHUP | (npl.head && !exited ? POLLOUT : 0), 0};
    }
    if (args.fd >= 0 && args.head && !exited) { i_args = np; p[np++] = (struct pollfd){args.fd, POLLOUT, 0}; }

    int64_t until = exited ? drain_until : deadline;
    int wait = -1;
    if (until >= 0) {
      int64_t left = until - now_ms();
      wait = left < 0 ? 0 : (int)(left > 60000 ? 60000 : left);
    }
    int r = poll(p, (nfds_t)np, wait);
    if (r < 0 && errno != EINTR) die("poll: %s", strerror(errno));

    if (!exited && deadline >= 0 && now_ms() >= deadline && !timed_out) {
      timed_out = 1;                   /* exec_timeout: kill the whole group, then reap below */
      deadline = -1;
      kill(-pid, SIGKILL);
    }
    if (r <= 0) continue;

    if (p[i_sig].revents & POLLIN) {
      char junk[64];
      while (read(sig_pipe_r, junk, sizeof junk) > 0) {}
      int st;
      pid_t w;
      while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
        if (w == pid) {
          status = st;
          exited = 1;
          kill(-pid, SIGKILL);         /* leftovers of the group must not outlive the round */
          drain_until = now_ms() + DRAIN_GRACE_MS;
          drop_queue(&ctl);            /* nobody will read these any more */
          drop_queue(&npl);
        }
      }
    }
    if (i_br >= 0 && (p[i_br].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (!read_bridge(&ctl, o.npl_fd >= 0 ? &npl : NULL, o.args_packets && !o.exec_after_args ? &args : NULL)) {
        bridge_open = 0;               /* Node is gone or broken: the contract must not run on */
        kill(-pid, SIGKILL);
      }
    }
    if (i_ctl >= 0) {
      if (p[i_ctl].revents & POLLOUT) flush_queue(&ctl);
      if (p[i_ctl].revents & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)) read_packets(&ctl, CH_CONTROL, p[i_ctl].revents);
    }
    if (i_npl >= 0) {
      if (p[i_npl].revents & POLLOUT) flush_queue(&npl);
      if (p[i_npl].revents & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)) read_packets(&npl, CH_NPL, p[i_npl].revents);
    }
    if (i_args >= 0 && (p[i_args].revents & (POLLHUP | POLLERR))) close_chan(&args); /* it will never read them */
    /* New packets from Node may fit right away; don't wait for the next POLLOUT round. */
    if (!exited) { flush_queue(&ctl); flush_queue(&npl); flush_queue(&args); }
    if (args_ended && !clock_started && !args.head) {
      clock_started = 1;
      close_chan(&args);               /* EOF after the last packet: the contract has all its args */
      if (o.timeout_ms > 0 && !exited) deadline = now_ms() + o.timeout_ms;
    }
  }

  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  send_meta("{\"event\":\"exit\",\"code\":%d,\"signal\":%d,\"timedOut\":%s,\"nplTruncated\":%s}", code, sig,
            timed_out ? "true" : "false", npl_truncated ? "true" : "false");
  return sig ? 128 + sig : code;
}
