import { afterAll, describe, it } from 'vitest';
import { createConformanceTarget, registerConformanceSuite } from '../../src/index.js';

// The reference: every scenario must pass on the full sim.
registerConformanceSuite(createConformanceTarget(), { describe, it, afterAll });
