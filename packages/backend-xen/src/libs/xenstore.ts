/**
 * One xenstore connection (`xs_open`): read to learn about the guest (its type, its memory
 * size), written to publish event channels to a Xen-aware guest.
 */
import { BadHandleError, InvalidError } from '@vmed/core';
import { XBT_NULL, XS_PERMISSIONS_SIZE, decodeCString, freeNative, lastErrno, type Pointer, type XenstoreLib } from '../abi/xen.js';
import { loadXenstoreLib } from './load.js';
import { errorFromErrno, lastError } from './errno.js';
import { withFdDelta } from './fds.js';

/** One entry of a node's permission list: the first names the owner and the default for everyone else. */
export interface XenstorePermission {
  readonly domid: number;
  /** `XS_PERM_NONE`, `XS_PERM_READ`, `XS_PERM_WRITE` or READ|WRITE. */
  readonly perms: number;
}

const ENOENT = 2;

function checkPath(operation: string, path: string): void {
  // xenstore paths are ASCII without NUL; a NUL would silently truncate the C string.
  if (path.length === 0 || path.length > 3072 || path.includes('\0')) throw new InvalidError(operation, `bad xenstore path ${JSON.stringify(path)}`);
}

/** A xenstore connection. */
export class XenstoreHandle {
  readonly #lib: XenstoreLib;
  #handle: Pointer | null;
  /** Descriptors `xs_open` opened (the xenstored socket or `/dev/xen/xenbus`). */
  readonly fds: number;

  private constructor(lib: XenstoreLib, handle: Pointer, fds: number) {
    this.#lib = lib;
    this.#handle = handle;
    this.fds = fds;
  }

  /** Connects to xenstored; `Io`/`NotFound` when it is not running. */
  static open(): XenstoreHandle {
    const lib = loadXenstoreLib();
    // SAFETY: flags 0 (the old flags are ignored); the handle is ours until xs_close.
    const { value: handle, fds, errno } = withFdDelta(() => lib.open(0));
    if (handle === null) throw errorFromErrno('xen.xenstore.open', 'cannot connect to xenstored', errno);
    return new XenstoreHandle(lib, handle, fds);
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  #h(operation: string): Pointer {
    if (this.#handle === null) throw new BadHandleError(operation, 'xenstore handle is closed');
    return this.#handle;
  }

  /** `xs_read`: the node's value, or `undefined` when it does not exist. */
  read(path: string): string | undefined {
    const op = 'xen.xenstore.read';
    checkPath(op, path);
    const len = new Uint32Array(1);
    // SAFETY: xs_read returns a malloc'd, NUL-terminated copy of `len[0]` bytes: decoded, then freed.
    const value = this.#lib.read(this.#h(op), XBT_NULL, path, len);
    if (value === null) {
      const errno = lastErrno();
      if (errno === ENOENT) return undefined;
      throw errorFromErrno(op, `cannot read ${path}`, errno);
    }
    try {
      return decodeCString(value, len[0] as number);
    } finally {
      freeNative(value);
    }
  }

  /** `xs_write`: creates or replaces the node (parents are created as needed). */
  write(path: string, value: string): void {
    const op = 'xen.xenstore.write';
    checkPath(op, path);
    const bytes = new TextEncoder().encode(value);
    if (!this.#lib.write(this.#h(op), XBT_NULL, path, bytes, bytes.length)) throw lastError(op, `cannot write ${path}`);
  }

  /** `xs_rm`: removes the node and its children; a missing node is not an error. */
  remove(path: string): void {
    const op = 'xen.xenstore.rm';
    checkPath(op, path);
    if (!this.#lib.rm(this.#h(op), XBT_NULL, path)) {
      const errno = lastErrno();
      if (errno !== ENOENT) throw errorFromErrno(op, `cannot remove ${path}`, errno);
    }
  }

  /** `xs_set_permissions`. */
  setPermissions(path: string, perms: readonly XenstorePermission[]): void {
    const op = 'xen.xenstore.setPermissions';
    checkPath(op, path);
    const raw = new Uint32Array((perms.length * XS_PERMISSIONS_SIZE) / 4);
    perms.forEach((p, i) => {
      raw[2 * i] = p.domid;
      raw[2 * i + 1] = p.perms;
    });
    // SAFETY: `raw` is `perms.length` struct xs_permissions, read during the call only.
    if (!this.#lib.setPermissions(this.#h(op), XBT_NULL, path, raw, perms.length)) throw lastError(op, `cannot set permissions of ${path}`);
  }

  /** `xs_close`. Idempotent. */
  close(): void {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    this.#lib.close(h);
  }
}
