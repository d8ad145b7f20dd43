/**
 * libuv handles on Node's main event loop: a poll handle lets the main thread hear an eventfd
 * straight from the kernel, through the epoll set libuv already waits in ({@link UvPoll}); an
 * async handle lets another thread wake it with one `uv_async_send` ({@link UvAsync}).
 *
 * Why: what another thread hands the main thread through `Atomics.notify` and
 * `Atomics.waitAsync` reaches JavaScript as a task V8 posts to the thread (libuv wakes the
 * loop for it), then a promise and a microtask; through the poller thread that is two thread
 * wake-ups per doorbell. An eventfd round trip through JavaScript measured 17–37 µs that way
 * here, 6–12 µs with a poll handle on the main loop, against 5–8 µs for a C thread
 * (`packages/bench/micro/eventfd-hop.mjs`).
 *
 * How: the API comes from Node's own binary (`uv-abi.ts`). One `koffi.register`ed callback per
 * kind of handle serves them all: libuv calls it on the main thread, from its loop, with no
 * JavaScript on the stack, so calling into JavaScript there is safe (koffi makes the call in a
 * callback scope: microtasks and `process.nextTick` callbacks run after it, as after any I/O
 * callback). What a handler throws goes to the handle's error listener, never into libuv.
 *
 * Only the main thread: `uv_default_loop()` is the main thread's loop, and Node gives no way
 * to reach a worker's. {@link uvLoopAvailable} says whether this thread can use them.
 *
 * Lifetime: a handle's memory (`uv_handle_size` bytes from koffi's allocator) is libuv's from
 * its init until the close callback, which frees it; {@link uvHandleCounts} counts both
 * states for leak checks. `uv_poll_stop` (which `close()` calls first) takes the fd out of
 * libuv's epoll set at once, so the owner may close the fd right after. Handles are unref'd:
 * they never keep the process alive.
 */
import koffi from 'koffi';
import { isMainThread } from 'node:worker_threads';
import { IoError, UnsupportedError } from '@vmed/core';
import { UV_ASYNC, UV_POLL, UV_READABLE, bindUvApi, type UvApi } from './uv-abi.js';

/** What the main thread binds once: the API, the callbacks and the live handles. */
interface UvState {
  readonly api: UvApi;
  readonly loop: bigint;
  readonly pollBytes: number;
  readonly asyncBytes: number;
  /** `uv_poll_cb`, registered once. */
  readonly pollCallback: bigint;
  /** `uv_async_cb`, registered once. */
  readonly asyncCallback: bigint;
  /** `uv_close_cb`, registered once. */
  readonly closeCallback: bigint;
  /** Started handles by address, with what their callback runs (status: a poll's, 0 for async). */
  readonly open: Map<bigint, (status: number) => void>;
  /** Handles given to `uv_close` whose close callback has not run yet (their memory is libuv's). */
  readonly closing: Set<bigint>;
}

// Cached per thread on globalThis: a module evaluated twice (vitest isolation) must not bind
// or register twice, and a handle started by one evaluation must be found by the callbacks
// the other registered (hence plain functions in `open`, no class checks).
const STATE_KEY = Symbol.for('vmed.backend-kvm.uv-loop');
let unavailable: string | undefined;

function bindState(): UvState {
  const api = bindUvApi();
  const open = new Map<bigint, (status: number) => void>();
  const closing = new Set<bigint>();
  // No buffer: the address of the main thread's loop, which lives as long as the process.
  const loop = api.defaultLoop();
  const pollBytes = Number(api.handleSize(UV_POLL));
  const asyncBytes = Number(api.handleSize(UV_ASYNC));
  // Registered for the life of the thread (three of koffi's 8192 slots): libuv may call any of
  // them at a later loop iteration, so none can be unregistered while a handle might exist.
  const pollCallback = koffi.register((handle: bigint, status: number) => open.get(handle)?.(status), koffi.pointer(api.pollCallbackType));
  const asyncCallback = koffi.register((handle: bigint) => open.get(handle)?.(0), koffi.pointer(api.handleCallbackType));
  const closeCallback = koffi.register((handle: bigint) => {
    // libuv is done with the handle: its memory is ours again.
    if (closing.delete(handle)) koffi.free(handle);
  }, koffi.pointer(api.handleCallbackType));
  return { api, loop, pollBytes, asyncBytes, pollCallback, asyncCallback, closeCallback, open, closing };
}

function uvState(): UvState {
  const g = globalThis as { [STATE_KEY]?: UvState };
  let state = g[STATE_KEY];
  if (state === undefined) {
    state = bindState();
    g[STATE_KEY] = state;
  }
  return state;
}

function mainLoopState(operation: string): UvState {
  if (!uvLoopAvailable()) throw new UnsupportedError(operation, `libuv handles need Node's main thread${unavailable === undefined ? '' : ` (${unavailable})`}`);
  return uvState();
}

/**
 * True when this thread can have libuv handles on its loop: it is Node's main thread and the
 * process exports libuv's API. Checked once (binding the symbols is the check).
 */
export function uvLoopAvailable(): boolean {
  if (!isMainThread || unavailable !== undefined) return false;
  try {
    uvState();
    return true;
  } catch (error) {
    unavailable = error instanceof Error ? error.message : String(error);
    return false;
  }
}

