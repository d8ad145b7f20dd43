/**
 * The part of libuv's API vmed binds, from Node's own binary (which exports it for addons):
 * `koffi.load(null)` opens the running program, the way the kick signal finds glibc's
 * `getpid` with `dlsym(NULL, …)`. Each declaration sits beside the `uv.h` prototype it
 * mirrors. This module imports only koffi, so a vCPU thread can load it for
 * {@link uvAsyncSender} without the rest of vmed.
 *
 * Callback types are anonymous (no named `koffi.proto`), so evaluating this module twice in
 * one thread cannot hit koffi's "Duplicate type name".
 */
import koffi from 'koffi';
import type { TypeObject } from 'koffi';

/** uv.h: `uv_handle_type` values (UV_HANDLE_TYPE_MAP order: ASYNC = 1 … POLL = 8). */
export const UV_ASYNC = 1;
export const UV_POLL = 8;
/** uv.h: `enum uv_poll_event`. */
export const UV_READABLE = 1;

type Native<A extends unknown[], R> = (...args: A) => R;

export interface UvApi {
  // uv.h: uv_loop_t *uv_default_loop(void);
  readonly defaultLoop: Native<[], bigint>;
  // uv.h: size_t uv_handle_size(uv_handle_type type);
  readonly handleSize: Native<[type: number], number | bigint>;
  // uv.h: int uv_poll_init(uv_loop_t *loop, uv_poll_t *handle, int fd);
  readonly pollInit: Native<[loop: bigint, handle: bigint, fd: number], number>;
  // uv.h: int uv_poll_start(uv_poll_t *handle, int events, uv_poll_cb cb);
  readonly pollStart: Native<[handle: bigint, events: number, cb: bigint], number>;
  // uv.h: int uv_poll_stop(uv_poll_t *handle);
  readonly pollStop: Native<[handle: bigint], number>;
  // uv.h: int uv_async_init(uv_loop_t *loop, uv_async_t *handle, uv_async_cb async_cb);
  readonly asyncInit: Native<[loop: bigint, handle: bigint, cb: bigint], number>;
  // uv.h: void uv_close(uv_handle_t *handle, uv_close_cb close_cb);
  readonly close: Native<[handle: bigint, cb: bigint], void>;
  // uv.h: void uv_unref(uv_handle_t *handle);
  readonly unref: Native<[handle: bigint], void>;
  // uv.h: const char *uv_err_name(int err);
  readonly errName: Native<[err: number], string>;
  /** uv.h: `typedef void (*uv_poll_cb)(uv_poll_t *handle, int status, int events);` */
  readonly pollCallbackType: TypeObject;
  /** uv.h: `uv_async_cb` and `uv_close_cb`: `void (*)(handle *)`. */
  readonly handleCallbackType: TypeObject;
}

/** Binds the API. Throws when the running program does not export it (not Node, or a build without it). */
export function bindUvApi(): UvApi {
  // dlopen(NULL): the running program, whose dynamic symbol table holds libuv's API.
  const self = koffi.load(null);
  const pollCallbackType = koffi.proto('void', ['void *', 'int', 'int']);
  const handleCallbackType = koffi.proto('void', ['void *']);
  return {
    defaultLoop: self.func('uv_default_loop', 'void *', []) as UvApi['defaultLoop'],
    handleSize: self.func('uv_handle_size', 'size_t', ['int']) as UvApi['handleSize'],
    pollInit: self.func('uv_poll_init', 'int', ['void *', 'void *', 'int']) as UvApi['pollInit'],
    pollStart: self.func('uv_poll_start', 'int', ['void *', 'int', koffi.pointer(pollCallbackType)]) as UvApi['pollStart'],
    pollStop: self.func('uv_poll_stop', 'int', ['void *']) as UvApi['pollStop'],
    asyncInit: self.func('uv_async_init', 'int', ['void *', 'void *', koffi.pointer(handleCallbackType)]) as UvApi['asyncInit'],
    close: self.func('uv_close', 'void', ['void *', koffi.pointer(handleCallbackType)]) as UvApi['close'],
    unref: self.func('uv_unref', 'void', ['void *']) as UvApi['unref'],
    errName: self.func('uv_err_name', 'const char *', ['int']) as UvApi['errName'],
    pollCallbackType,
    handleCallbackType,
  };
}

/**
 * A function that wakes the loop owning the `uv_async_t` at `handle`, callable from any thread
 * (`uv_async_send` is libuv's one thread-safe call). The handle must stay open while it is used.
 */
export function uvAsyncSender(handle: bigint): () => void {
  // uv.h: int uv_async_send(uv_async_t *async);
  const send = koffi.load(null).func('uv_async_send', 'int', ['void *']) as (async: bigint) => number;
  // libuv sets the handle's pending flag and, if it was clear, writes the loop's eventfd; it
  // only reads and writes the handle, which its owner keeps open until every sender is gone.
  return () => {
    send(handle);
  };
}
