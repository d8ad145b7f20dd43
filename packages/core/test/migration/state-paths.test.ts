/**
 * The arcs and paths of the migration machine, checked three ways: against the arc lists and
 * the combination paths written in the kernel's comment above vfio_from_fsm_table, against
 * hand-derived tables for the smaller feature sets, and against an independent search that
 * applies the uAPI's rules (shortest path, no saving-group state in the interior, STOP_COPY
 * never back to pre-copy) to those arcs.
 */
import { describe, expect, it } from 'vitest';
import {
  MIGRATION_STATES,
  hasMigrationState,
  isMigrationArc,
  migrationArcs,
  migrationNextState,
  migrationPath,
  migrationStateFromVfio,
  vfioDeviceStateNumber,
} from '../../src/migration/index.js';
import type { MigrationFeatures, MigrationState } from '../../src/migration/index.js';
import { InvalidError, StateError, UnsupportedError } from '../../src/errors.js';

type Pair = readonly [MigrationState, MigrationState];

const FEATURE_SETS: readonly { name: string; features: MigrationFeatures }[] = [
  { name: 'no optional feature', features: {} },
  { name: 'p2p', features: { p2p: true } },
  { name: 'preCopy', features: { preCopy: true } },
  { name: 'p2p + preCopy', features: { p2p: true, preCopy: true } },
];

// The arcs a driver must implement, from the kernel comment, grouped by the features that bring them.
const CORE_ARCS: Pair[] = [
  ['RESUMING', 'STOP'],
  ['STOP', 'RESUMING'],
  ['STOP', 'STOP_COPY'],
  ['STOP_COPY', 'STOP'],
];
const P2P_ARCS: Pair[] = [
  ['RUNNING', 'RUNNING_P2P'],
  ['RUNNING_P2P', 'RUNNING'],
  ['RUNNING_P2P', 'STOP'],
  ['STOP', 'RUNNING_P2P'],
];
const NO_P2P_ARCS: Pair[] = [
  ['RUNNING', 'STOP'],
  ['STOP', 'RUNNING'],
];
const PRE_COPY_ARCS: Pair[] = [
  ['RUNNING', 'PRE_COPY'],
  ['PRE_COPY', 'RUNNING'],
];
const PRE_COPY_NO_P2P_ARCS: Pair[] = [['PRE_COPY', 'STOP_COPY']];
const PRE_COPY_P2P_ARCS: Pair[] = [
  ['PRE_COPY', 'PRE_COPY_P2P'],
  ['PRE_COPY_P2P', 'PRE_COPY'],
  ['PRE_COPY_P2P', 'RUNNING_P2P'],
  ['PRE_COPY_P2P', 'STOP_COPY'],
  ['RUNNING_P2P', 'PRE_COPY_P2P'],
];

function expectedArcs(f: MigrationFeatures): Pair[] {
  const p2p = f.p2p === true;
  const pre = f.preCopy === true;
  return [
    ...CORE_ARCS,
    ...(p2p ? P2P_ARCS : NO_P2P_ARCS),
    ...(pre ? PRE_COPY_ARCS : []),
    ...(pre && !p2p ? PRE_COPY_NO_P2P_ARCS : []),
    ...(pre && p2p ? PRE_COPY_P2P_ARCS : []),
  ];
}

const key = (a: Pair): string => `${a[0]}>${a[1]}`;
const present = (f: MigrationFeatures): MigrationState[] =>
  MIGRATION_STATES.filter((s) => s !== 'ERROR' && hasMigrationState(s, f));

