/**
 * `@vmed/testkit`: the backend conformance suite, the in-process reference backend `sim`, and
 * the project's own x86 test guests (agent, demo, bench loops).
 * Framework-free: register the suite with `registerConformanceSuite(target, { describe, it })`.
 */
export * from './sim/index.js';
export * from './conformance/index.js';
export * from './guests/index.js';
export * from './fuzz/index.js';
