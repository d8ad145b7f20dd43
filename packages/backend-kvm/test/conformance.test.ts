/**
 * The testkit conformance suite on KVM: every scenario against a fresh standalone VM running
 * the testkit guest agent, once with the vCPU in a worker thread and once inline on the I/O
 * thread (cooperative slices kicked by the poller).
 */
import { afterAll, describe, it } from 'vitest';
import { registerConformanceSuite } from '@vmed/testkit';
import { createConformanceTarget } from '../src/conformance.js';
import { KVM_SKIP } from './helpers/kvm.js';

if (KVM_SKIP === undefined) {
  registerConformanceSuite(createConformanceTarget(), { describe, it, afterAll });
  registerConformanceSuite(createConformanceTarget({ execution: 'inline' }), { describe, it, afterAll });
} else {
  describe('conformance: kvm', () => {
    it.skip(`all scenarios (skipped: ${KVM_SKIP})`, () => {});
  });
}
