import { describe, expect, it } from 'vitest';
import { MIGRATION_STATES, MigrationArcError, MigrationStateMachine, hasMigrationState, migrationArcs, migrationPath } from '../../src/migration/index.js';
import type { MigrationFeatures, MigrationState } from '../../src/migration/index.js';
import { InvalidError, StateError, UnsupportedError, VmedError } from '../../src/errors.js';

const ALL: MigrationFeatures = { p2p: true, preCopy: true };

/** A machine whose handler records each arc, and whose events are recorded in order. */
function recorded(features: MigrationFeatures = ALL, fail?: (from: MigrationState, to: MigrationState) => unknown) {
  const arcs: string[] = [];
  const events: string[] = [];
  const machine = new MigrationStateMachine({
    features,
    handler: (from, to) => {
      arcs.push(`${from}>${to}`);
      const error = fail?.(from, to);
      if (error !== undefined) throw error;
    },
  });
  machine.on('step', (from, to) => events.push(`step ${from}>${to}`));
  machine.on('transitioned', (from, to, path) => events.push(`transitioned ${from}>${to} [${path.join(' ')}]`));
  machine.on('failed', (e) => events.push(`failed ${e.from}>${e.to}`));
  machine.on('reset', (from) => events.push(`reset from ${from}`));
  return { machine, arcs, events };
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('MigrationStateMachine', () => {
  it('starts in RUNNING with the features it was given', () => {
    const m = new MigrationStateMachine({ handler: () => {}, features: { p2p: true } });
    expect(m.state).toBe('RUNNING');
    expect(m.features).toEqual({ p2p: true, preCopy: false });
    expect(m.transitioning).toBe(false);
  });

  it('refuses a handler that is not a function', () => {
    expect(() => new MigrationStateMachine({ handler: undefined as unknown as () => void })).toThrow(InvalidError);
  });

  describe.each([
    { name: 'no optional feature', features: {} },
    { name: 'p2p', features: { p2p: true } },
    { name: 'preCopy', features: { preCopy: true } },
    { name: 'p2p + preCopy', features: ALL },
  ])('with $name', ({ features }) => {
    const states = MIGRATION_STATES.filter((s) => s !== 'ERROR' && hasMigrationState(s, features));

    it('walks every (from, to) pair arc by arc, calling the handler and emitting per step and at the end', async () => {
      const allowed = new Set(migrationArcs(features).map((a) => `${a.from}>${a.to}`));
      const used = new Set<string>();
      for (const from of states) {
        for (const to of states) {
          const { machine, arcs, events } = recorded(features);
          await machine.transition(from);
          arcs.length = 0;
          events.length = 0;
          if (from === 'STOP_COPY' && (to === 'PRE_COPY' || to === 'PRE_COPY_P2P')) {
            await expect(machine.transition(to)).rejects.toThrow(InvalidError);
            expect(machine.state).toBe('STOP_COPY');
            expect(arcs).toEqual([]);
            expect(events).toEqual([]);
            continue;
          }
          const path = await machine.transition(to);
          expect(path).toEqual(migrationPath(from, to, features));
          const expectedArcs = path.map((s, i) => `${i === 0 ? from : path[i - 1]}>${s}`);
          expect(arcs, `${from} → ${to}`).toEqual(expectedArcs);
          expect(events).toEqual([...expectedArcs.map((a) => `step ${a}`), `transitioned ${from}>${to} [${path.join(' ')}]`]);
          expect(machine.state).toBe(to);
          for (const a of arcs) {
            expect(allowed.has(a), a).toBe(true);
            used.add(a);
          }
        }
      }
      // Walking every pair exercises every arc the device may be asked for.
      expect([...used].sort()).toEqual([...allowed].sort());
    });

    it('refuses ERROR as a target without running a handler', async () => {
      const { machine, arcs, events } = recorded(features);
      await expect(machine.transition('ERROR')).rejects.toThrow(InvalidError);
      expect(machine.state).toBe('RUNNING');
      expect(arcs).toEqual([]);
      expect(events).toEqual([]);
    });

    it('refuses the states the device lacks with Unsupported', async () => {
      const absent = MIGRATION_STATES.filter((s) => s !== 'ERROR' && !hasMigrationState(s, features));
      for (const target of absent) {
        const { machine, arcs } = recorded(features);
        await expect(machine.transition(target)).rejects.toThrow(UnsupportedError);
        expect(machine.state).toBe('RUNNING');
        expect(arcs).toEqual([]);
      }
    });
  });

  it('treats a transition to the current state as a no-op that still reports its end', async () => {
    const { machine, arcs, events } = recorded();
    expect(await machine.transition('RUNNING')).toEqual([]);
    expect(arcs).toEqual([]);
    expect(events).toEqual(['transitioned RUNNING>RUNNING []']);
  });

  it('waits for an asynchronous handler before entering the next state', async () => {
    const gate = deferred();
    const seen: MigrationState[] = [];
    const machine = new MigrationStateMachine({
      features: { p2p: true },
      handler: async (from, to) => {
        seen.push(to);
        if (to === 'STOP') await gate.promise;
      },
    });
    const done = machine.transition('STOP_COPY');
    await new Promise((r) => setImmediate(r));
    expect(machine.state).toBe('RUNNING_P2P');
    expect(machine.transitioning).toBe(true);
    expect(seen).toEqual(['RUNNING_P2P', 'STOP']);
    gate.resolve();
    expect(await done).toEqual(['RUNNING_P2P', 'STOP', 'STOP_COPY']);
    expect(machine.state).toBe('STOP_COPY');
    expect(machine.transitioning).toBe(false);
  });

  describe('when a handler fails', () => {
    it('goes to ERROR, emits failed, and rejects with an error naming the arc', async () => {
      const boom = new Error('save stream could not be opened');
      const { machine, arcs, events } = recorded(ALL, (from, to) => (from === 'STOP' && to === 'STOP_COPY' ? boom : undefined));
      const failures: MigrationArcError[] = [];
      machine.on('failed', (e) => failures.push(e));

      const error = await machine.transition('STOP_COPY').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(MigrationArcError);
      expect(error).toBeInstanceOf(VmedError);
      const arcError = error as MigrationArcError;
      expect(arcError.from).toBe('STOP');
      expect(arcError.to).toBe('STOP_COPY');
      expect(arcError.target).toBe('STOP_COPY');
      expect(arcError.code).toBe('Io');
      expect(arcError.operation).toBe('migration.transition');
      expect(arcError.cause).toBe(boom);
      expect(arcError.message).toContain('arc STOP → STOP_COPY failed');
      expect(arcError.message).toContain('save stream could not be opened');

      expect(machine.state).toBe('ERROR');
      expect(machine.transitioning).toBe(false);
      expect(failures).toEqual([arcError]);
      // The arcs before the failing one were entered and reported; the end never was.
      expect(arcs).toEqual(['RUNNING>RUNNING_P2P', 'RUNNING_P2P>STOP', 'STOP>STOP_COPY']);
      expect(events).toEqual(['step RUNNING>RUNNING_P2P', 'step RUNNING_P2P>STOP', 'failed STOP>STOP_COPY']);
    });

    it('keeps the code of a VmedError the handler threw, and names the target it was heading for', async () => {
      const bad = new InvalidError('migration.decodeDeviceStream', 'checksum mismatch');
      const { machine } = recorded(ALL, (from, to) => (from === 'RESUMING' && to === 'STOP' ? bad : undefined));
      await machine.transition('RESUMING');
      const error = (await machine.transition('RUNNING').catch((e: unknown) => e)) as MigrationArcError;
      expect(error).toBeInstanceOf(MigrationArcError);
      expect(error.code).toBe('Invalid');
      expect(error.cause).toBe(bad);
      expect(error.target).toBe('RUNNING');
      expect(error.message).toContain('arc RESUMING → STOP (on the way to RUNNING) failed');
      expect(machine.state).toBe('ERROR');
    });

    it('handles a rejected promise like a throw', async () => {
      const machine = new MigrationStateMachine({ handler: async () => Promise.reject(new Error('late failure')) });
      await expect(machine.transition('STOP')).rejects.toThrow(/arc RUNNING → STOP failed.*late failure/);
      expect(machine.state).toBe('ERROR');
    });

    it('wraps a thrown non-Error value', async () => {
      const machine = new MigrationStateMachine({
        handler: () => {
          throw 'plain string';
        },
      });
      const error = (await machine.transition('STOP').catch((e: unknown) => e)) as MigrationArcError;
      expect(error).toBeInstanceOf(MigrationArcError);
      expect(error.message).toContain('plain string');
    });
  });

  describe('in ERROR', () => {
    async function broken() {
      let fail = true;
      const calls: string[] = [];
      const machine = new MigrationStateMachine({
        features: ALL,
        handler: (from, to) => {
          calls.push(`${from}>${to}`);
          if (fail) throw new Error('device wedged');
        },
      });
      await expect(machine.transition('STOP')).rejects.toThrow(MigrationArcError);
      expect(machine.state).toBe('ERROR');
      calls.length = 0;
      fail = false;
      return { machine, calls };
    }

    it('refuses every transition with StateError and runs no handler', async () => {
      const { machine, calls } = await broken();
      for (const target of MIGRATION_STATES) {
        await expect(machine.transition(target)).rejects.toThrow(StateError);
        expect(machine.state).toBe('ERROR');
      }
      expect(calls).toEqual([]);
    });

    it('is left by reset(), which goes to RUNNING and emits reset; transitions work again after', async () => {
      const { machine, calls } = await broken();
      const resets: MigrationState[] = [];
      machine.on('reset', (from) => resets.push(from));
      machine.reset();
      expect(machine.state).toBe('RUNNING');
      expect(resets).toEqual(['ERROR']);
      expect(calls).toEqual([]);
      await machine.transition('STOP');
      expect(machine.state).toBe('STOP');
      expect(calls).toEqual(['RUNNING>RUNNING_P2P', 'RUNNING_P2P>STOP']);
    });
  });

  it('reset() also aborts a session from any other state', async () => {
    const { machine, arcs, events } = recorded();
    await machine.transition('RESUMING');
    arcs.length = 0;
    events.length = 0;
    machine.reset();
    expect(machine.state).toBe('RUNNING');
    expect(arcs).toEqual([]);
    expect(events).toEqual(['reset from RESUMING']);
  });

  describe('while a transition is in progress', () => {
    it('refuses another transition and reset() with StateError, and finishes the first', async () => {
      const gate = deferred();
      const calls: string[] = [];
      const machine = new MigrationStateMachine({
        features: ALL,
        handler: async (from, to) => {
          calls.push(`${from}>${to}`);
          if (to === 'RUNNING_P2P') await gate.promise;
        },
      });
      const first = machine.transition('STOP');
      // Refused at once, in the same tick, before the first handler finished.
      await expect(machine.transition('RUNNING')).rejects.toThrow(StateError);
      await expect(machine.transition('PRE_COPY')).rejects.toThrow(/already in progress/);
      expect(() => machine.reset()).toThrow(StateError);
      expect(machine.transitioning).toBe(true);
      gate.resolve();
      expect(await first).toEqual(['RUNNING_P2P', 'STOP']);
      expect(calls).toEqual(['RUNNING>RUNNING_P2P', 'RUNNING_P2P>STOP']);
      expect(machine.state).toBe('STOP');
      // Once it is over, the machine takes requests again.
      await machine.transition('RUNNING');
      expect(machine.state).toBe('RUNNING');
    });

    it('refuses a handler that re-enters the machine, which then goes to ERROR', async () => {
      const machine: MigrationStateMachine = new MigrationStateMachine({
        handler: async () => {
          await machine.transition('RUNNING');
        },
      });
      const error = (await machine.transition('STOP').catch((e: unknown) => e)) as MigrationArcError;
      expect(error).toBeInstanceOf(MigrationArcError);
      expect(error.cause).toBeInstanceOf(StateError);
      expect(error.code).toBe('State');
      expect(machine.state).toBe('ERROR');
    });
  });
});
