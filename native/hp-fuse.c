// hp-fuse: a Node-API binding of libfuse3's low-level API that serves /dev/fuse on Node's own
// event loop thread (src/state/lowLevelFuse.ts is its only user).
//
// Why not fuse-native: it serves libfuse 2's path-based API on a thread of its own and hands each
// request to JS through a uv_async + semaphore, four thread wake-ups per request (~70-100 us on
// the benchmark machine, whatever the handler does). Here libuv polls the session fd, the request
// is decoded and handed to JS on the same thread and the reply goes straight back: two wake-ups.
// libfuse 3 also gives 1 MiB writes, kernel page caching per open (keep_cache) and an inode API.
//
// JS side contract (all calls on the main thread):
//   mount(mountpoint, options, handlers) -> session fd; options is libfuse's "-o" string
//   unmount()                            -> stops polling, unmounts, frees the session
//   handlers.<op>(slot, ...args)          each request gets a slot number; the handler answers it,
//                                         now or later, with exactly one reply*(slot, ...) call.
//   replyErr(slot, errno)                  errno 0 = success for ops without data
//   replyEntry(slot, attr, timeoutSec)     attr: Float64Array [nodeid, ino, mode, nlink, uid, gid,
//   replyAttr(slot, attr, timeoutSec)              size, blocks, blksize, mtimeMs]; nodeid 0 in
//   replyCreate(slot, attr, timeoutSec, fh)        replyEntry = cached negative entry
//   replyOpen(slot, fh, flags)             flags: 1 keep_cache, 2 cache_readdir, 4 noflush
//   replyBuf(slot, buffer, length)
//   replyWrite(slot, count)
//   replyReadlink(slot, target)
//   replyStatfs(slot, Float64Array [bsize, blocks, bfree, files, ffree, namemax])
// forget and releasedir-style notifications are answered here; write data is passed as a Buffer
// over libfuse's receive buffer, valid only until the handler returns (copy it to keep it).
#define FUSE_USE_VERSION 35
#define NAPI_VERSION 8
#define NODE_GYP_MODULE_NAME hp_fuse
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum op {
  OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKDIR, OP_UNLINK, OP_RMDIR,
  OP_SYMLINK, OP_RENAME, OP_OPEN, OP_READ, OP_WRITE, OP_RELEASE, OP_OPENDIR, OP_READDIR,
  OP_RELEASEDIR, OP_STATFS, OP_CREATE, OP_COUNT
};
static const char *const OP_NAMES[OP_COUNT] = {
  "lookup", "forget", "getattr", "setattr", "readlink", "mkdir", "unlink", "rmdir",
  "symlink", "rename", "open", "read", "write", "release", "opendir", "readdir",
  "releasedir", "statfs", "create",
};

struct slot {
  fuse_req_t req; // NULL when free
  struct fuse_file_info fi;
  uint32_t next_free;
};

static struct {
  napi_env env;
  napi_ref handlers[OP_COUNT];
  napi_ref recv; // the handlers object, `this` of every call
  napi_async_context async;
  struct fuse_session *se;
  uv_poll_t *poll; // one per mount: a closing one may outlive the session
  struct fuse_buf buf;
  struct slot *slots;
  uint32_t nslots, free_head;
} g = { .free_head = UINT32_MAX };

// ---- slots: a request waiting for its reply ------------------------------------------------------

static uint32_t slot_take(fuse_req_t req, const struct fuse_file_info *fi) {
  if (g.free_head == UINT32_MAX) {
    uint32_t grown = g.nslots ? g.nslots * 2 : 64;
    struct slot *s = realloc(g.slots, grown * sizeof *s);
    if (!s) return UINT32_MAX;
    for (uint32_t i = g.nslots; i < grown; i++) {
      s[i].req = NULL;
      s[i].next_free = i + 1 < grown ? i + 1 : UINT32_MAX;
    }
    g.free_head = g.nslots;
    g.slots = s;
    g.nslots = grown;
  }
  uint32_t i = g.free_head;
  g.free_head = g.slots[i].next_free;
  g.slots[i].req = req;
  if (fi) g.slots[i].fi = *fi;
  else memset(&g.slots[i].fi, 0, sizeof g.slots[i].fi);
  return i;
}

