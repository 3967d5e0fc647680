// Echo contract in C, against the plain POSIX contract interface (no SDK): the same behaviour as
// examples/echo (Node.js, upstream SDK) without Node's ~50 ms boot per round, for benchmarks and
// as a template for native contracts.
//
// Interface (docs/CONTRACTS.md): the args JSON arrives on stdin until EOF; users maps each public
// key to [out_fd, [offset, length], ...], the spans being that user's inputs in the file open at
// user_in_fd; each output is written to out_fd as a 4-byte big-endian length then the bytes.
// Consensus runs add the number of inputs to echo-count.txt in the state directory (the cwd); a
// read request "count" is answered with that count.
//
// Build: cc -O2 -o echo-contract echo.c (native/build.sh does it for the benchmarks).
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "native echo: %s: %s\n", what, errno ? strerror(errno) : "malformed args");
  exit(1);
}

// ---- a small JSON reader: just enough to walk the args object -----------------------------------

typedef struct { const char *p, *end; } Json;

static void ws(Json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static int peek(Json *j) {
  ws(j);
  return j->p < j->end ? *j->p : -1;
}

static void expect(Json *j, char c) {
  if (peek(j) != c) { errno = 0; die("args JSON"); }
  j->p++;
}

// A string's raw bytes (escapes are left as they are: keys and values we need have none).
static void string(Json *j, const char **s, size_t *n) {
  expect(j, '"');
  const char *start = j->p;
  while (j->p < j->end && *j->p != '"') j->p += (*j->p == '\\') ? 2 : 1;
  if (j->p >= j->end) { errno = 0; die("args JSON string"); }
  *s = start;
  *n = (size_t)(j->p - start);
  j->p++;
}

static long long number(Json *j) {
  ws(j);
  char *after;
  long long v = strtoll(j->p, &after, 10);
  if (after == j->p) { errno = 0; die("args JSON number"); }
  j->p = after;
  return v;
}

static void skip(Json *j) {
  int c = peek(j);
  if (c == '"') { const char *s; size_t n; string(j, &s, &n); return; }
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    if (peek(j) == close) { j->p++; return; }
    for (;;) {
      if (c == '{') { const char *s; size_t n; string(j, &s, &n); expect(j, ':'); }
      skip(j);
      if (peek(j) == ',') { j->p++; continue; }
      expect(j, close);
      return;
    }
  }
  while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']') j->p++; // number, true, false, null
}

static int is_key(const char *s, size_t n, const char *key) {
  return strlen(key) == n && memcmp(s, key, n) == 0;
}

// ---- output --------------------------------------------------------------------------------------

typedef struct { char *data; size_t len, cap; } Buf;

static void put(Buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    if (!(b->data = realloc(b->data, b->cap))) die("out of memory");
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void message(Buf *b, const char *prefix, const char *body, size_t n) {
  size_t total = strlen(prefix) + n;
  unsigned char hdr[4] = { (unsigned char)(total >> 24), (unsigned char)(total >> 16), (unsigned char)(total >> 8), (unsigned char)total };
  put(b, hdr, 4);
  put(b, prefix, strlen(prefix));
  put(b, body, n);
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) die("writing outputs");
    p += w;
    n -= (size_t)w;
  }
}

// ---- the contract --------------------------------------------------------------------------------

static long long read_count(void) {
  FILE *f = fopen("echo-count.txt", "r");
  if (!f) return 0;
  long long c = 0;
  if (fscanf(f, "%lld", &c) != 1) c = 0;
  fclose(f);
  return c;
}

int main(void) {
  Buf args = { 0 };
  char chunk[65536];
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("reading args");
    if (r == 0) break;
    put(&args, chunk, (size_t)r);
  }

  // First pass: the scalars (users may come before them in another implementation's order).
  long long in_fd = -1;
  int readonly = 0;
  const char *users_at = NULL;
  Json j = { args.data, args.data + args.len };
  expect(&j, '{');
  while (peek(&j) == '"') {
    const char *k; size_t kn;
    string(&j, &k, &kn);
    expect(&j, ':');
    if (is_key(k, kn, "user_in_fd")) in_fd = number(&j);
    else if (is_key(k, kn, "readonly")) { readonly = peek(&j) == 't'; skip(&j); }
    else if (is_key(k, kn, "users")) { users_at = j.p; skip(&j); }
    else skip(&j);
    if (peek(&j) == ',') j.p++;
  }
  if (in_fd < 0 || !users_at) { errno = 0; die("args lack user_in_fd or users"); }

  long long count = read_count();
  Json u = { users_at, args.data + args.len };
  Buf out = { 0 };
  Buf input = { 0 };
  expect(&u, '{');
  while (peek(&u) == '"') {
    const char *k; size_t kn;
    string(&u, &k, &kn);
    expect(&u, ':');
    expect(&u, '[');
    int out_fd = (int)number(&u);
    out.len = 0;
    while (peek(&u) == ',') {
      u.p++;
      expect(&u, '[');
      long long off = number(&u);
      expect(&u, ',');
      long long len = number(&u);
      expect(&u, ']');
      if (off < 0 || len < 0) { errno = 0; die("negative input span"); }
      input.len = 0;
      if ((size_t)len > input.cap) {
        input.cap = (size_t)len;
        if (!(input.data = realloc(input.data, input.cap))) die("out of memory");
      }
      for (size_t got = 0; got < (size_t)len;) {
        ssize_t r = pread((int)in_fd, input.data + got, (size_t)len - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("reading an input");
        got += (size_t)r;
      }
      if (readonly && len == 5 && memcmp(input.data, "count", 5) == 0) {
        char s[32];
        int n = snprintf(s, sizeof s, "%lld", count);
        message(&out, "count: ", s, (size_t)n);
        continue;
      }
      count++;
      message(&out, "Echoing: ", input.data, (size_t)len);
    }
    expect(&u, ']');
    write_all(out_fd, out.data, out.len);
    if (peek(&u) == ',') u.p++;
  }
  if (!readonly) {
    FILE *f = fopen("echo-count.txt", "w");
    if (!f || fprintf(f, "%lld", count) < 0 || fclose(f) != 0) die("writing echo-count.txt");
  }
  return 0;
}
