/**
 * The Xen benchmarks: vmed's Xen backend against a C IOREQ server over the same libraries,
 * each sample on a fresh PVH domU running one of the project's bench guests. They run only in
 * dom0 of the project's Xen lab (`pnpm xen-lab bench -- --json`); elsewhere `available()`
 * says why, and nothing of Xen is loaded.
 */
import type { Benchmark } from '../types.js';
import { injectMsi } from './inject-msi.js';
import { ioreqRoundtrip } from './ioreq-roundtrip.js';

export const xenBenchmarks: readonly Benchmark[] = [ioreqRoundtrip, injectMsi];