static fuse_req_t slot_give(uint32_t i, struct fuse_file_info *fi) {
  if (i >= g.nslots || !g.slots[i].req) return NULL;
  fuse_req_t req = g.slots[i].req;
  if (fi) *fi = g.slots[i].fi;
  g.slots[i].req = NULL;
  g.slots[i].next_free = g.free_head;
  g.free_head = i;
  return req;
}

// ---- calling JS ---------------------------------------------------------------------------------

static napi_value num(double v) {
  napi_value out;
  napi_create_double(g.env, v, &out);
  return out;
}

static napi_value str(const char *s) {
  napi_value out;
  napi_create_string_utf8(g.env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

/** Calls handlers[op](slot, ...args); a handler that throws gets the request answered with EIO. */
static void call(enum op op, fuse_req_t req, const struct fuse_file_info *fi, size_t argc, napi_value *argv) {
  uint32_t slot = UINT32_MAX;
  if (req) {
    slot = slot_take(req, fi);
    if (slot == UINT32_MAX) {
      fuse_reply_err(req, ENOMEM);
      return;
    }
  }
  napi_value fn, recv, result, args[8];
  args[0] = num(slot == UINT32_MAX ? -1.0 : (double)slot);
  for (size_t i = 0; i < argc && i < 7; i++) args[i + 1] = argv[i];
  napi_get_reference_value(g.env, g.handlers[op], &fn);
  napi_get_reference_value(g.env, g.recv, &recv);
  napi_status st = napi_make_callback(g.env, g.async, recv, fn, argc + 1, args, &result);
  if (st != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(g.env, &pending);
    if (pending) {
      napi_value err;
      napi_get_and_clear_last_exception(g.env, &err);
      napi_fatal_exception(g.env, err);
    }
    if (slot != UINT32_MAX) {
      fuse_req_t r = slot_give(slot, NULL);
      if (r) fuse_reply_err(r, EIO);
    }
  }
}

// ---- low-level operations -----------------------------------------------------------------------

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  conn->max_write = 1 << 20;
  // O_TRUNC arrives as a separate setattr(size 0), as with libfuse 2: one code path for truncation.
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  // The kernel must not keep its own idea of size or mtime: every change is stamped by the session.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

// The JS values of one call live in a handle scope of their own (forget_multi makes many calls).
#define SCOPED(...) do { napi_handle_scope scope_; napi_open_handle_scope(g.env, &scope_); __VA_ARGS__; napi_close_handle_scope(g.env, scope_); } while (0)

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  SCOPED({ napi_value a[] = { num(parent), str(name) }; call(OP_LOOKUP, req, NULL, 2, a); });
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  SCOPED({ napi_value a[] = { num(ino), num((double)nlookup) }; call(OP_FORGET, NULL, NULL, 2, a); });
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  for (size_t i = 0; i < count; i++) {
    SCOPED({ napi_value a[] = { num(forgets[i].ino), num((double)forgets[i].nlookup) }; call(OP_FORGET, NULL, NULL, 2, a); });
  }
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  SCOPED({ napi_value a[] = { num(ino), num(fi ? (double)fi->fh : 0) }; call(OP_GETATTR, req, fi, 2, a); });
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  SCOPED({
    napi_value a[] = { num(ino), num(to_set), num(attr->st_mode), num(attr->st_uid), num(attr->st_gid), num((double)attr->st_size), num(fi ? (double)fi->fh : 0) };
    call(OP_SETATTR, req, fi, 7, a);
  });
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  SCOPED({ napi_value a[] = { num(ino) }; call(OP_READLINK, req, NULL, 1, a); });
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  (void)parent; (void)name; (void)mode; (void)rdev;
  fuse_reply_err(req, EPERM); // regular files come through create; devices and fifos are not state
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  SCOPED({ napi_value a[] = { num(parent), str(name), num(mode) }; call(OP_MKDIR, req, NULL, 3, a); });
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  SCOPED({ napi_value a[] = { num(parent), str(name) }; call(OP_UNLINK, req, NULL, 2, a); });
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  SCOPED({ napi_value a[] = { num(parent), str(name) }; call(OP_RMDIR, req, NULL, 2, a); });
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  SCOPED({ napi_value a[] = { str(link), num(parent), str(name) }; call(OP_SYMLINK, req, NULL, 3, a); });
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  if (flags) {
    fuse_reply_err(req, EINVAL); // RENAME_NOREPLACE / RENAME_EXCHANGE are not supported
    return;
  }
  SCOPED({ napi_value a[] = { num(parent), str(name), num(newparent), str(newname) }; call(OP_RENAME, req, NULL, 4, a); });
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  (void)ino; (void)newparent; (void)newname;
  fuse_reply_err(req, EPERM); // hard links are not part of the state model
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  SCOPED({ napi_value a[] = { num(ino), num(fi->flags) }; call(OP_OPEN, req, fi, 2, a); });
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  SCOPED({ napi_value a[] = { num(ino), num((double)fi->fh), num((double)size), num((double)off) }; call(OP_READ, req, fi, 4, a); });
}

static void noop_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)data; (void)hint;
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off, struct fuse_file_info *fi) {
  SCOPED({
    napi_value buf;
    if (napi_create_external_buffer(g.env, size, (void *)data, noop_finalize, NULL, &buf) != napi_ok) {
      void *copy;
      napi_create_buffer_copy(g.env, size, data, &copy, &buf);
    }
    napi_value a[] = { num(ino), num((double)fi->fh), buf, num((double)size), num((double)off) };
    call(OP_WRITE, req, fi, 5, a);
  });
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  SCOPED({ napi_value a[] = { num(ino), num((double)fi->fh) }; call(OP_RELEASE, req, fi, 2, a); });
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  SCOPED({ napi_value a[] = { num(ino) }; call(OP_OPENDIR, req, fi, 1, a); });
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  SCOPED({ napi_value a[] = { num(ino), num((double)fi->fh), num((double)size), num((double)off) }; call(OP_READDIR, req, fi, 4, a); });
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  SCOPED({ napi_value a[] = { num(ino), num((double)fi->fh) }; call(OP_RELEASEDIR, NULL, NULL, 2, a); });
  fuse_reply_err(req, 0);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  SCOPED({ napi_value a[] = { num(ino) }; call(OP_STATFS, req, NULL, 1, a); });
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  SCOPED({ napi_value a[] = { num(parent), str(name), num(mode), num(fi->flags) }; call(OP_CREATE, req, fi, 4, a); });
}

