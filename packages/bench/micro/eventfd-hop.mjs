/**
 * How long a doorbell takes to reach JavaScript on the I/O thread, two ways, against a C
 * thread doing the same (a micro-benchmark behind the kvm.irq_inject analysis):
 *
 * - `poller`: what backend-kvm's EventfdPoller does: a worker thread waits in epoll_wait on
 *   the eventfd and wakes the main thread with Atomics.notify (main: Atomics.waitAsync).
 * - `uvpoll`: a libuv poll handle on the main thread's own loop (uv_poll_start through koffi,
 *   the callback registered with koffi.register), so the kernel wakes the main thread directly.
 * - C: `eventfd-echo N self`, a thread echoing.
 *
 *   gcc -O2 -pthread -o /tmp/eventfd-echo packages/bench/micro/eventfd-echo.c
 *   node packages/bench/micro/eventfd-hop.mjs [round trips]
 */
import { Buffer } from 'node:buffer';
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { URL } from 'node:url';
import { Worker } from 'node:worker_threads';

const require = createRequire(new URL('../../backend-kvm/package.json', import.meta.url));
const koffiPath = require.resolve('koffi');
const koffi = require(koffiPath);
const ECHO = process.env.ECHO ?? '/tmp/eventfd-echo';
const N = Number(process.argv[2] ?? 20000);

const libc = koffi.load('libc.so.6');
const eventfd = libc.func('int eventfd(unsigned int, int)');
const read = libc.func('long read(int, _Out_ uint8_t *buf, size_t)');
const write = libc.func('long write(int, const uint8_t *buf, size_t)');
const EFD_NONBLOCK = 0o4000;

async function trial(mode) {
  const ping = eventfd(0, EFD_NONBLOCK);
  const pong = eventfd(0, 0);
  const buf = new Uint8Array(8);
  const one = new Uint8Array(8);
  one[0] = 1;
  const serve = () => {
    while (read(ping, buf, 8) === 8) write(pong, one, 8);
  };
  let stop;
  if (mode === 'uvpoll') {
    const node = koffi.load(null);
    const loop = node.func('void *uv_default_loop()')();
    const proto = koffi.proto(`void hop_cb_${Date.now()}(void *handle, int status, int events)`);
    const handle = Buffer.alloc(512);
    node.func('int uv_poll_init(void *, void *, int)')(loop, handle, ping);
    const cb = koffi.register(() => serve(), koffi.pointer(proto));
    node.func(`int uv_poll_start(void *, int, ${proto.name} *)`)(handle, 1, cb);
    stop = () => node.func('int uv_poll_stop(void *)')(handle);
  } else {
    const shared = new SharedArrayBuffer(8);
    const words = new Int32Array(shared);
    new Worker(
      `const { workerData } = require('node:worker_threads');
       const koffi = require(workerData.koffiPath);
       const libc = koffi.load('libc.so.6');
       const create = libc.func('int epoll_create1(int)');
       const ctl = libc.func('int epoll_ctl(int, int, int, uint8_t *)');
       const wait = libc.func('int epoll_wait(int, _Out_ uint8_t *, int, int)');
       const ep = create(0); const ev = new Uint8Array(12); new DataView(ev.buffer).setUint32(0, 1 | (1 << 31), true);
       ctl(ep, 1, workerData.fd, ev);
       const words = new Int32Array(workerData.shared); const out = new Uint8Array(96);
       // Word 1 asks the thread to stop; epoll_wait wakes every 100 ms to look at it.
       while (Atomics.load(words, 1) === 0) if (wait(ep, out, 8, 100) > 0) { Atomics.add(words, 0, 1); Atomics.notify(words, 0); }`,
      { eval: true, workerData: { fd: ping, shared, koffiPath } },
    );
    let seen = 0;
    const arm = () => {
      const r = Atomics.waitAsync(words, 0, seen);
      const go = () => {
        seen = Atomics.load(words, 0);
        serve();
        arm();
      };
      if (r.async) void r.value.then(go);
      else void Promise.resolve().then(go);
    };
    arm();
    stop = () => Atomics.store(words, 1, 1);
  }
  const out = await new Promise((resolve) => {
    const child = spawn(ECHO, [String(N)], { stdio: ['ignore', 'pipe', 'inherit', ping, pong] });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.on('close', () => resolve(text.trim()));
  });
  stop();
  return out;
}

const c = spawnSync(ECHO, [String(N), 'self'], { encoding: 'utf8' }).stdout.trim();
console.log(`C thread echo:                      ${c} µs/round trip`);
console.log(`Node, poller worker + Atomics:      ${await trial('poller')} µs/round trip`);
console.log(`Node, uv_poll on the main loop:     ${await trial('uvpoll')} µs/round trip`);
process.exit(0);
