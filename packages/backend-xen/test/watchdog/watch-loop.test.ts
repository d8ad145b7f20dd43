/** The helper's loop on a stream: messages, garbage, and what is rescued at end of file. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { encodeMessage, parseMessage } from '../../src/watchdog/protocol.js';
import { runWatchLoop, type WatchdogXen } from '../../src/watchdog/watch-loop.js';

function fakeXen(prepareFails = false) {
  const calls: string[] = [];
  const xen: WatchdogXen = {
    prepare: (d) => {
      calls.push(`prepare ${d}`);
      if (prepareFails) throw new Error('no privcmd');
    },
    forget: (d) => calls.push(`forget ${d}`),
    rescue: (d, s) => {
      calls.push(`rescue ${d}/${s}`);
      return { answered: 1, destroyed: d !== 9, errors: d === 9 ? [new Error('ESRCH')] : [] };
    },
  };
  return { xen, calls };
}

describe('parseMessage', () => {
  it('round-trips messages and refuses everything else', () => {
    for (const m of [{ op: 'watch', domid: 1, server: 0 }, { op: 'release', domid: 0x7fef, server: 65535 }] as const) expect(parseMessage(encodeMessage(m).trimEnd())).toEqual(m);
    for (const bad of ['', 'watch', 'watch 0 1', 'watch 32752 1', 'watch 1 65536', 'watch -1 2', 'watch 1 2 3', 'destroy 1 2', 'watch 1 1e3', `watch 1 ${'1'.repeat(70)}`]) {
      expect(parseMessage(bad), bad).toBeUndefined();
    }
  });
});

describe('runWatchLoop', () => {
  it('rescues what is watched at end of file, in order, and logs each', async () => {
    const input = new PassThrough();
    const { xen, calls } = fakeXen();
    const logs: string[] = [];
    const done = runWatchLoop(input, xen, (l) => logs.push(l));
    input.write('watch 4 0\nwatch 4 1\nwatch 9 2\nwatch 4 0\n');
    input.write('release 4 0\nrelease 4 7\ngarbage\n');
    input.end('watch 5 3');
    const outcome = await done;
    expect(calls).toEqual(['prepare 4', 'prepare 4', 'prepare 9', 'prepare 5', 'rescue 4/1', 'rescue 9/2', 'rescue 5/3']);
    expect(outcome.rescued.map((r) => `${r.domid}/${r.server}:${r.report.destroyed}`)).toEqual(['4/1:true', '9/2:false', '5/3:true']);
    expect(outcome.badLines).toBe(1);
    expect(logs.filter((l) => l.includes('destroyed the server'))).toHaveLength(2);
    expect(logs.find((l) => l.includes('9'))).toMatch(/could NOT destroy the server; 1 step\(s\) failed, the first: ESRCH/);
  });

  it('forgets a domain when its last server is released, and does nothing at a clean end', async () => {
    const input = new PassThrough();
    const { xen, calls } = fakeXen();
    const done = runWatchLoop(input, xen, () => {});
    input.end('watch 4 0\nwatch 4 1\nrelease 4 0\nrelease 4 1\n');
    expect((await done).rescued).toEqual([]);
    expect(calls).toEqual(['prepare 4', 'prepare 4', 'forget 4']);
  });

  it('still rescues when preparing failed (the rescue tries again)', async () => {
    const input = new PassThrough();
    const { xen, calls } = fakeXen(true);
    const logs: string[] = [];
    const done = runWatchLoop(input, xen, (l) => logs.push(l));
    input.end('watch 4 0\n');
    expect((await done).rescued).toHaveLength(1);
    expect(calls).toEqual(['prepare 4', 'rescue 4/0']);
    expect(logs[0]).toMatch(/cannot prepare for domain 4: no privcmd/);
  });

  it('treats a broken pipe like a closed one', async () => {
    const input = new PassThrough();
    const { xen, calls } = fakeXen();
    const done = runWatchLoop(input, xen, () => {});
    input.write('watch 4 0\n');
    await new Promise((r) => setImmediate(r));
    input.destroy(new Error('EPIPE'));
    expect((await done).rescued).toHaveLength(1);
    expect(calls).toEqual(['prepare 4', 'rescue 4/0']);
  });
});
