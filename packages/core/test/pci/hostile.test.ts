import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IoError, NoSpaceError } from '../../src/index.js';
import { PciFunction } from '../../src/pci/index.js';
import { FULL, MSIX70 } from './definitions.js';
import { FakeLineIrq, FakeMsiRoute, type Delivery } from './fakes.js';

type GuestOp =
  | { kind: 'cfgw'; register: number; size: number; value: number }
  | { kind: 'cfgr'; register: number; size: number }
  | { kind: 'msixw'; bar: number; offset: number; size: number; value: number }
  | { kind: 'msixr'; bar: number; offset: number; size: number }
  | { kind: 'raise'; vector: number }
  | { kind: 'lower' };

const anyNumber = fc.oneof(
  fc.integer({ min: -8, max: 0x1010 }),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, -0, 0.5, 2 ** 53),
);
const size = fc.oneof(fc.constantFrom(1, 2, 4), fc.integer({ min: -1, max: 9 }));
// Registers where the interesting state lives, more often than chance would pick them.
const hotRegister = fc.oneof(fc.constantFrom(0x04, 0x06, 0x10, 0x14, 0x18, 0x1c, 0x3c), fc.integer({ min: 0x40, max: 0xff }), anyNumber);

const opArb: fc.Arbitrary<GuestOp> = fc.oneof(
  fc.record({ kind: fc.constant('cfgw' as const), register: hotRegister, size, value: anyNumber }),
  fc.record({ kind: fc.constant('cfgr' as const), register: hotRegister, size }),
  fc.record({ kind: fc.constant('msixw' as const), bar: fc.integer({ min: -1, max: 6 }), offset: anyNumber, size, value: anyNumber }),
  fc.record({ kind: fc.constant('msixr' as const), bar: fc.integer({ min: -1, max: 6 }), offset: anyNumber, size }),
  fc.record({ kind: fc.constant('raise' as const), vector: fc.integer({ min: 0, max: 3 }) }),
  fc.constant({ kind: 'lower' as const }),
);

describe('hostile guest', () => {
  it('no sequence of guest accesses throws, even with a failing backend', () => {
    fc.assert(
      fc.property(fc.constantFrom(FULL, MSIX70), fc.array(opArb, { maxLength: 80 }), fc.integer({ min: 0, max: 3 }), (definition, ops, failEvery) => {
        let calls = 0;
        const deliveries: Delivery[] = [];
        const errors: unknown[] = [];
        // Every `failEvery`-th backend call fails (0: none), as a real backend might.
        const maybeFail = () => {
          calls++;
          if (failEvery !== 0 && calls % failEvery === 0) throw new IoError('fake', 'injected');
        };
        const fn = new PciFunction(definition, {
          address: { bus: 0, device: 1, function: 0 },
          intxLine: 5,
          createMsiRoute: () => {
            maybeFail();
            const route = new FakeMsiRoute(calls, deliveries);
            return new Proxy(route, {
              get(target, key, receiver) {
                const value = Reflect.get(target, key, receiver) as unknown;
                if (typeof value !== 'function') return value;
                return (...args: unknown[]) => {
                  maybeFail();
                  return (value as (...a: unknown[]) => unknown).apply(target, args);
                };
              },
            });
          },
          createLineIrq: (target) => {
            maybeFail();
            return new FakeLineIrq(target);
          },
          onBarChange: () => maybeFail(),
          onError: (e) => {
            errors.push(e);
            if (errors.length % 5 === 0) throw new NoSpaceError('fake', 'the reporter fails too');
          },
        });
        for (const op of ops) {
          switch (op.kind) {
            case 'cfgw':
              fn.configWrite(op.register, op.size as 1, op.value);
              break;
            case 'cfgr': {
              const v = fn.configRead(op.register, op.size as 1);
              expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
              break;
            }
            case 'msixw':
              fn.msixWrite(op.bar, op.offset, op.size as 1, op.value);
              break;
            case 'msixr': {
              const v = fn.msixRead(op.bar, op.offset, op.size as 1);
              expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
              break;
            }
            case 'raise':
              // Vectors 0..3 exist in every mode of both layouts (raising an absent one is the model's bug).
              fn.interrupts.raise(op.vector);
              break;
            case 'lower':
              fn.interrupts.lower();
              break;
          }
        }
        expect(() => fn.reset()).not.toThrow();
        expect(() => fn.dispose()).not.toThrow();
        // Every injected failure surfaced through onError, none escaped.
        if (failEvery === 0) expect(errors).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });
});
