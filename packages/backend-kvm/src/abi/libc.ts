/**
 * The libc surface this backend uses, bound once per thread through koffi, with the constants
 * it needs. Each declaration sits beside the header prototype it mirrors. Nothing else in the
 * package calls `koffi.load` or declares a libc function.
 *
 * Every prototype is fixed (never variadic): `ioctl` has a pointer-argument and an
 * integer-argument twin, `open` always passes a mode. koffi passes a `Uint8Array`/`Buffer`
 * argument as a pointer to its own bytes (no copy), so out-parameters are written in place;
 * the caller owns those buffers and they only need to live for the call.
 *
 * Types are anonymous (no `koffi.struct('name', …)`), so evaluating this module twice in one
 * thread (vitest isolation) cannot hit koffi's "Duplicate type name"; the bindings themselves
 * are cached per thread on `globalThis`.
 */
import koffi from 'koffi';

/** A koffi-bound native function; koffi checks argument types at call time. */
type Native<A extends unknown[], R> = (...args: A) => R;

/** Pointer or buffer argument: a host address (bigint), a buffer koffi passes in place, or NULL. */
export type PointerArg = bigint | Uint8Array | null;

export interface Libc {
  // fcntl.h: int open(const char *pathname, int flags, mode_t mode);
  open: Native<[path: string, flags: number, mode: number], number>;
  // unistd.h: int close(int fd);
  close: Native<[fd: number], number>;
  // sys/ioctl.h: int ioctl(int fd, unsigned long request, ...) — pointer argument
  ioctl: Native<[fd: number, request: number, arg: PointerArg], number>;
  // sys/ioctl.h: int ioctl(int fd, unsigned long request, ...) — integer argument
  ioctlInt: Native<[fd: number, request: number, arg: number | bigint], number>;
  // sys/mman.h: void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
  mmap: Native<[addr: bigint | null, length: number | bigint, prot: number, flags: number, fd: number, offset: number | bigint], bigint>;
  // sys/mman.h: int munmap(void *addr, size_t length);
  munmap: Native<[addr: bigint, length: number | bigint], number>;
  // sys/mman.h: int mlock(const void *addr, size_t len);
  mlock: Native<[addr: bigint, length: number | bigint], number>;
  // sys/mman.h: int munlock(const void *addr, size_t len);
  munlock: Native<[addr: bigint, length: number | bigint], number>;
  // sys/mman.h: int msync(void *addr, size_t length, int flags);
  msync: Native<[addr: bigint, length: number | bigint, flags: number], number>;
  // sys/mman.h: int memfd_create(const char *name, unsigned int flags);
  memfdCreate: Native<[name: string, flags: number], number>;
  // unistd.h: int ftruncate(int fd, off_t length);
  ftruncate: Native<[fd: number, length: number | bigint], number>;
  // sys/eventfd.h: int eventfd(unsigned int initval, int flags);
  eventfd: Native<[initval: number, flags: number], number>;
  // unistd.h: ssize_t read(int fd, void *buf, size_t count);
  read: Native<[fd: number, buf: Uint8Array, count: number], number>;
  // unistd.h: ssize_t write(int fd, const void *buf, size_t count);
  write: Native<[fd: number, buf: Uint8Array, count: number], number>;
  // sys/epoll.h: int epoll_create1(int flags);
  epollCreate1: Native<[flags: number], number>;
  // sys/epoll.h: int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);
  epollCtl: Native<[epfd: number, op: number, fd: number, event: Uint8Array | null], number>;
  // sys/epoll.h: int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);
  epollWait: Native<[epfd: number, events: Uint8Array, maxEvents: number, timeoutMs: number], number>;
  // signal.h (glibc): int tgkill(pid_t tgid, pid_t tid, int sig);
  tgkill: Native<[tgid: number, tid: number, sig: number], number>;
  // unistd.h (glibc): pid_t gettid(void);
  gettid: Native<[], number>;
  // unistd.h: pid_t getpid(void);
  getpid: Native<[], number>;
  // signal.h: int sigaction(int signum, const struct sigaction *act, struct sigaction *oldact);
  sigaction: Native<[sig: number, act: Uint8Array | null, old: Uint8Array | null], number>;
  // signal.h (glibc internal, exported): int __libc_current_sigrtmin(void);
  sigrtmin: Native<[], number>;
  // dlfcn.h: void *dlsym(void *handle, const char *symbol);
  dlsym: Native<[handle: bigint | null, symbol: string], bigint>;
  // fcntl.h: int fcntl(int fd, int cmd, int arg);
  fcntl: Native<[fd: number, cmd: number, arg: number], number>;
}

const CACHE_KEY = Symbol.for('vmed.backend-kvm.libc');