// Unset on purpose: flush, fsync, fsyncdir, access and the xattr calls. libfuse answers ENOSYS,
// and the kernel then stops sending them (durability comes from commit; there are no xattrs).
static const struct fuse_lowlevel_ops LL_OPS = {
  .init = ll_init, .lookup = ll_lookup, .forget = ll_forget, .forget_multi = ll_forget_multi,
  .getattr = ll_getattr, .setattr = ll_setattr, .readlink = ll_readlink, .mknod = ll_mknod,
  .mkdir = ll_mkdir, .unlink = ll_unlink, .rmdir = ll_rmdir, .symlink = ll_symlink,
  .rename = ll_rename, .link = ll_link, .open = ll_open, .read = ll_read, .write = ll_write,
  .release = ll_release, .opendir = ll_opendir, .readdir = ll_readdir,
  .releasedir = ll_releasedir, .statfs = ll_statfs, .create = ll_create,
};

// ---- the session on the event loop --------------------------------------------------------------

static void poll_closed(uv_handle_t *h) {
  free(h);
}

static void stop_polling(void) {
  if (g.poll) {
    uv_close((uv_handle_t *)g.poll, poll_closed);
    g.poll = NULL;
  }
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)handle; (void)events;
  if (status < 0 || !g.se) return;
  // Drain what is queued, but give the rest of the loop (IPC from the parent) a turn now and then.
  for (int i = 0; i < 256 && g.se; i++) {
    int n = fuse_session_receive_buf(g.se, &g.buf);
    if (n == -EAGAIN || n == -EINTR) return;
    if (n <= 0 || fuse_session_exited(g.se)) { // unmounted from outside (ENODEV) or fatal
      stop_polling();
      return;
    }
    fuse_session_process_buf(g.se, &g.buf); // each handler opens its own handle scope (SCOPED)
  }
}

// ---- exported functions -------------------------------------------------------------------------