// Every path with all features, from the kernel comment: the single arcs are above, these are
// the combination transitions it lists, and STOP_COPY → PRE_COPY / PRE_COPY_P2P are blocked.
const FULL_TABLE: Record<string, string> = {
  'PRE_COPY>STOP_COPY': 'PRE_COPY_P2P STOP_COPY',
  'PRE_COPY>RUNNING_P2P': 'RUNNING RUNNING_P2P',
  'PRE_COPY>STOP': 'RUNNING RUNNING_P2P STOP',
  'PRE_COPY>RESUMING': 'RUNNING RUNNING_P2P STOP RESUMING',
  'PRE_COPY_P2P>RUNNING': 'RUNNING_P2P RUNNING',
  'PRE_COPY_P2P>STOP': 'RUNNING_P2P STOP',
  'PRE_COPY_P2P>RESUMING': 'RUNNING_P2P STOP RESUMING',
  'RESUMING>RUNNING_P2P': 'STOP RUNNING_P2P',
  'RESUMING>PRE_COPY_P2P': 'STOP RUNNING_P2P PRE_COPY_P2P',
  'RESUMING>RUNNING': 'STOP RUNNING_P2P RUNNING',
  'RESUMING>PRE_COPY': 'STOP RUNNING_P2P RUNNING PRE_COPY',
  'RESUMING>STOP_COPY': 'STOP STOP_COPY',
  'RUNNING>PRE_COPY_P2P': 'RUNNING_P2P PRE_COPY_P2P',
  'RUNNING>STOP': 'RUNNING_P2P STOP',
  'RUNNING>RESUMING': 'RUNNING_P2P STOP RESUMING',
  'RUNNING>STOP_COPY': 'RUNNING_P2P STOP STOP_COPY',
  'RUNNING_P2P>PRE_COPY': 'RUNNING PRE_COPY',
  'RUNNING_P2P>RESUMING': 'STOP RESUMING',
  'RUNNING_P2P>STOP_COPY': 'STOP STOP_COPY',
  'STOP>PRE_COPY_P2P': 'RUNNING_P2P PRE_COPY_P2P',
  'STOP>RUNNING': 'RUNNING_P2P RUNNING',
  'STOP>PRE_COPY': 'RUNNING_P2P RUNNING PRE_COPY',
  'STOP_COPY>RESUMING': 'STOP RESUMING',
  'STOP_COPY>RUNNING_P2P': 'STOP RUNNING_P2P',
  'STOP_COPY>RUNNING': 'STOP RUNNING_P2P RUNNING',
  'STOP_COPY>PRE_COPY': 'refused',
  'STOP_COPY>PRE_COPY_P2P': 'refused',
  ...Object.fromEntries(expectedArcs({ p2p: true, preCopy: true }).map((a) => [key(a), a[1]])),
};

// Without optional features the P2P states of the full table are skipped over.
const BASE_TABLE: Record<string, string> = {
  'RUNNING>STOP': 'STOP',
  'RUNNING>STOP_COPY': 'STOP STOP_COPY',
  'RUNNING>RESUMING': 'STOP RESUMING',
  'STOP>RUNNING': 'RUNNING',
  'STOP>STOP_COPY': 'STOP_COPY',
  'STOP>RESUMING': 'RESUMING',
  'STOP_COPY>STOP': 'STOP',
  'STOP_COPY>RUNNING': 'STOP RUNNING',
  'STOP_COPY>RESUMING': 'STOP RESUMING',
  'RESUMING>STOP': 'STOP',
  'RESUMING>RUNNING': 'STOP RUNNING',
  'RESUMING>STOP_COPY': 'STOP STOP_COPY',
};

const PRE_COPY_TABLE: Record<string, string> = {
  ...BASE_TABLE,
  'RUNNING>PRE_COPY': 'PRE_COPY',
  'STOP>PRE_COPY': 'RUNNING PRE_COPY',
  'RESUMING>PRE_COPY': 'STOP RUNNING PRE_COPY',
  'STOP_COPY>PRE_COPY': 'refused',
  'PRE_COPY>RUNNING': 'RUNNING',
  'PRE_COPY>STOP': 'RUNNING STOP',
  'PRE_COPY>STOP_COPY': 'STOP_COPY',
  'PRE_COPY>RESUMING': 'RUNNING STOP RESUMING',
};