/** Live handles of this thread, for leak checks: started ones, and closed ones libuv still holds. */
export function uvHandleCounts(): { readonly open: number; readonly closing: number } {
  const state = (globalThis as { [STATE_KEY]?: UvState })[STATE_KEY];
  return { open: state?.open.size ?? 0, closing: state?.closing.size ?? 0 };
}

/** Hands a started handle to `uv_close`; its memory is freed in the close callback. */
function closeHandle(state: UvState, handle: bigint): void {
  state.open.delete(handle);
  state.closing.add(handle);
  // libuv calls the registered close callback on a later iteration, once it no longer
  // touches the handle.
  state.api.close(handle, state.closeCallback);
}

/** Runs a handle's callback body; what it throws goes to `onError`, never into libuv. */
function guarded(fn: () => void, onError: (error: unknown) => void): void {
  try {
    fn();
  } catch (error) {
    try {
      onError(error);
    } catch (listenerError) {
      // A listener that throws too: surface it like any uncaught error.
      setImmediate(() => {
        throw listenerError;
      });
    }
  }
}

/** One `uv_poll_t` watching one fd for readability on the main loop. */
export class UvPoll {
  readonly fd: number;
  readonly #state: UvState;
  readonly #handle: bigint;
  #closed = false;

  private constructor(state: UvState, handle: bigint, fd: number) {
    this.#state = state;
    this.#handle = handle;
    this.fd = fd;
  }

  /**
   * Starts watching `fd`, level-triggered: `onReady` runs on every loop iteration in which the
   * fd is readable, so it must drain it. `onError` gets what `onReady` throws, and a failed
   * poll (the handle is then closed).
   * @throws `Unsupported` off the main thread; `Io` when libuv refuses the fd.
   */
  static watch(fd: number, onReady: () => void, onError: (error: unknown) => void, operation: string): UvPoll {
    const state = mainLoopState(operation);
    const { api } = state;
    // koffi's allocator gives the handle's memory: ours until uv_poll_init, libuv's from then
    // until the close callback (if init fails, nobody took it and it is freed here).
    const handle = koffi.alloc('uint8_t', state.pollBytes) as bigint;
    // libuv records the loop and the fd in the handle and sets the fd non-blocking (it is).
    const init = api.pollInit(state.loop, handle, fd);
    if (init !== 0) {
      koffi.free(handle);
      throw new IoError(operation, `uv_poll_init on fd ${fd} failed (${api.errName(init)})`);
    }
    const poll = new UvPoll(state, handle, fd);
    state.open.set(handle, (status) => {
      if (poll.#closed) return;
      if (status < 0) {
        poll.close();
        guarded(() => {
          throw new IoError(operation, `polling fd ${fd} failed (${api.errName(status)}); it is no longer watched`);
        }, onError);
        return;
      }
      guarded(onReady, onError);
    });
    // libuv adds the fd to its epoll set, with the registered callback (alive for good).
    const start = api.pollStart(handle, UV_READABLE, state.pollCallback);
    if (start !== 0) {
      poll.close();
      throw new IoError(operation, `uv_poll_start on fd ${fd} failed (${api.errName(start)})`);
    }
    // The handle alone must not keep the process running.
    api.unref(handle);
    return poll;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Stops watching and hands the handle to `uv_close`. The fd may be closed as soon as this
   * returns. Idempotent; safe inside this handle's own `onReady`.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Takes the fd out of libuv's epoll set now, and drops an event already fetched for it in
    // this loop iteration (uv_poll_stop invalidates the fd's pending events).
    this.#state.api.pollStop(this.#handle);
    closeHandle(this.#state, this.#handle);
  }
}

/**
 * One `uv_async_t` on the main loop: any thread wakes the main thread with `uv_async_send`
 * (see `uvAsyncSender` in `uv-abi.ts`; sends before the callback ran count once), and
 * `onWake` runs there from the loop. A vCPU thread uses it to hand an exit to the I/O context.
 */
export class UvAsync {
  /** The handle's address, for `uv_async_send` from another thread while this is open. */
  readonly address: bigint;
  readonly #state: UvState;
  #closed = false;

  private constructor(state: UvState, handle: bigint) {
    this.#state = state;
    this.address = handle;
  }

  /**
   * Makes an unref'd async handle whose wake-ups run `onWake` on the main thread; `onError`
   * gets what it throws.
   * @throws `Unsupported` off the main thread; `Io` when libuv refuses.
   */
  static create(onWake: () => void, onError: (error: unknown) => void, operation: string): UvAsync {
    const state = mainLoopState(operation);
    const { api } = state;
    // Ours until uv_async_init, libuv's from then until the close callback frees it.
    const handle = koffi.alloc('uint8_t', state.asyncBytes) as bigint;
    // libuv records the loop and the registered callback, and starts the handle.
    const init = api.asyncInit(state.loop, handle, state.asyncCallback);
    if (init !== 0) {
      koffi.free(handle);
      throw new IoError(operation, `uv_async_init failed (${api.errName(init)})`);
    }
    const async = new UvAsync(state, handle);
    state.open.set(handle, () => {
      if (!async.#closed) guarded(onWake, onError);
    });
    api.unref(handle);
    return async;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Hands the handle to `uv_close`. No thread may send to it from now on: close it only once
   * its senders are gone.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeHandle(this.#state, this.address);
  }
}