#define CHECK(expr) do { if ((expr) != napi_ok) { napi_throw_error(env, NULL, "hp-fuse: " #expr " failed"); return NULL; } } while (0)

static napi_value get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "hp-fuse: missing arguments");
    return NULL;
  }
  return argv[0];
}

static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  if (g.se) {
    napi_throw_error(env, "EBUSY", "hp-fuse: this process already serves a mount");
    return NULL;
  }
  char mountpoint[4096], options[4096];
  size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], mountpoint, sizeof mountpoint, &len));
  CHECK(napi_get_value_string_utf8(env, argv[1], options, sizeof options, &len));
  g.env = env;
  CHECK(napi_create_reference(env, argv[2], 1, &g.recv));
  for (int i = 0; i < OP_COUNT; i++) {
    napi_value fn;
    napi_valuetype t;
    CHECK(napi_get_named_property(env, argv[2], OP_NAMES[i], &fn));
    CHECK(napi_typeof(env, fn, &t));
    if (t != napi_function) {
      napi_throw_type_error(env, NULL, "hp-fuse: a handler is missing");
      return NULL;
    }
    CHECK(napi_create_reference(env, fn, 1, &g.handlers[i]));
  }
  napi_value name;
  CHECK(napi_create_string_utf8(env, "hp-fuse", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &g.async));

  char *fargv[] = { "hp-fuse", "-o", options, NULL };
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  g.se = fuse_session_new(&args, &LL_OPS, sizeof LL_OPS, NULL);
  if (!g.se) {
    napi_throw_error(env, "EINVAL", "hp-fuse: fuse_session_new failed (bad mount options?)");
    return NULL;
  }
  if (fuse_session_mount(g.se, mountpoint) != 0) {
    fuse_session_destroy(g.se);
    g.se = NULL;
    napi_throw_error(env, "EIO", "hp-fuse: cannot mount (is /dev/fuse there, and are we root or is fusermount3 installed?)");
    return NULL;
  }
  int fd = fuse_session_fd(g.se);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  g.poll = malloc(sizeof *g.poll);
  if (!g.poll || uv_poll_init(loop, g.poll, fd) != 0) {
    napi_throw_error(env, "ENOMEM", "hp-fuse: cannot poll the session fd");
    return NULL;
  }
  uv_poll_start(g.poll, UV_READABLE, on_readable);
  return num(fd);
}

static napi_value js_unmount(napi_env env, napi_callback_info info) {
  (void)info;
  if (!g.se) return NULL;
  stop_polling();
  // Requests still waiting for a reply die with the session.
  for (uint32_t i = 0; i < g.nslots; i++) {
    if (g.slots[i].req) fuse_reply_err(slot_give(i, NULL), EIO);
  }
  fuse_session_unmount(g.se);
  fuse_session_destroy(g.se);
  g.se = NULL;
  free(g.buf.mem);
  memset(&g.buf, 0, sizeof g.buf);
  for (int i = 0; i < OP_COUNT; i++) napi_delete_reference(env, g.handlers[i]);
  napi_delete_reference(env, g.recv);
  napi_async_destroy(env, g.async);
  return NULL;
}

static fuse_req_t take_slot_arg(napi_env env, napi_value v, struct fuse_file_info *fi) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0) return NULL;
  return slot_give((uint32_t)d, fi);
}

static double num_arg(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

// A reply for a slot that no longer waits (its session was unmounted, which answered it with EIO):
// said on stderr, never thrown, so a caller answering a queue of held requests answers them all.
static void stale_reply(void) {
  fputs("hp-fuse: reply to a request that is no longer waiting (ignored)\n", stderr);
}

#define TAKE(n) \
  napi_value argv[n]; \
  if (!get_args(env, info, n, argv)) return NULL; \
  struct fuse_file_info fi; \
  fuse_req_t req = take_slot_arg(env, argv[0], &fi); \
  if (!req) { stale_reply(); return NULL; }

static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  TAKE(2);
  fuse_reply_err(req, (int)num_arg(env, argv[1]));
  return NULL;
}

