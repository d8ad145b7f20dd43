/**
 * Counts V8's full (mark-compact) collections while something runs, through `perf_hooks` GC
 * entries: how the DMA benchmark shows that making a view costs a collection now and then.
 */
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** Runs `work` and returns its result with the number of major GCs seen meanwhile. */
export async function countMajorGcs<T>(work: () => T | Promise<T>): Promise<{ value: T; majorGcs: number }> {
  let majorGcs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      // Node 20 puts the GC kind in `detail`; its typings do not declare it.
      if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majorGcs++;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    const value = await work();
    // GC entries are delivered asynchronously, after a timer turn: let the last ones arrive.
    await sleep(20);
    return { value, majorGcs };
  } finally {
    observer.disconnect();
  }
}
