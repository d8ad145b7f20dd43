export * from './contract.js';
export * from './interrupts.js';
export * from './io.js';
export * from './memory.js';
export * from './bytes-view.js';
export * from './regions.js';
export * from './tracking.js';