// With P2P alone, no path of the full table between these states runs through a pre-copy state
// (they are saving-group states, never interior), so the table is the full one, restricted.
const P2P_STATES = new Set<MigrationState>(['STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P']);
const P2P_TABLE: Record<string, string> = Object.fromEntries(
  Object.entries(FULL_TABLE).filter(([k]) => k.split('>').every((s) => P2P_STATES.has(s as MigrationState))),
);

const TABLES: Record<string, Record<string, string>> = {
  'no optional feature': BASE_TABLE,
  p2p: P2P_TABLE,
  preCopy: PRE_COPY_TABLE,
  'p2p + preCopy': FULL_TABLE,
};

function pathOrRefused(from: MigrationState, to: MigrationState, f: MigrationFeatures): string {
  try {
    return migrationPath(from, to, f).join(' ');
  } catch (e) {
    if (e instanceof InvalidError) return 'refused';
    throw e;
  }
}

const SAVING_GROUP = new Set<MigrationState>(['PRE_COPY', 'PRE_COPY_P2P', 'STOP_COPY']);

/**
 * All shortest paths over `arcs` with no saving-group state in the interior (the uAPI's rules).
 * The kernel's table reads the rule as "no interior saving-group state, unless the whole path
 * stays in the saving group" (PRE_COPY → PRE_COPY_P2P → STOP_COPY moves within one data
 * session, so it is allowed; leaving the group and coming back would close and reopen it).
 */
function shortestRulePaths(from: MigrationState, to: MigrationState, arcs: Pair[]): MigrationState[][] {
  let frontier: MigrationState[][] = [[from]];
  for (let depth = 0; depth < MIGRATION_STATES.length; depth++) {
    const next: MigrationState[][] = [];
    for (const path of frontier) {
      const last = path[path.length - 1]!;
      const withinSession = path.every((s) => SAVING_GROUP.has(s));
      if (path.length > 1 && SAVING_GROUP.has(last) && !withinSession) continue; // would become interior
      for (const [a, b] of arcs) {
        if (a !== last || path.includes(b)) continue;
        // Inside the group, an interior state is allowed only if the path never leaves it.
        if (path.length > 1 && SAVING_GROUP.has(last) && !SAVING_GROUP.has(b)) continue;
        next.push([...path, b]);
      }
    }
    const done = next.filter((p) => p[p.length - 1] === to);
    if (done.length > 0) return done.map((p) => p.slice(1));
    frontier = next;
  }
  return [];
}