function bind(): Libc {
  const lib = koffi.load('libc.so.6');
  return {
    open: lib.func('int open(const char *path, int flags, uint32_t mode)') as Libc['open'],
    close: lib.func('int close(int fd)') as Libc['close'],
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)') as Libc['ioctl'],
    ioctlInt: lib.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as Libc['ioctlInt'],
    mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)') as Libc['mmap'],
    munmap: lib.func('int munmap(void *addr, size_t length)') as Libc['munmap'],
    mlock: lib.func('int mlock(void *addr, size_t length)') as Libc['mlock'],
    munlock: lib.func('int munlock(void *addr, size_t length)') as Libc['munlock'],
    msync: lib.func('int msync(void *addr, size_t length, int flags)') as Libc['msync'],
    memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)') as Libc['memfdCreate'],
    ftruncate: lib.func('int ftruncate(int fd, int64_t length)') as Libc['ftruncate'],
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)') as Libc['eventfd'],
    read: lib.func('intptr_t read(int fd, void *buf, size_t count)') as Libc['read'],
    write: lib.func('intptr_t write(int fd, void *buf, size_t count)') as Libc['write'],
    epollCreate1: lib.func('int epoll_create1(int flags)') as Libc['epollCreate1'],
    epollCtl: lib.func('int epoll_ctl(int epfd, int op, int fd, void *event)') as Libc['epollCtl'],
    epollWait: lib.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)') as Libc['epollWait'],
    tgkill: lib.func('int tgkill(int tgid, int tid, int sig)') as Libc['tgkill'],
    gettid: lib.func('int gettid(void)') as Libc['gettid'],
    getpid: lib.func('int getpid(void)') as Libc['getpid'],
    sigaction: lib.func('int sigaction(int sig, void *act, void *old)') as Libc['sigaction'],
    sigrtmin: lib.func('int __libc_current_sigrtmin(void)') as Libc['sigrtmin'],
    dlsym: lib.func('void *dlsym(void *handle, const char *symbol)') as Libc['dlsym'],
    fcntl: lib.func('int fcntl(int fd, int cmd, int arg)') as Libc['fcntl'],
  };
}

/** The libc bindings of this thread (bound on first use). Throws if libc cannot be loaded. */
export function libc(): Libc {
  const g = globalThis as { [CACHE_KEY]?: Libc };
  let bound = g[CACHE_KEY];
  if (bound === undefined) {
    bound = bind();
    g[CACHE_KEY] = bound;
  }
  return bound;
}

/** errno of the last native call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** A zero-copy ArrayBuffer over host memory at `address`. The memory must outlive the buffer's use. */
export function hostView(address: bigint, length: number): ArrayBuffer {
  return koffi.view(address, length);
}

/**
 * Host address of a typed array's bytes, for structs that carry a pointer (kvm_dirty_log).
 * Use it only for a buffer made over an explicit `ArrayBuffer` (off-heap, never moved by the
 * GC) and only for the duration of one synchronous call.
 */
export function bufferAddress(view: ArrayBufferView): bigint {
  return koffi.address(view);
}

// ---- errno names -------------------------------------------------------------------------

const CANONICAL: Record<number, string> = { 11: 'EAGAIN', 35: 'EDEADLK', 95: 'EOPNOTSUPP' };
let errnoNames: Map<number, string> | undefined;

/** `"EBUSY"` for 16; `"E<n>"` for a number libc does not name. */
export function errnoName(errno: number): string {
  if (errnoNames === undefined) {
    errnoNames = new Map();
    for (const [name, value] of Object.entries(koffi.os.errno)) {
      if (!errnoNames.has(value)) errnoNames.set(value, name);
    }
    for (const [value, name] of Object.entries(CANONICAL)) errnoNames.set(Number(value), name);
  }
  return errnoNames.get(errno) ?? `E${errno}`;
}

// asm-generic/errno-base.h, asm-generic/errno.h
export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENXIO = 6;
export const ENODEV = 19;
export const EINVAL = 22;
export const EMFILE = 24;
export const ENOTTY = 25;
export const ENOSPC = 28;
export const ENOSYS = 38;
export const EOPNOTSUPP = 95;

// asm-generic/fcntl.h
export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;
export const F_GETFD = 1;

// asm-generic/mman-common.h, linux/mman.h
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
/** asm-generic/mman-common.h: MS_ASYNC — with msync, a cheap "is this range mapped" probe (ENOMEM if not). */
export const MS_ASYNC = 1;
/** `(void *) -1` as koffi returns it. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

// linux/memfd.h
export const MFD_CLOEXEC = 0x0001;

// sys/eventfd.h (asm-generic/fcntl.h values)
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;

// sys/epoll.h
export const EPOLL_CLOEXEC = 0o2000000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLLIN = 0x001;
export const EPOLLET = 1 << 31;
/**
 * struct epoll_event { uint32_t events; epoll_data_t data; } __attribute__((packed)) on
 * x86-64: 12 bytes, `data` (a u64 token here) at offset 4.
 */
export const EPOLL_EVENT_SIZE = 12;
export const EPOLL_EVENT_DATA_OFFSET = 4;

// bits/sigaction.h (glibc, x86-64):
// struct sigaction { __sighandler_t sa_handler; __sigset_t sa_mask; int sa_flags; void (*sa_restorer)(void); }
export const SIGACTION_SIZE = 152;
export const SIGACTION_HANDLER_OFFSET = 0;
export const SIGACTION_MASK_OFFSET = 8;
export const SIGACTION_FLAGS_OFFSET = 136;
/** bits/sigaction.h: SA_RESTART — other syscalls a stray kick lands in are restarted. */
export const SA_RESTART = 0x10000000;
/** bits/signum-generic.h: SIG_DFL, SIG_IGN as handler addresses. */
export const SIG_DFL = 0n;
export const SIG_IGN = 1n;