static int read_attr(napi_env env, napi_value arr, fuse_ino_t *nodeid, struct stat *st) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, arr, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array || length < 10) return -1;
  const double *a = data;
  memset(st, 0, sizeof *st);
  *nodeid = (fuse_ino_t)a[0];
  st->st_ino = (ino_t)a[1];
  st->st_mode = (mode_t)a[2];
  st->st_nlink = (nlink_t)a[3];
  st->st_uid = (uid_t)a[4];
  st->st_gid = (gid_t)a[5];
  st->st_size = (off_t)a[6];
  st->st_blocks = (blkcnt_t)a[7];
  st->st_blksize = (blksize_t)a[8];
  double ms = a[9];
  st->st_mtim.tv_sec = (time_t)(ms / 1000);
  st->st_mtim.tv_nsec = (long)((ms - (double)st->st_mtim.tv_sec * 1000) * 1e6);
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
  return 0;
}

static int entry_of(napi_env env, napi_value *argv, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  if (read_attr(env, argv[1], &e->ino, &e->attr) != 0) return -1;
  e->attr_timeout = e->entry_timeout = num_arg(env, argv[2]);
  return 0;
}

static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  TAKE(3);
  struct fuse_entry_param e;
  if (entry_of(env, argv, &e) != 0) fuse_reply_err(req, EIO);
  else fuse_reply_entry(req, &e);
  return NULL;
}

static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  TAKE(3);
  struct fuse_entry_param e;
  if (entry_of(env, argv, &e) != 0) fuse_reply_err(req, EIO);
  else fuse_reply_attr(req, &e.attr, e.attr_timeout);
  return NULL;
}

static void set_open_flags(struct fuse_file_info *fi, int flags) {
  fi->keep_cache = (flags & 1) != 0;
  fi->cache_readdir = (flags & 2) != 0;
  fi->noflush = (flags & 4) != 0;
}

static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  TAKE(5);
  struct fuse_entry_param e;
  if (entry_of(env, argv, &e) != 0) {
    fuse_reply_err(req, EIO);
    return NULL;
  }
  fi.fh = (uint64_t)num_arg(env, argv[3]);
  set_open_flags(&fi, (int)num_arg(env, argv[4]));
  fuse_reply_create(req, &e, &fi);
  return NULL;
}

static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  TAKE(3);
  fi.fh = (uint64_t)num_arg(env, argv[1]);
  set_open_flags(&fi, (int)num_arg(env, argv[2]));
  fuse_reply_open(req, &fi);
  return NULL;
}

static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  TAKE(3);
  void *data;
  size_t length;
  if (napi_get_buffer_info(env, argv[1], &data, &length) != napi_ok) {
    fuse_reply_err(req, EIO);
    return NULL;
  }
  double n = num_arg(env, argv[2]);
  fuse_reply_buf(req, data, n < 0 ? 0 : (size_t)n > length ? length : (size_t)n);
  return NULL;
}

static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  TAKE(2);
  fuse_reply_write(req, (size_t)num_arg(env, argv[1]));
  return NULL;
}

static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  TAKE(2);
  char target[4097];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[1], target, sizeof target, &len) != napi_ok) fuse_reply_err(req, EIO);
  else fuse_reply_readlink(req, target);
  return NULL;
}

static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  TAKE(2);
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array || length < 6) {
    fuse_reply_err(req, EIO);
    return NULL;
  }
  const double *a = data;
  struct statvfs s;
  memset(&s, 0, sizeof s);
  s.f_bsize = s.f_frsize = (unsigned long)a[0];
  s.f_blocks = (fsblkcnt_t)a[1];
  s.f_bfree = s.f_bavail = (fsblkcnt_t)a[2];
  s.f_files = (fsfilcnt_t)a[3];
  s.f_ffree = s.f_favail = (fsfilcnt_t)a[4];
  s.f_namemax = (unsigned long)a[5];
  fuse_reply_statfs(req, &s);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  static const struct { const char *name; napi_callback fn; } fns[] = {
    { "mount", js_mount }, { "unmount", js_unmount }, { "replyErr", js_reply_err },
    { "replyEntry", js_reply_entry }, { "replyAttr", js_reply_attr }, { "replyCreate", js_reply_create },
    { "replyOpen", js_reply_open }, { "replyBuf", js_reply_buf }, { "replyWrite", js_reply_write },
    { "replyReadlink", js_reply_readlink }, { "replyStatfs", js_reply_statfs },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