describe.each(FEATURE_SETS)('migration arcs with $name', ({ name, features }) => {
  const arcs = expectedArcs(features);
  const states = present(features);

  it('offers exactly the kernel arcs', () => {
    expect(migrationArcs(features).map((a) => key([a.from, a.to])).sort()).toEqual(arcs.map(key).sort());
  });

  it('answers isMigrationArc for every pair of states, ERROR included', () => {
    const wanted = new Set(arcs.map(key));
    for (const from of MIGRATION_STATES) {
      for (const to of MIGRATION_STATES) {
        expect(isMigrationArc(from, to, features), `${from} → ${to}`).toBe(wanted.has(key([from, to])));
      }
    }
  });

  it('walks each arc in one step, and each step of every path is an arc', () => {
    for (const [from, to] of arcs) expect(migrationPath(from, to, features)).toEqual([to]);
    const wanted = new Set(arcs.map(key));
    for (const from of states) {
      for (const to of states) {
        if (pathOrRefused(from, to, features) === 'refused') continue;
        let at = from;
        for (const step of migrationPath(from, to, features)) {
          expect(wanted.has(key([at, step])), `${from} → ${to} steps ${at} → ${step}`).toBe(true);
          at = step;
        }
      }
    }
  });

  it('gives the expected path for every (from, to) pair', () => {
    const table = TABLES[name]!;
    const seen: string[] = [];
    for (const from of states) {
      for (const to of states) {
        const got = pathOrRefused(from, to, features);
        if (from === to) {
          expect(got, `${from} → ${to}`).toBe('');
          continue;
        }
        expect(got, `${from} → ${to}`).toBe(table[key([from, to])]);
        seen.push(key([from, to]));
      }
    }
    // The table covers exactly the pairs of present states: nothing unchecked, nothing stale.
    expect(seen.sort()).toEqual(Object.keys(table).sort());
  });

  it('agrees with a search applying the uAPI rules, which has a single answer for each pair', () => {
    for (const from of states) {
      for (const to of states) {
        if (from === to) continue;
        const blocked = from === 'STOP_COPY' && (to === 'PRE_COPY' || to === 'PRE_COPY_P2P');
        if (blocked) {
          expect(() => migrationPath(from, to, features)).toThrow(InvalidError);
          continue;
        }
        const candidates = shortestRulePaths(from, to, arcs);
        expect(candidates.length, `${from} → ${to}: ${JSON.stringify(candidates)}`).toBe(1);
        expect(migrationPath(from, to, features), `${from} → ${to}`).toEqual(candidates[0]);
      }
    }
  });

  it('refuses states the device lacks with Unsupported, naming the feature', () => {
    const absent = MIGRATION_STATES.filter((s) => s !== 'ERROR' && !hasMigrationState(s, features));
    for (const s of absent) {
      expect(() => migrationPath('RUNNING', s, features)).toThrow(UnsupportedError);
      expect(() => migrationPath('RUNNING', s, features)).toThrow(/needs feature (p2p|preCopy)/);
      expect(() => migrationPath(s, 'RUNNING', features)).toThrow(UnsupportedError);
    }
    // A device never passes through a state it lacks.
    for (const from of states) {
      for (const to of states) {
        if (pathOrRefused(from, to, features) === 'refused') continue;
        for (const step of migrationPath(from, to, features)) expect(states).toContain(step);
      }
    }
  });

  it('refuses ERROR as a target and as a start', () => {
    for (const from of states) {
      expect(() => migrationPath(from, 'ERROR', features)).toThrow(InvalidError);
      expect(() => migrationPath(from, 'ERROR', features)).toThrow(/ERROR cannot be requested/);
      expect(() => migrationPath('ERROR', from, features)).toThrow(StateError);
    }
    expect(() => migrationPath('ERROR', 'ERROR', features)).toThrow(StateError);
  });
});

describe('migration state helpers', () => {
  it('names STOP_COPY → PRE_COPY as not permitted', () => {
    expect(() => migrationNextState('STOP_COPY', 'PRE_COPY', { preCopy: true })).toThrow(
      /STOP_COPY → PRE_COPY is not permitted/,
    );
  });

  it('refuses values that are not states', () => {
    expect(() => migrationPath('RUNNING', 'PAUSED' as MigrationState)).toThrow(InvalidError);
    expect(() => migrationNextState(7 as unknown as MigrationState, 'STOP')).toThrow(/not a migration state/);
  });

  it('maps states to and from the VFIO uAPI numbers', () => {
    const uapi: Record<MigrationState, number> = {
      ERROR: 0,
      STOP: 1,
      RUNNING: 2,
      STOP_COPY: 3,
      RESUMING: 4,
      RUNNING_P2P: 5,
      PRE_COPY: 6,
      PRE_COPY_P2P: 7,
    };
    for (const s of MIGRATION_STATES) {
      expect(vfioDeviceStateNumber(s)).toBe(uapi[s]);
      expect(migrationStateFromVfio(uapi[s])).toBe(s);
    }
    for (const bad of [-1, 8, 1.5, Number.NaN, 2 ** 32]) {
      expect(() => migrationStateFromVfio(bad)).toThrow(InvalidError);
    }
  });
});
